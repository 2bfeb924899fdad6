//! A `ring`-backed cryptography provider for `jsonwebtoken`, for tests and benchmarks that
//! check tokenmint's tokens with an independent JWT library (feature `jsonwebtoken`).
//!
//! tokenmint signs and verifies with ring directly (this crate's [`crate::Compact`] steps); no
//! production path goes through jsonwebtoken. Tests use it as a second opinion, and
//! jsonwebtoken 12 with `default-features = false` ships with no crypto backend: the first
//! `encode` or `decode` panics unless a [`CryptoProvider`] has been installed. Rather than
//! pull in a second crypto stack (`aws-lc-rs`, or the RustCrypto crates with `rsa` and its
//! advisory), this module is a minimal provider on top of `ring`.
//!
//! Only the two algorithms tokenmint issues are supported:
//!
//! - `EdDSA` (Ed25519). Private keys are PKCS#8 DER (v1 or v2, as produced by
//!   `Ed25519KeyPair::generate_pkcs8`); public keys are the raw 32 bytes.
//! - `ES256` (ECDSA over P-256 with SHA-256, fixed-length `r || s`
//!   signatures as JWS requires). Private keys are PKCS#8 v1 DER; public keys
//!   are 65-byte uncompressed SEC1 points (`0x04 || x || y`).
//!
//! Every other algorithm (`HS*`, `RS*`, `PS*`, `ES384`) is refused with
//! [`ErrorKind::UnsupportedAlgorithm`] and never panics, so a token whose
//! header names e.g. `HS256` can't be used for algorithm confusion. (`alg:
//! none` can't even be represented by jsonwebtoken's `Algorithm`; such
//! headers fail to parse.) The JWK helpers in [`KeyUtils`] are filled in too,
//! because `KeyUtils::new_unimplemented()` would panic when reached. RSA ones
//! return an error.
//!
//! Call [`install`] at the top of every test that signs or verifies with jsonwebtoken.

use std::ptr;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{self, ErrorKind, new_error};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, ED25519_PUBLIC_KEY_LEN,
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey,
};

/// Leading byte of an uncompressed SEC1 elliptic-curve point.
const SEC1_UNCOMPRESSED_TAG: u8 = 0x04;

/// Length in bytes of one P-256 affine coordinate.
const P256_COORDINATE_LEN: usize = 32;

/// The provider installed by [`install`]. It has to be a `static` because
/// `CryptoProvider::install_default` takes `&'static self`.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_unsupported,
        rsa_pub_components_from_public_key: rsa_unsupported,
        ec_pub_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Installs the ring-backed provider as jsonwebtoken's process-wide default. Idempotent: safe
/// to call from every test.
///
/// # Panics
/// If some *other* provider was installed first (it would stay in place, a jsonwebtoken
/// limitation): a test would then check tokens with a backend it did not mean to.
pub fn install() {
    if PROVIDER.install_default().is_ok() {
        return;
    }
    let ours_is_installed =
        CryptoProvider::try_get_default().is_some_and(|installed| ptr::eq(installed, &PROVIDER));
    assert!(
        ours_is_installed,
        "another jsonwebtoken CryptoProvider was installed first"
    );
}

/// The error returned for every algorithm or key type this provider refuses.
fn unsupported() -> errors::Error {
    new_error(ErrorKind::UnsupportedAlgorithm)
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// `CryptoProvider::signer_factory`: builds a signer for EdDSA or ES256 and
/// refuses every other algorithm.
fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> errors::Result<Box<dyn JwtSigner>> {
    let signer: Box<dyn JwtSigner> = match algorithm {
        Algorithm::EdDSA => Box::new(Ed25519Signer::new(key)?),
        Algorithm::ES256 => Box::new(Es256Signer::new(key)?),
        _ => return Err(unsupported()),
    };
    Ok(signer)
}

/// Returns the PKCS#8 DER held by `key`, checking that it belongs to `family`.
fn private_key_der(key: &EncodingKey, family: AlgorithmFamily) -> errors::Result<&[u8]> {
    if key.family() != family {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    Ok(key.as_bytes())
}

/// Parses an Ed25519 PKCS#8 document; accepts v1 (OpenSSL) and v2 (ring).
fn parse_ed25519_key_pair(der: &[u8]) -> errors::Result<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))
}

