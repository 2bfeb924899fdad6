//! Encoded `Token` messages of recently verified tokens, so that a repeated VerifyToken sends
//! bytes encoded once instead of building and encoding the message on every call.
//!
//! An entry is keyed by token id and points at the very record it was rendered from: it is used
//! only while the core still answers with that same record (the core's metadata cache hands out a
//! new one after every change and at the end of its time-to-live) and only for the status it was
//! rendered with (a token inside the expiry leeway reads as EXPIRED, not ACTIVE). The pointer is
//! weak, so an entry never keeps a record's contents alive after the core has dropped it; it
//! does keep the allocation, so no other record can appear at that address meanwhile.

use std::sync::{Arc, Weak};

use prost::Message;
use prost::bytes::Bytes;
use quick_cache::sync::Cache;

use crate::domain::{Timestamp, TokenId, TokenRecord, TokenStatus};
use crate::grpc::convert;

/// The rendered metadata of up to a configured number of tokens.
pub struct RenderedTokens {
    cache: Cache<TokenId, Rendered>,
}

/// One token's encoded metadata, and what it was encoded from.
#[derive(Clone)]
struct Rendered {
    record: Weak<TokenRecord>,
    status: TokenStatus,
    encoded: Bytes,
}

impl RenderedTokens {
    /// A cache of at most `capacity` tokens (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
        }
    }

    /// `record` as an encoded `Token` message, its status judged at `now`: from the cache when
    /// it was rendered from this record with this status, else rendered and remembered.
    pub fn encoded(&self, record: &Arc<TokenRecord>, now: Timestamp) -> Bytes {
        let status = record.status_at(now);
        if let Some(hit) = self.cache.get(&record.id)
            && std::ptr::eq(hit.record.as_ptr(), Arc::as_ptr(record))
            && hit.status == status
        {
            return hit.encoded;
        }
        let encoded = Bytes::from(convert::token_to_proto(record, now).encode_to_vec());
        self.cache.insert(
            record.id,
            Rendered {
                record: Arc::downgrade(record),
                status,
                encoded: encoded.clone(),
            },
        );
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Label;
    use crate::proto::v1 as pb;

    fn record(label: &str) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            id: TokenId::parse("01a23174-39ed-7634-95d9-31fce35eb30c", "id").unwrap(),
            label: Label::parse(label).unwrap(),
            checksum: "abcdef".into(),
            created_at: Timestamp::from_secs(1_000),
            updated_at: Timestamp::from_secs(1_000),
            expires_at: Timestamp::from_secs(2_000),
            ..TokenRecord::sample(0)
        })
    }

    fn decode(bytes: &Bytes) -> pb::Token {
        pb::Token::decode(bytes.clone()).unwrap()
    }

    #[test]
    fn repeats_are_served_from_the_cache_and_match_a_fresh_rendering() {
        let rendered = RenderedTokens::new(8);
        let record = record("ci");
        let now = Timestamp::from_secs(1_500);
        let first = rendered.encoded(&record, now);
        let second = rendered.encoded(&record, now);
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, not a new rendering"
        );
        assert_eq!(decode(&second), convert::token_to_proto(&record, now));
    }

    #[test]
    fn a_changed_record_or_status_is_rendered_again() {
        let rendered = RenderedTokens::new(8);
        let before = record("before");
        let now = Timestamp::from_secs(1_500);
        rendered.encoded(&before, now);
        let after = record("after");
        assert_eq!(decode(&rendered.encoded(&after, now)).label, "after");
        // Past expiry (inside the verification leeway) the same record reads as EXPIRED.
        let late = Timestamp::from_secs(2_001);
        assert_eq!(
            decode(&rendered.encoded(&after, late)).status,
            pb::TokenStatus::Expired as i32
        );
    }
}
