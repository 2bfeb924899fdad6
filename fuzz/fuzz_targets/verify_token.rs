//! The server's token verifier (`verifier::verify_signature`, then the per-use checks) on
//! arbitrary input. It must never panic, and a token it signed itself must verify while any
//! one-character change to it must not.
//!
//! Input: byte 0 picks the mode, byte 1 the key ring (Ed25519 or P-256), the rest is the data:
//! - 0: the data is the whole token;
//! - 1: the ring's own header, then the data as `payload.signature` (reaches the signature check);
//! - 2: the data is a JSON payload the ring signs under its own header (reaches the claims);
//! - 3: like 2, under a header of the data's own (its first line).
//!
//! The server's rings are made at start-up with random keys (`KeyRing::ephemeral`), so seeds of
//! modes 0 and 1 stop at the `kid` or the signature; modes 2 and 3 reach everything after it.

#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tokenmint::domain::Timestamp;
use tokenmint::issuance::InactiveReason;
use tokenmint::domain::KeyAlgorithm;
use tokenmint::issuance::keys::KeyRing;
use tokenmint::issuance::verifier::{JwtPolicy, check_time, verify_signature};
use tokenmint_fuzz::{ISSUER, assemble, position, tamper};

fn rings() -> &'static [KeyRing; 2] {
    static RINGS: OnceLock<[KeyRing; 2]> = OnceLock::new();
    RINGS.get_or_init(|| {
        [
            KeyRing::ephemeral(KeyAlgorithm::EdDSA).expect("an Ed25519 ring"),
            KeyRing::ephemeral(KeyAlgorithm::ES256).expect("a P-256 ring"),
        ]
    })
}

fn policy() -> JwtPolicy {
    JwtPolicy {
        issuer: ISSUER.into(),
        audience: ISSUER.into(),
        leeway_secs: 30,
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, ring, rest @ ..] = data else {
        return;
    };
    let ring = &rings()[usize::from(*ring % 2)];
    let policy = policy();
    let signer = |input: &[u8]| ring.signing.sign(input).expect("signing works");
    let (token, signed_by_us) = match mode % 4 {
        0 => (String::from_utf8_lossy(rest).into_owned(), false),
        1 => (
            format!(
                "{}.{}",
                ring.signing.encoded_header,
                String::from_utf8_lossy(rest)
            ),
            false,
        ),
        2 => (assemble(&ring.signing.encoded_header, rest, signer), true),
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
    let result = verify_signature(&policy, &token, ring);
    if signed_by_us {
        // Our own header and signature: only the payload can be at fault.
        assert!(
            !matches!(
                result,
                Err(InactiveReason::BadSignature | InactiveReason::UnknownKey)
            ),
            "a token the ring signed was refused as {result:?}"
        );
    }
    if let Ok(verified) = &result {
        let _ = check_time(&policy, verified, Timestamp::now());
        let _ = check_time(&policy, verified, Timestamp(i64::MAX));
        let _ = check_time(&policy, verified, Timestamp(i64::MIN));
        for addr in ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1", "192.168.0.1"] {
            let _ = verified.allows_ip(addr.parse::<IpAddr>().ok());
        }
        let _ = verified.allows_ip(None);
        let _ = verified.scopes.grants("wallet_view");
        let _ = verified.scopes.to_claim();
        let _ = verified.ips.as_strings();
        // Any one-character change must be refused.
        let tampered = tamper(&token, position(data));
        let again = verify_signature(&policy, &tampered, ring);
        assert!(again.is_err(), "a tampered token verified: {tampered}");
    }
});