/// Parses a P-256 PKCS#8 v1 document for fixed-length (JWS) signatures.
fn parse_es256_key_pair(der: &[u8]) -> errors::Result<EcdsaKeyPair> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
        .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))
}

/// Signs with an Ed25519 private key (JWS `EdDSA`).
struct Ed25519Signer(Ed25519KeyPair);

impl Ed25519Signer {
    /// Parses the PKCS#8 DER of an `EncodingKey::from_ed_der` key.
    fn new(key: &EncodingKey) -> errors::Result<Self> {
        let der = private_key_der(key, AlgorithmFamily::Ed)?;
        parse_ed25519_key_pair(der).map(Self)
    }
}

impl Signer<Vec<u8>> for Ed25519Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for Ed25519Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

/// Signs with a P-256 private key (JWS `ES256`), producing 64-byte `r || s`.
struct Es256Signer {
    /// The parsed signing key.
    key_pair: EcdsaKeyPair,
    /// Randomness for the per-signature nonce.
    rng: SystemRandom,
}

impl Es256Signer {
    /// Parses the PKCS#8 DER of an `EncodingKey::from_ec_der` key.
    fn new(key: &EncodingKey) -> errors::Result<Self> {
        let der = private_key_der(key, AlgorithmFamily::Ec)?;
        let key_pair = parse_es256_key_pair(der)?;
        Ok(Self {
            key_pair,
            rng: SystemRandom::new(),
        })
    }
}

impl Signer<Vec<u8>> for Es256Signer {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        self.key_pair
            .sign(&self.rng, msg)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for Es256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// `CryptoProvider::verifier_factory`: builds a verifier for EdDSA or ES256
/// and refuses every other algorithm.
fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> errors::Result<Box<dyn JwtVerifier>> {
    let verifier = match algorithm {
        Algorithm::EdDSA => RingVerifier::ed25519(key)?,
        Algorithm::ES256 => RingVerifier::es256(key)?,
        _ => return Err(unsupported()),
    };
    Ok(Box::new(verifier))
}

/// Returns the raw public key held by `key`, checking that it belongs to `family`.
fn public_key_bytes(key: &DecodingKey, family: AlgorithmFamily) -> errors::Result<&[u8]> {
    if key.family() != family {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    key.try_get_as_bytes()
}

/// Whether `bytes` has the shape of an uncompressed P-256 point.
fn is_p256_point(bytes: &[u8]) -> bool {
    matches!(
        bytes.split_first(),
        Some((&SEC1_UNCOMPRESSED_TAG, coordinates)) if coordinates.len() == 2 * P256_COORDINATE_LEN
    )
}

/// Verifies signatures with a ring public key for one fixed algorithm.
struct RingVerifier {
    /// The JWS algorithm this verifier accepts.
    algorithm: Algorithm,
    /// The public key, parsed by ring at verification time.
    public_key: UnparsedPublicKey<Vec<u8>>,
}

impl RingVerifier {
    /// An `EdDSA` verifier over a raw 32-byte Ed25519 public key.
    fn ed25519(key: &DecodingKey) -> errors::Result<Self> {
        let bytes = public_key_bytes(key, AlgorithmFamily::Ed)?;
        if bytes.len() != ED25519_PUBLIC_KEY_LEN {
            return Err(new_error(ErrorKind::InvalidEddsaKey));
        }
        Ok(Self {
            algorithm: Algorithm::EdDSA,
            public_key: UnparsedPublicKey::new(&ED25519, bytes.to_vec()),
        })
    }

    /// An `ES256` verifier over a 65-byte uncompressed SEC1 P-256 point.
    fn es256(key: &DecodingKey) -> errors::Result<Self> {
        let bytes = public_key_bytes(key, AlgorithmFamily::Ec)?;
        if !is_p256_point(bytes) {
            return Err(new_error(ErrorKind::InvalidEcdsaKey));
        }
        Ok(Self {
            algorithm: Algorithm::ES256,
            public_key: UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, bytes.to_vec()),
        })
    }
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        self.public_key
            .verify(msg, signature)
            .map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

// ---------------------------------------------------------------------------
// JWK helpers (`KeyUtils`)
// ---------------------------------------------------------------------------

/// `KeyUtils` RSA helpers: RSA is not supported by this provider.
fn rsa_unsupported(_der: &[u8]) -> errors::Result<(Vec<u8>, Vec<u8>)> {
    Err(unsupported())
}

/// `KeyUtils::ec_pub_components_from_private_key`: the curve and `(x, y)` of
/// an ES256 private key; other algorithms are refused.
fn ec_pub_components_from_private_key(
    der: &[u8],
    algorithm: Algorithm,
) -> errors::Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if algorithm != Algorithm::ES256 {
        return Err(unsupported());
    }
    let key_pair = parse_es256_key_pair(der)?;
    split_p256_point(key_pair.public_key().as_ref())
}

/// Splits an uncompressed P-256 point into its `x` and `y` coordinates.
fn split_p256_point(point: &[u8]) -> errors::Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    if !is_p256_point(point) {
        return Err(new_error(ErrorKind::InvalidEcdsaKey));
    }
    let (x, y) = point[1..].split_at(P256_COORDINATE_LEN);
    Ok((EllipticCurve::P256, x.to_vec(), y.to_vec()))
}

