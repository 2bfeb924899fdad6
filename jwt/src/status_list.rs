//! The list inside a Status List Token (IETF Token Status List, draft-ietf-oauth-status-list,
//! JWT form): one status per referenced token, packed a fixed number of bits each, compressed
//! with DEFLATE in the ZLIB wrapper (RFC 1950) and carried as unpadded base64url in the
//! token's `status_list.lst`.
//!
//! Entry `i` sits in byte `i / (8 / bits)`, at shift `(i % (8 / bits)) * bits`: the first entry
//! of a byte in its lowest bits. The server builds lists with [`StatusList::encode`]; every
//! verifier reads them with [`StatusList::decode`], which refuses a list that would inflate
//! beyond a bound it is given (a small `lst` can expand a thousandfold).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// The `typ` header of a Status List Token. An access-token policy accepts only `at+jwt`, so a
/// status list can never pass for an access token, and the reverse.
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";

/// The media type a Status List Token is served as over HTTP.
pub const STATUS_LIST_MEDIA_TYPE: &str = "application/statuslist+jwt";

/// Whether a `typ` header names a Status List Token (compared without case, with or without the
/// `application/` prefix, as RFC 7515 §4.1.9 allows).
pub fn is_status_list_typ(typ: &str) -> bool {
    let typ = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case(STATUS_LIST_TYP)
}

/// The claims of a Status List Token (draft §5.1): no `aud` and no `scope`, so that no consumer
/// can mistake it for an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListClaims<'a> {
    /// The issuer (the server's `tokens.issuer`).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub iss: Option<Cow<'a, str>>,
    /// The list's URI: exactly the `uri` of the tokens that point into it.
    #[serde(borrow)]
    pub sub: Cow<'a, str>,
    /// When the list was rendered (seconds since the Unix epoch).
    pub iat: i64,
    /// When the list stops being usable (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// How many seconds a consumer may keep the list before fetching it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// The list itself.
    #[serde(borrow)]
    pub status_list: EncodedStatusList<'a>,
}

/// The `status_list` claim of a Status List Token: the entries' width and the encoded list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedStatusList<'a> {
    /// Bits per entry: 1, 2, 4 or 8.
    pub bits: u64,
    /// The list, as [`StatusList::encode`] writes it.
    #[serde(borrow)]
    pub lst: Cow<'a, str>,
}

/// A referenced token's status, as the draft numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// 0: the token may be used.
    Valid,
    /// 1: revoked or otherwise annulled, for good.
    Invalid,
    /// 2: temporarily not to be used.
    Suspended,
    /// Any other value: application-specific (3, 12–15) or reserved. A verifier that does not
    /// know it treats the token as not valid. (`Other` of 0–2 reads back as the named status.)
    Other(u8),
}

impl TokenStatus {
    /// The status a value stands for.
    pub fn from_value(value: u8) -> Self {
        match value {
            0 => Self::Valid,
            1 => Self::Invalid,
            2 => Self::Suspended,
            other => Self::Other(other),
        }
    }

    /// The value written in a list.
    pub fn value(self) -> u8 {
        match self {
            Self::Valid => 0,
            Self::Invalid => 1,
            Self::Suspended => 2,
            Self::Other(value) => value,
        }
    }
}

/// Why a list could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusListError {
    /// `bits` is not 1, 2, 4 or 8.
    Bits(u64),
    /// `lst` is not unpadded base64url.
    Encoding,
    /// `lst` is not a valid ZLIB stream (bad header or checksum, or cut short). Bytes after a
    /// complete stream are not looked at: the list arrives inside a signed token.
    Compression,
    /// The list inflates beyond the bound the reader set.
    TooLarge {
        /// The bound, in bytes.
        max_bytes: usize,
    },
}

impl std::fmt::Display for StatusListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bits(bits) => write!(f, "status list bits must be 1, 2, 4 or 8, not {bits}"),
            Self::Encoding => f.write_str("status list lst is not unpadded base64url"),
            Self::Compression => f.write_str("status list lst is not a valid ZLIB stream"),
            Self::TooLarge { max_bytes } => {
                write!(f, "status list inflates beyond {max_bytes} bytes")
            }
        }
    }
}

impl std::error::Error for StatusListError {}

/// A list of statuses, `bits` bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Vec<u8>,
}

impl StatusList {
    /// A list of `len_bytes * 8 / bits` entries, all set to `fill`.
    ///
    /// # Panics
    /// If `bits` is not 1, 2, 4 or 8, or `fill` does not fit in `bits` bits.
    pub fn filled(bits: u8, len_bytes: usize, fill: TokenStatus) -> Self {
        assert!(matches!(bits, 1 | 2 | 4 | 8), "bits must be 1, 2, 4 or 8");
        let value = fill.value();
        assert!(
            u16::from(value) < 1 << bits,
            "{value} does not fit in {bits} bits"
        );
        let mut byte = 0u8;
        for slot in 0..8 / bits {
            byte |= value << (slot * bits);
        }
        Self {
            bits,
            bytes: vec![byte; len_bytes],
        }
    }

