//! `tokenmint-verify`'s offline [`Verifier`](tokenmint_verify::Verifier) on arbitrary input. It
//! must never panic, and a token signed with a key of its key set must never be refused for its
//! signature, while any one-character change to a token it accepts must be refused.
//!
//! The verifier knows two fixed keys (`fuzz-eddsa`, `fuzz-es256`, see `src/lib.rs`), so real
//! signed tokens are useful seeds. Input: byte 0 picks the mode, byte 1 the key, then:
//! - 0: the data is the whole token;
//! - 1: the key's header, then the data as `payload.signature`;
//! - 2: the data is a JSON payload signed under the key's header;
//! - 3: like 2, under a header of the data's own (its first line).
//!
//! Each token is checked with `verify_for` from an address and with scopes taken from the data.

#![no_main]

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tokenmint_fuzz::{assemble, fixed_keys, offline_verifier, position, tamper};
use tokenmint_verify::VerifyError;

/// Client addresses the use checks are tried with, picked by the data.
const ADDRESSES: [&str; 5] = [
    "10.1.2.3",
    "::ffff:10.1.2.3",
    "2001:db8::1",
    "192.168.0.1",
    "::1",
];

fuzz_target!(|data: &[u8]| {
    let [mode, key, rest @ ..] = data else {
        return;
    };
    let (runtime, verifier) = offline_verifier();
    let key = &fixed_keys()[usize::from(*key % 2)];
    let signer = |input: &[u8]| key.sign(input);
    let (token, signed_by_us) = match mode % 4 {
        0 => (String::from_utf8_lossy(rest).into_owned(), false),
        1 => (
            format!("{}.{}", key.encoded_header, String::from_utf8_lossy(rest)),
            false,
        ),
        2 => (assemble(&key.encoded_header, rest, signer), true),
        _ => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            (
                assemble(&URL_SAFE_NO_PAD.encode(header), payload, signer),
                false,
            )
        }
    };
    let pick = position(data);
    let client_ip: Option<IpAddr> = ADDRESSES
        .get(pick % (ADDRESSES.len() + 1))
        .and_then(|a| a.parse().ok());
    let scopes: &[&str] = match pick % 3 {
        0 => &[],
        1 => &["wallet_view"],
        _ => &["wallet_view", "all"],
    };
    let result = runtime.block_on(verifier.verify_for(&token, scopes, client_ip));
    if signed_by_us {
        assert!(
            !matches!(
                result,
                Err(VerifyError::BadSignature | VerifyError::UnknownKey)
            ),
            "a token signed with a known key was refused as {result:?}"
        );
    }
    if let Ok(claims) = &result {
        let _ = claims.allows_ip("::1".parse().expect("an address"));
        let _ = claims.has_scope("trade_view");
        let tampered = tamper(&token, pick);
        let again = runtime.block_on(verifier.verify(&tampered));
        assert!(again.is_err(), "a tampered token verified: {tampered}");
    }
});