/// `KeyUtils::ed_pub_components_from_private_key`: the raw public key of an
/// Ed25519 private key; other curves are refused.
fn ed_pub_components_from_private_key(
    der: &[u8],
    curve: &EllipticCurve,
) -> errors::Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => {
            let key_pair = parse_ed25519_key_pair(der)?;
            Ok(key_pair.public_key().as_ref().to_vec())
        }
        _ => Err(unsupported()),
    }
}

/// `KeyUtils::compute_digest`: SHA-2 digests for JWK thumbprints.
fn compute_digest(data: &[u8], hash: ThumbprintHash) -> errors::Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Header, Validation, decode, encode, get_current_timestamp};
    use serde::{Deserialize, Serialize};

    use super::*;

    /// Every algorithm jsonwebtoken knows that this provider must refuse.
    const UNSUPPORTED: [Algorithm; 10] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES384,
    ];

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    struct TestKeys {
        encoding: EncodingKey,
        decoding: DecodingKey,
    }

    fn claims(sub: &str) -> Claims {
        Claims {
            sub: sub.to_owned(),
            exp: get_current_timestamp() + 600,
        }
    }

    fn ed25519_keys() -> TestKeys {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
        let key_pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519 key");
        TestKeys {
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            decoding: DecodingKey::from_ed_der(key_pair.public_key().as_ref()),
        }
    }

    fn es256_keys() -> TestKeys {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256 key");
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .expect("parse P-256 key");
        TestKeys {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            decoding: DecodingKey::from_ec_der(key_pair.public_key().as_ref()),
        }
    }

    fn keys_for(algorithm: Algorithm) -> TestKeys {
        match algorithm {
            Algorithm::EdDSA => ed25519_keys(),
            Algorithm::ES256 => es256_keys(),
            other => panic!("no test keys for {other:?}"),
        }
    }

    /// A validation that only checks the signature and `exp`, independent of
    /// jsonwebtoken's defaults for required claims and audience.
    fn validation(algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims = HashSet::new();
        validation.validate_aud = false;
        validation
    }

    fn sign(algorithm: Algorithm, keys: &TestKeys, claims: &Claims) -> String {
        install();
        encode(&Header::new(algorithm), claims, &keys.encoding).expect("encode token")
    }

    fn error_kind<T>(result: errors::Result<T>) -> ErrorKind {
        match result {
            Ok(_) => panic!("expected an error, got Ok"),
            Err(error) => error.into_kind(),
        }
    }

    fn b64_json(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialize JSON"))
    }

    fn assert_round_trip(algorithm: Algorithm) {
        let keys = keys_for(algorithm);
        let original = claims("alice");
        let token = sign(algorithm, &keys, &original);

        let data =
            decode::<Claims>(&token, &keys.decoding, &validation(algorithm)).expect("decode token");

        assert_eq!(data.claims, original);
        assert_eq!(data.header.alg, algorithm);
    }

    fn assert_foreign_key_rejected(algorithm: Algorithm) {
        let signer = keys_for(algorithm);
        let other = keys_for(algorithm);
        let token = sign(algorithm, &signer, &claims("alice"));

        let result = decode::<Claims>(&token, &other.decoding, &validation(algorithm));

        assert_eq!(error_kind(result), ErrorKind::InvalidSignature);
    }

    fn assert_tampered_payload_rejected(algorithm: Algorithm) {
        let keys = keys_for(algorithm);
        let token = sign(algorithm, &keys, &claims("alice"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let forged = serde_json::to_value(claims("mallory")).expect("claims to JSON");
        let tampered = format!("{}.{}.{}", parts[0], b64_json(&forged), parts[2]);

        let result = decode::<Claims>(&tampered, &keys.decoding, &validation(algorithm));

        assert_eq!(error_kind(result), ErrorKind::InvalidSignature);
    }

    #[test]
    fn eddsa_round_trip() {
        assert_round_trip(Algorithm::EdDSA);
    }

    #[test]
    fn es256_round_trip() {
        assert_round_trip(Algorithm::ES256);
    }

    #[test]
    fn es256_signature_is_fixed_length() {
        let keys = es256_keys();
        let token = sign(Algorithm::ES256, &keys, &claims("alice"));
        let signature = token.rsplit('.').next().expect("signature segment");

        let raw = URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url signature");

        assert_eq!(raw.len(), 2 * P256_COORDINATE_LEN);
    }

    #[test]
    fn eddsa_rejects_token_signed_by_another_key() {
        assert_foreign_key_rejected(Algorithm::EdDSA);
    }

    #[test]
    fn es256_rejects_token_signed_by_another_key() {
        assert_foreign_key_rejected(Algorithm::ES256);
    }

    #[test]
    fn eddsa_rejects_tampered_payload() {
        assert_tampered_payload_rejected(Algorithm::EdDSA);
    }

    #[test]
    fn es256_rejects_tampered_payload() {
        assert_tampered_payload_rejected(Algorithm::ES256);
    }

    #[test]
    fn hs256_token_is_refused() {
        install();
        let header = serde_json::json!({ "alg": "HS256", "typ": "JWT" });
        let payload = serde_json::to_value(claims("alice")).expect("claims to JSON");
        let token = format!(
            "{}.{}.{}",
            b64_json(&header),
            b64_json(&payload),
            URL_SAFE_NO_PAD.encode(b"not-a-real-mac")
        );
        let key = DecodingKey::from_secret(b"secret").expect("HMAC decoding key");

        let result = decode::<Claims>(&token, &key, &validation(Algorithm::HS256));

        assert_eq!(error_kind(result), ErrorKind::UnsupportedAlgorithm);
    }

    #[test]
    fn hs256_signing_is_refused() {
        install();
        let key = EncodingKey::from_secret(b"secret").expect("HMAC encoding key");

        let result = encode(&Header::new(Algorithm::HS256), &claims("alice"), &key);

        assert_eq!(error_kind(result), ErrorKind::UnsupportedAlgorithm);
    }

    #[test]
    fn es384_signing_is_refused_even_with_an_ec_key() {
        let keys = es256_keys();
        install();

        let result = encode(
            &Header::new(Algorithm::ES384),
            &claims("alice"),
            &keys.encoding,
        );

        assert_eq!(error_kind(result), ErrorKind::UnsupportedAlgorithm);
    }

    #[test]
    fn alg_none_is_refused() {
        install();
        let keys = ed25519_keys();
        let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
        let payload = serde_json::to_value(claims("alice")).expect("claims to JSON");
        let token = format!("{}.{}.", b64_json(&header), b64_json(&payload));

        let result = decode::<Claims>(&token, &keys.decoding, &validation(Algorithm::EdDSA));

        assert!(result.is_err());
    }

    #[test]
    fn factories_refuse_every_other_algorithm() {
        let encoding = EncodingKey::from_secret(b"secret").expect("encoding key");
        let decoding = DecodingKey::from_secret(b"secret").expect("decoding key");
        for algorithm in UNSUPPORTED {
            assert_eq!(
                error_kind(new_signer(&algorithm, &encoding)),
                ErrorKind::UnsupportedAlgorithm,
                "signer for {algorithm:?}"
            );
            assert_eq!(
                error_kind(new_verifier(&algorithm, &decoding)),
                ErrorKind::UnsupportedAlgorithm,
                "verifier for {algorithm:?}"
            );
        }
    }

    #[test]
    fn verifier_rejects_key_of_the_wrong_family() {
        let eddsa = ed25519_keys();
        let es256 = es256_keys();
        let token = sign(Algorithm::EdDSA, &eddsa, &claims("alice"));

        let result = decode::<Claims>(&token, &es256.decoding, &validation(Algorithm::EdDSA));

        assert_eq!(error_kind(result), ErrorKind::InvalidKeyFormat);
    }

    #[test]
    fn verifier_rejects_malformed_public_keys() {
        let short_ed = DecodingKey::from_ed_der(&[7; 31]);
        let compressed_ec = DecodingKey::from_ec_der(&[0x02; 33]);

        assert_eq!(
            error_kind(new_verifier(&Algorithm::EdDSA, &short_ed)),
            ErrorKind::InvalidEddsaKey
        );
        assert_eq!(
            error_kind(new_verifier(&Algorithm::ES256, &compressed_ec)),
            ErrorKind::InvalidEcdsaKey
        );
    }

    #[test]
    fn signer_rejects_garbage_private_keys() {
        let garbage_ed = EncodingKey::from_ed_der(b"not a key");
        let garbage_ec = EncodingKey::from_ec_der(b"not a key");

        assert_eq!(
            error_kind(new_signer(&Algorithm::EdDSA, &garbage_ed)),
            ErrorKind::InvalidEddsaKey
        );
        assert_eq!(
            error_kind(new_signer(&Algorithm::ES256, &garbage_ec)),
            ErrorKind::InvalidEcdsaKey
        );
    }

    #[test]
    fn key_utils_extract_public_components() {
        let ed = ed25519_keys();
        let ec = es256_keys();
        let utils = &PROVIDER.key_utils;

        let ed_public = (utils.ed_pub_components_from_private_key)(
            ed.encoding.as_bytes(),
            &EllipticCurve::Ed25519,
        )
        .expect("Ed25519 public key");
        let (curve, x, y) =
            (utils.ec_pub_components_from_private_key)(ec.encoding.as_bytes(), Algorithm::ES256)
                .expect("P-256 public key");

        assert_eq!(
            ed_public.as_slice(),
            ed.decoding.try_get_as_bytes().expect("raw key")
        );
        assert_eq!(curve, EllipticCurve::P256);
        let mut point = vec![SEC1_UNCOMPRESSED_TAG];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        assert_eq!(
            point.as_slice(),
            ec.decoding.try_get_as_bytes().expect("raw key")
        );
    }

    #[test]
    fn key_utils_refuse_rsa_and_other_curves() {
        let ec = es256_keys();
        let utils = &PROVIDER.key_utils;

        assert_eq!(
            error_kind((utils.rsa_pub_components_from_private_key)(b"der")),
            ErrorKind::UnsupportedAlgorithm
        );
        assert_eq!(
            error_kind((utils.rsa_pub_components_from_public_key)(b"der")),
            ErrorKind::UnsupportedAlgorithm
        );
        assert_eq!(
            error_kind((utils.ec_pub_components_from_private_key)(
                ec.encoding.as_bytes(),
                Algorithm::ES384
            )),
            ErrorKind::UnsupportedAlgorithm
        );
        assert_eq!(
            error_kind((utils.ed_pub_components_from_private_key)(
                b"der",
                &EllipticCurve::P256
            )),
            ErrorKind::UnsupportedAlgorithm
        );
    }

    #[test]
    fn key_utils_compute_sha256() {
        let digest = (PROVIDER.key_utils.compute_digest)(b"abc", ThumbprintHash::SHA256)
            .expect("SHA-256 digest");

        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn install_is_idempotent() {
        install();
        install();

        let installed = CryptoProvider::try_get_default().expect("a provider is installed");

        assert!(ptr::eq(installed, &PROVIDER));
    }
}
