//! Status lists as a verifier receives them from the network: `StatusList::decode` of any
//! `bits` and `lst` must never panic and never inflate past its bound, every entry of what it
//! decodes must read back (and none past the end), and re-encoding must give the same list. The
//! Status List Token's claims are parsed from the same bytes, which must never panic either.
//!
//! Input: the `bits` value (1 byte), then the `lst` text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenmint_jwt::status_list::{StatusList, StatusListClaims};

/// The bound every decode here is given.
const MAX_BYTES: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<StatusListClaims<'_>>(data);
    let Some((bits, lst)) = data.split_first() else {
        return;
    };
    let Ok(lst) = std::str::from_utf8(lst) else {
        return;
    };
    let Ok(list) = StatusList::decode(u64::from(*bits), lst, MAX_BYTES) else {
        return;
    };
    assert!(list.as_bytes().len() <= MAX_BYTES, "inflated past the bound");
    let len = list.len();
    assert_eq!(len, list.as_bytes().len() * 8 / usize::from(list.bits()));
    for index in 0..len {
        assert!(list.get(index).is_some(), "entry {index} of {len} unreadable");
    }
    assert!(list.get(len).is_none(), "an entry past the end");
    let again = StatusList::decode(u64::from(*bits), &list.encode(), MAX_BYTES);
    assert_eq!(again.as_ref(), Ok(&list), "re-encoding changed the list");
});
