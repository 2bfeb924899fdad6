//! Generated protobuf and gRPC code for `tokenmint.v1`, and the descriptor set for reflection.
//!
//! The service traits the server implements answer VerifyToken with [`wire::VerifyTokenResponse`],
//! a generated twin of the public message whose metadata field is `bytes`, so the server can send
//! a token's metadata it encoded before (ARCHITECTURE.md, "The rendered-response cache"). Clients,
//! this crate's included, decode the public [`v1::VerifyTokenResponse`]; on the wire the two are
//! one message (the tests below compare the bytes). build.rs says how the three outputs are made.

/// The `tokenmint.v1` package: messages, clients and the service traits.
#[expect(
    clippy::allow_attributes,
    clippy::allow_attributes_without_reason,
    reason = "tonic-build writes plain #[allow] attributes into the generated code"
)]
pub mod v1 {
    tonic::include_proto!("tokenmint.v1");
    include!(concat!(env!("OUT_DIR"), "/server/tokenmint.v1.rs"));
}

/// The server's own wire messages (`src/proto/wire/`), not part of the public contract.
pub mod wire {
    tonic::include_proto!("tokenmint.wire");

    impl VerifyTokenResponse {
        /// An active answer whose metadata is `encoded`, the encoding of a [`super::v1::Token`].
        pub fn active_encoded(encoded: prost::bytes::Bytes) -> Self {
            Self {
                active: true,
                reason: 0,
                token: encoded,
            }
        }

        /// An inactive answer.
        pub fn inactive(reason: super::v1::InactiveReason) -> Self {
            Self {
                active: false,
                reason: reason as i32,
                token: prost::bytes::Bytes::new(),
            }
        }
    }
}

/// Encoded `FileDescriptorSet` of every tokenmint proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tokenmint_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost::bytes::Bytes;

    use super::v1::{self, AvailableActions, InactiveReason, Token, TokenStatus};
    use super::wire;

    fn token() -> Token {
        Token {
            id: "01a23174-39ed-7634-95d9-31fce35eb30c".into(),
            user_id: "alice".into(),
            label: "ci".into(),
            scopes: vec!["wallet_view".into(), "trade_view".into()],
            ip_restrict: vec!["10.0.0.0/8".into()],
            status: TokenStatus::Active as i32,
            checksum: "abcdef".into(),
            available_actions: Some(AvailableActions {
                suspend: true,
                revoke: true,
                delete: true,
                activate: false,
            }),
            ..Token::default()
        }
    }

    #[test]
    fn an_active_answer_is_the_public_message_on_the_wire() {
        let sent = wire::VerifyTokenResponse::active_encoded(Bytes::from(token().encode_to_vec()));
        let public = v1::VerifyTokenResponse {
            active: true,
            reason: 0,
            token: Some(token()),
        };

        assert_eq!(sent.encode_to_vec(), public.encode_to_vec());
        let decoded = v1::VerifyTokenResponse::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, public);
    }

    #[test]
    fn an_inactive_answer_is_the_public_message_on_the_wire() {
        let sent = wire::VerifyTokenResponse::inactive(InactiveReason::Revoked);
        let public = v1::VerifyTokenResponse {
            active: false,
            reason: InactiveReason::Revoked as i32,
            token: None,
        };

        assert_eq!(sent.encode_to_vec(), public.encode_to_vec());
        let decoded = v1::VerifyTokenResponse::decode(sent.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.reason(), InactiveReason::Revoked);
        assert_eq!(decoded.token, None);
    }

    #[test]
    fn the_twin_has_the_public_messages_fields_and_numbers() {
        // A field added to the public message must be added to the twin too: compare the two
        // descriptors' fields (name, number, and wire type).
        let public = descriptor_fields(super::FILE_DESCRIPTOR_SET, "tokenmint.v1");
        let twin = descriptor_fields(WIRE_DESCRIPTOR, "tokenmint.wire");
        assert_eq!(public, twin);
    }

    /// The twin's descriptor set, written by build.rs.
    const WIRE_DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wire_descriptor.bin"));

    /// `(name, number, wire type)` of the fields of `package.VerifyTokenResponse` in `fds`.
    fn descriptor_fields(fds: &[u8], package: &str) -> Vec<(String, i32, &'static str)> {
        use prost_types::field_descriptor_proto::Type;
        let set = prost_types::FileDescriptorSet::decode(fds).expect("a descriptor set");
        let message = set
            .file
            .iter()
            .filter(|file| file.package() == package)
            .flat_map(|file| &file.message_type)
            .find(|message| message.name() == "VerifyTokenResponse")
            .expect("VerifyTokenResponse in the set");
        let wire_type = |kind: Type| match kind {
            Type::Bool | Type::Int32 | Type::Enum => "varint",
            Type::Message | Type::Bytes => "length-delimited",
            other => panic!("a field type the twin does not mirror: {other:?}"),
        };
        message
            .field
            .iter()
            .map(|field| {
                (
                    field.name().to_owned(),
                    field.number(),
                    wire_type(field.r#type()),
                )
            })
            .collect()
    }
}
