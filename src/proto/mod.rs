//! Generated protobuf and gRPC code for `tokenmint.v1`, and the descriptor set for reflection.
//!
//! One message is written by hand rather than generated: [`VerifyTokenResponse`], which can carry
//! a token's metadata already encoded (see its module).

pub mod verify_response;

/// The `tokenmint.v1` package.
#[expect(
    clippy::allow_attributes,
    clippy::allow_attributes_without_reason,
    reason = "tonic-build writes plain #[allow] attributes into the generated code"
)]
pub mod v1 {
    tonic::include_proto!("tokenmint.v1");

    pub use super::verify_response::VerifyTokenResponse;
}

/// Encoded `FileDescriptorSet` of every tokenmint proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenmint_descriptor.bin"));
