//! Micro-benchmarks of the signing and verification paths against raw ring (divan).
//!
//! `cargo bench --bench crypto`. Compare within one run: `mint_*` vs `ring_*_sign` is what claims
//! assembly and encoding add to a signature; `jsonwebtoken_encode` shows what re-parsing the
//! PKCS#8 key on every call (jsonwebtoken's `encode`) would cost; `policy_verify_*` vs
//! `ring_*_verify` is what our verification policy adds to the raw signature check, and
//! `jsonwebtoken_decode_eddsa` what the same checks cost through `jsonwebtoken::decode` (the
//! server's path before it checked signatures with ring directly);
//! `cache_key_*` compares the two hashes the verified-signature cache can key by on a token
//! (`cache_key_server` is the one this CPU gets: SHA-256 with SHA instructions, else BLAKE3).

use std::hint::black_box;

use divan::Bencher;
use tokenmint::domain::KeyAlgorithm;
use tokenmint::issuance::claims::{self, Audience, Claims};
use tokenmint::issuance::keys::KeyRing;
use tokenmint::issuance::verifier::{JwtPolicy, verify_signature};
use tokenmint_jwt::jsonwebtoken_provider;

fn main() {
    jsonwebtoken_provider::install();
    divan::main();
}

fn claims() -> Claims<'static> {
    let now = 1_800_000_000;
    let id = "01a23174-39ed-7634-95d9-31fce35eb30c".to_owned();
    Claims {
        iss: "tokenmint".into(),
        aud: Audience::One("tokenmint".into()),
        sub: "bench-user".into(),
        client_id: id.clone().into(),
        jti: id.into(),
        iat: now,
        nbf: now,
        exp: now + 3600,
        scope: "trade_trade trade_view wallet_create wallet_spend wallet_view".into(),
        ent: None,
        adm: false,
        tpl: None,
        ips: Some(vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()]),
        status: Some(tokenmint_jwt::StatusClaim {
            status_list: tokenmint_jwt::StatusListReference {
                idx: 93_517,
                uri: "https://tokenmint.internal/statuslists/q3sRgXJ1T9a0m6V8wYk2Zg".into(),
            },
        }),
    }
}

fn policy() -> JwtPolicy {
    JwtPolicy {
        issuer: "tokenmint".into(),
        audience: "tokenmint".into(),
        leeway_secs: 5,
    }
}

#[divan::bench(args = [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256])]
fn mint(bencher: Bencher, algorithm: KeyAlgorithm) {
    let ring = KeyRing::ephemeral(algorithm).unwrap();
    let claims = claims();
    bencher.bench_local(|| claims::sign(black_box(&claims), &ring.signing).unwrap());
}

#[divan::bench(args = [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256])]
fn ring_sign(bencher: Bencher, algorithm: KeyAlgorithm) {
    let ring = KeyRing::ephemeral(algorithm).unwrap();
    let message = vec![b'x'; 420];
    bencher.bench_local(|| ring.signing.sign(black_box(&message)).unwrap());
}

#[divan::bench]
fn jsonwebtoken_encode_eddsa(bencher: Bencher) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    let claims = claims();
    bencher.bench_local(|| jsonwebtoken::encode(&header, black_box(&claims), &key).unwrap());
}

#[divan::bench(args = [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256])]
fn policy_verify(bencher: Bencher, algorithm: KeyAlgorithm) {
    let ring = KeyRing::ephemeral(algorithm).unwrap();
    let token = claims::sign(&claims(), &ring.signing).unwrap();
    let policy = policy();
    bencher.bench_local(|| verify_signature(&policy, black_box(token.expose()), &ring).unwrap());
}

#[divan::bench]
fn jsonwebtoken_decode_eddsa(bencher: Bencher) {
    let ring = KeyRing::ephemeral(KeyAlgorithm::EdDSA).unwrap();
    let token = claims::sign(&claims(), &ring.signing).unwrap();
    let key = ring.verifying_key(&ring.signing.kid).unwrap();
    let decoding = jsonwebtoken::DecodingKey::from_ed_der(&key.public_key);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    bencher.bench_local(|| {
        jsonwebtoken::decode::<serde_json::Value>(black_box(token.expose()), &decoding, &validation)
            .unwrap()
    });
}

#[divan::bench(args = [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256])]
fn ring_verify(bencher: Bencher, algorithm: KeyAlgorithm) {
    let ring = KeyRing::ephemeral(algorithm).unwrap();
    let message = vec![b'x'; 420];
    let signature = ring.signing.sign(&message).unwrap();
    let key = ring.verifying_key(&ring.signing.kid).unwrap();
    let verification: &dyn ring::signature::VerificationAlgorithm = match algorithm {
        KeyAlgorithm::EdDSA => &ring::signature::ED25519,
        KeyAlgorithm::ES256 => &ring::signature::ECDSA_P256_SHA256_FIXED,
    };
    let public = ring::signature::UnparsedPublicKey::new(verification, key.public_key.clone());
    bencher.bench_local(|| public.verify(black_box(&message), &signature).unwrap());
}

/// A token of the size the load generator verifies (about 580 characters).
fn sample_token() -> String {
    let ring = KeyRing::ephemeral(KeyAlgorithm::EdDSA).unwrap();
    claims::sign(&claims(), &ring.signing)
        .unwrap()
        .expose()
        .to_owned()
}

#[divan::bench]
fn cache_key_server(bencher: Bencher) {
    let token = sample_token();
    bencher.bench_local(|| tokenmint::issuance::caches::token_hash(black_box(&token)));
}

#[divan::bench]
fn cache_key_blake3(bencher: Bencher) {
    let token = sample_token();
    bencher.bench_local(|| blake3::hash(black_box(token.as_bytes())));
}

#[divan::bench]
fn cache_key_sha256(bencher: Bencher) {
    let token = sample_token();
    bencher
        .bench_local(|| ring::digest::digest(&ring::digest::SHA256, black_box(token.as_bytes())));
}