    /// Bits per entry.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// How many entries the list holds (every bit of its bytes counts).
    pub fn len(&self) -> usize {
        self.bytes.len() * 8 / usize::from(self.bits)
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The packed bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where entry `index` sits: its byte and its shift in that byte.
    fn slot(&self, index: usize) -> Option<(usize, u8)> {
        let per_byte = usize::from(8 / self.bits);
        let byte = index / per_byte;
        let shift = u8::try_from(index % per_byte).ok()? * self.bits;
        (byte < self.bytes.len()).then_some((byte, shift))
    }

    /// Entry `index`'s status; `None` past the end (a verifier must then refuse the token).
    pub fn get(&self, index: usize) -> Option<TokenStatus> {
        let (byte, shift) = self.slot(index)?;
        let mask = ((1u16 << self.bits) - 1) as u8;
        Some(TokenStatus::from_value((self.bytes[byte] >> shift) & mask))
    }

    /// Sets entry `index`; returns false (and changes nothing) past the end or when `status`
    /// does not fit in the list's bits.
    pub fn set(&mut self, index: usize, status: TokenStatus) -> bool {
        let value = status.value();
        let Some((byte, shift)) = self.slot(index) else {
            return false;
        };
        if u16::from(value) >= 1 << self.bits {
            return false;
        }
        let mask = ((1u16 << self.bits) - 1) as u8;
        self.bytes[byte] = (self.bytes[byte] & !(mask << shift)) | (value << shift);
        true
    }

    /// The `lst` value: the bytes compressed at the highest level, ZLIB-wrapped, base64url
    /// without padding.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec_zlib(&self.bytes, 9))
    }

