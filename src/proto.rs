//! Generated protobuf and gRPC code for `tokenmint.v1`, and the descriptor set for reflection.

/// The `tokenmint.v1` package.
pub mod v1 {
    tonic::include_proto!("tokenmint.v1");
}

/// Encoded `FileDescriptorSet` of every tokenmint proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenmint_descriptor.bin"));
