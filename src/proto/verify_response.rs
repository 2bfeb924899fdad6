//! `tokenmint.v1.VerifyTokenResponse`, implemented by hand so that the server can send a token's
//! metadata as bytes it encoded before.
//!
//! VerifyToken is the call every other service makes on every request, and most of its answers
//! repeat the last one for the same token. Building the `Token` message and encoding it again was
//! the largest part of a cached verification left to the handler (ARCHITECTURE.md, "The
//! rendered-response cache"), so the server encodes it once per cached record and sends those
//! bytes. On the wire nothing changes: field 3 is the same length-delimited `Token`, and a
//! decoded response has `token` set exactly as the generated type would (build.rs maps the proto
//! type to this one).

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::v1::{InactiveReason, Token};

/// Output of VerifyToken: whether the token is active, why not, and its metadata when it is.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct VerifyTokenResponse {
    /// Whether the token is valid for this use right now.
    pub active: bool,
    /// Why the token is inactive ([`InactiveReason`]); `UNSPECIFIED` when active.
    pub reason: i32,
    /// The token's metadata; set only when `active` is true (always set by decoding).
    pub token: Option<Token>,
    /// The token's metadata already encoded as a `Token` message, sent in place of `token`.
    encoded_token: Option<Bytes>,
}

impl VerifyTokenResponse {
    /// An active answer whose metadata is `encoded`, the encoding of a [`Token`].
    pub fn active_encoded(encoded: Bytes) -> Self {
        Self {
            active: true,
            encoded_token: Some(encoded),
            ..Self::default()
        }
    }

    /// An inactive answer.
    pub fn inactive(reason: InactiveReason) -> Self {
        Self {
            reason: reason as i32,
            ..Self::default()
        }
    }

    /// The reason as an enum (`UNSPECIFIED` for numbers this build does not know).
    pub fn reason(&self) -> InactiveReason {
        InactiveReason::try_from(self.reason).unwrap_or_default()
    }
}

/// Field numbers, from `token_service.proto`.
const ACTIVE: u32 = 1;
const REASON: u32 = 2;
const TOKEN: u32 = 3;

impl Message for VerifyTokenResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.active {
            encoding::bool::encode(ACTIVE, &self.active, buf);
        }
        if self.reason != 0 {
            encoding::int32::encode(REASON, &self.reason, buf);
        }
        match (&self.encoded_token, &self.token) {
            (Some(encoded), _) => {
                encoding::encode_key(TOKEN, WireType::LengthDelimited, buf);
                encoding::encode_varint(encoded.len() as u64, buf);
                buf.put_slice(encoded);
            }
            (None, Some(token)) => encoding::message::encode(TOKEN, token, buf),
            (None, None) => {}
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (result, field) = match tag {
            ACTIVE => (
                encoding::bool::merge(wire_type, &mut self.active, buf, ctx),
                "active",
            ),
            REASON => (
                encoding::int32::merge(wire_type, &mut self.reason, buf, ctx),
                "reason",
            ),
            TOKEN => (
                encoding::message::merge(
                    wire_type,
                    self.token.get_or_insert_with(Token::default),
                    buf,
                    ctx,
                ),
                "token",
            ),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        result.map_err(|mut error| {
            error.push("VerifyTokenResponse", field);
            error
        })
    }

    fn encoded_len(&self) -> usize {
        let active = if self.active {
            encoding::bool::encoded_len(ACTIVE, &self.active)
        } else {
            0
        };
        let reason = if self.reason != 0 {
            encoding::int32::encoded_len(REASON, &self.reason)
        } else {
            0
        };
        let token = match (&self.encoded_token, &self.token) {
            (Some(encoded), _) => {
                encoding::key_len(TOKEN)
                    + encoding::encoded_len_varint(encoded.len() as u64)
                    + encoded.len()
            }
            (None, Some(token)) => encoding::message::encoded_len(TOKEN, token),
            (None, None) => 0,
        };
        active + reason + token
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{AvailableActions, TokenStatus};

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

    /// The generated type, for comparing wire formats: what a client built from the `.proto`
    /// decodes and encodes.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Generated {
        #[prost(bool, tag = "1")]
        active: bool,
        #[prost(enumeration = "InactiveReason", tag = "2")]
        reason: i32,
        #[prost(message, optional, tag = "3")]
        token: Option<Token>,
    }

    #[test]
    fn pre_encoded_metadata_is_the_wire_format_of_the_message() {
        let encoded = Bytes::from(token().encode_to_vec());
        let fast = VerifyTokenResponse::active_encoded(encoded).encode_to_vec();
        let generated = Generated {
            active: true,
            reason: 0,
            token: Some(token()),
        };
        assert_eq!(fast, generated.encode_to_vec());
        assert_eq!(
            VerifyTokenResponse::active_encoded(Bytes::from(token().encode_to_vec())).encoded_len(),
            fast.len()
        );
        let decoded = VerifyTokenResponse::decode(fast.as_slice()).unwrap();
        assert!(decoded.active);
        assert_eq!(decoded.token, Some(token()));
    }

    #[test]
    fn fields_encode_and_decode_like_the_generated_message() {
        for generated in [
            Generated {
                active: false,
                reason: InactiveReason::Revoked as i32,
                token: None,
            },
            Generated {
                active: true,
                reason: 0,
                token: Some(token()),
            },
        ] {
            let wire = generated.encode_to_vec();
            let decoded = VerifyTokenResponse::decode(wire.as_slice()).unwrap();
            assert_eq!(decoded.active, generated.active);
            assert_eq!(decoded.reason, generated.reason);
            assert_eq!(decoded.token, generated.token);
            assert_eq!(decoded.encode_to_vec(), wire);
            assert_eq!(decoded.encoded_len(), wire.len());
        }
        let revoked = VerifyTokenResponse::inactive(InactiveReason::Revoked);
        assert_eq!(revoked.reason(), InactiveReason::Revoked);
        assert_eq!(
            Generated::decode(revoked.encode_to_vec().as_slice()).unwrap(),
            Generated {
                active: false,
                reason: InactiveReason::Revoked as i32,
                token: None,
            }
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_ones_rejected() {
        let mut wire = Generated {
            active: true,
            reason: 0,
            token: Some(token()),
        }
        .encode_to_vec();
        encoding::string::encode(15, &"from a newer server".to_owned(), &mut wire);
        let decoded = VerifyTokenResponse::decode(wire.as_slice()).unwrap();
        assert_eq!(decoded.token, Some(token()));
        // Field 3 as a varint is not a Token.
        let mut bad = Vec::new();
        encoding::int32::encode(TOKEN, &7, &mut bad);
        assert!(VerifyTokenResponse::decode(bad.as_slice()).is_err());
    }
}