    /// Reads a list from its `bits` and `lst`, refusing one that inflates beyond `max_bytes`.
    pub fn decode(bits: u64, lst: &str, max_bytes: usize) -> Result<Self, StatusListError> {
        let bits = match bits {
            1 | 2 | 4 | 8 => bits as u8,
            other => return Err(StatusListError::Bits(other)),
        };
        let compressed = URL_SAFE_NO_PAD
            .decode(lst)
            .map_err(|_| StatusListError::Encoding)?;
        let bytes = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, max_bytes)
            .map_err(|error| match error.status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => {
                    StatusListError::TooLarge { max_bytes }
                }
                _ => StatusListError::Compression,
            })?;
        Ok(Self { bits, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_typ_is_recognised_in_its_spellings_and_only_it() {
        for typ in [
            "statuslist+jwt",
            "STATUSLIST+JWT",
            "application/statuslist+jwt",
        ] {
            assert!(is_status_list_typ(typ), "{typ}");
        }
        for typ in [
            "at+jwt",
            "JWT",
            "application/",
            "statuslist+cwt",
            "xstatuslist+jwt",
        ] {
            assert!(!is_status_list_typ(typ), "{typ}");
        }
    }

    /// The draft's 1-bit example (§4.1): 16 statuses, their bytes and their `lst`.
    const ONE_BIT: ([u8; 16], [u8; 2], &str) = (
        [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1],
        [0xB9, 0xA3],
        "eNrbuRgAAhcBXQ",
    );

    /// The draft's 2-bit example (§4.1).
    const TWO_BITS: ([u8; 12], [u8; 3], &str) = (
        [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3],
        [0xC9, 0x44, 0xF9],
        "eNo76fITAAPfAgc",
    );

    /// Builds a list of `bits` from `values` (zero-filled up to whole bytes).
    fn list_of(bits: u8, values: &[u8]) -> StatusList {
        let per_byte = usize::from(8 / bits);
        let mut list =
            StatusList::filled(bits, values.len().div_ceil(per_byte), TokenStatus::Valid);
        for (index, value) in values.iter().enumerate() {
            assert!(list.set(index, TokenStatus::from_value(*value)));
        }
        list
    }

    #[test]
    fn entries_are_packed_and_compressed_as_the_draft_does_it() {
        let (one, two) = (list_of(1, &ONE_BIT.0), list_of(2, &TWO_BITS.0));
        assert_eq!(one.as_bytes(), ONE_BIT.1);
        assert_eq!(two.as_bytes(), TWO_BITS.1);
        assert_eq!(one.encode(), ONE_BIT.2);
        assert_eq!(two.encode(), TWO_BITS.2);
    }

    #[test]
    fn the_drafts_examples_decode_to_their_statuses() {
        for (bits, values, lst) in [
            (1, &ONE_BIT.0[..], ONE_BIT.2),
            (2, &TWO_BITS.0[..], TWO_BITS.2),
        ] {
            let list = StatusList::decode(bits, lst, 1024).unwrap();
            let read: Vec<u8> = (0..values.len())
                .map(|i| list.get(i).unwrap().value())
                .collect();
            assert_eq!(read, values);
        }
    }

    /// The draft's large 2-bit example (Appendix C): 2^20 entries, a handful set.
    #[test]
    fn the_drafts_million_entry_example_decodes() {
        let lst = "eNrt2zENACEQAEEuoaBABP5VIO01fCjIHTMStt9ovGVIAAAAAABAbiEBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEB5WwIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAID0ugQAAAAAAAAAAAAAAAAAQG12SgAAAAAAAAAAAAAAAAAAAAAAAAAAAOCSIQEAAAAAAAAAAAAAAAAAAAAAAAD8ExIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwJEuAQAAAAAAAAAAAAAAAAAAAAAAAMB9SwIAAAAAAAAAAAAAAAAAAACoYUoAAAAAAAAAAAAAAEBqH81gAQw";
        let list = StatusList::decode(2, lst, 1 << 20).unwrap();
        assert_eq!(list.len(), 1 << 20);
        let set = [
            (0, 1),
            (1993, 2),
            (25460, 1),
            (159495, 3),
            (495669, 1),
            (554353, 1),
            (645645, 2),
            (723232, 1),
            (854545, 1),
            (934534, 2),
            (1000345, 3),
        ];
        for index in 0..list.len() {
            let expected = set
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(0, |(_, value)| *value);
            assert_eq!(list.get(index).unwrap().value(), expected, "entry {index}");
        }
    }

    #[test]
    fn an_encoded_list_decodes_to_itself() {
        let mut list = StatusList::filled(2, 4096, TokenStatus::Invalid);
        assert!(list.set(3, TokenStatus::Valid));
        assert!(list.set(9_000, TokenStatus::Suspended));
        let lst = list.encode();
        let read = StatusList::decode(2, &lst, 4096).unwrap();
        assert_eq!(read, list);
        assert_eq!(read.get(3), Some(TokenStatus::Valid));
        assert_eq!(read.get(9_000), Some(TokenStatus::Suspended));
        assert_eq!(read.get(4), Some(TokenStatus::Invalid), "the fill");
        assert_eq!(read.get(16_384), None, "past the end");
        assert!(
            lst.len() < 64,
            "a mostly uniform list compresses: {}",
            lst.len()
        );
    }

    #[test]
    fn a_list_is_refused_past_its_bound_or_when_malformed() {
        let lst = StatusList::filled(2, 1 << 20, TokenStatus::Invalid).encode();
        assert_eq!(
            StatusList::decode(2, &lst, 1 << 16),
            Err(StatusListError::TooLarge { max_bytes: 1 << 16 })
        );
        assert_eq!(
            StatusList::decode(3, &lst, 1 << 20),
            Err(StatusListError::Bits(3))
        );
        assert_eq!(
            StatusList::decode(2, "not base64!", 1 << 20),
            Err(StatusListError::Encoding)
        );
        let raw_deflate = URL_SAFE_NO_PAD.encode(miniz_oxide::deflate::compress_to_vec(&[0; 8], 6));
        assert_eq!(
            StatusList::decode(2, &raw_deflate, 1 << 20),
            Err(StatusListError::Compression),
            "DEFLATE without the ZLIB wrapper"
        );
    }

    #[test]
    fn four_and_eight_bit_entries_round_trip() {
        for bits in [4, 8] {
            let mut list = StatusList::filled(bits, 64, TokenStatus::Invalid);
            let per_byte = usize::from(8 / bits);
            assert_eq!(list.len(), 64 * per_byte);
            assert!(list.set(0, TokenStatus::Other(3)));
            assert!(list.set(list.len() - 1, TokenStatus::Suspended));
            assert!(list.set(5, TokenStatus::Other(12)));
            let read = StatusList::decode(u64::from(bits), &list.encode(), 64).unwrap();
            assert_eq!(read.get(0), Some(TokenStatus::Other(3)));
            assert_eq!(read.get(5), Some(TokenStatus::Other(12)));
            assert_eq!(read.get(1), Some(TokenStatus::Invalid));
            assert_eq!(read.get(read.len() - 1), Some(TokenStatus::Suspended));
        }
        let mut byte_wide = StatusList::filled(8, 1, TokenStatus::Valid);
        assert!(byte_wide.set(0, TokenStatus::Other(255)));
        assert_eq!(byte_wide.as_bytes(), [255]);
    }

    #[test]
    fn a_corrupted_or_truncated_stream_is_refused() {
        let lst = StatusList::filled(2, 256, TokenStatus::Invalid).encode();
        let mut bytes = URL_SAFE_NO_PAD.decode(&lst).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            StatusList::decode(2, &flipped, 1 << 20),
            Err(StatusListError::Compression),
            "Adler-32 mismatch"
        );
        bytes[last] ^= 1;
        let truncated = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 5]);
        assert_eq!(
            StatusList::decode(2, &truncated, 1 << 20),
            Err(StatusListError::Compression),
            "cut short"
        );
    }

    #[test]
    fn a_status_that_does_not_fit_or_an_index_past_the_end_changes_nothing() {
        let mut list = StatusList::filled(1, 1, TokenStatus::Valid);
        assert!(!list.set(0, TokenStatus::Suspended), "2 needs two bits");
        assert!(
            !list.set(8, TokenStatus::Invalid),
            "one byte holds 8 entries"
        );
        assert_eq!(list.as_bytes(), [0]);
    }
}
