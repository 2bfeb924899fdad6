//! Shared pieces of tokenmint's fuzz targets: fixed test keys (so that committed seed tokens keep
//! verifying), token assembly, a local JWKS endpoint for `tokenmint-verify`, and a splitter that
//! turns one fuzz input into several fields.
//!
//! The keys here are test keys, public in this repository: they sign nothing but fuzz inputs.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use tokenmint_verify::{JwksSource, Verifier};

/// Issuer and audience of the fuzzed verifiers (tokenmint's defaults).
pub const ISSUER: &str = "tokenmint";

/// The fixed Ed25519 key's seed.
const ED25519_SEED: [u8; 32] = *b"tokenmint fuzz key, never secret";

/// The fixed P-256 key, PKCS#8 v1 (made once with `openssl genpkey` + `openssl pkcs8 -topk8`).
const ES256_PKCS8_HEX: &str = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420383eec7b74946a8b6471b8c1e905d522bbc9a50f337a2133126589dbd02483b2a1440342000456b822f945c15540de7f189ae28d03b8bcc61746690c0d193a78b8f9a1b61518cc72b7f7d8ead633f246b6f55cc03395017e6cd8a05fdbfe8ea7eb8fb93867d5";

/// A fixed signing key with its `kid`, `alg` and encoded JWS header.
pub struct FixedKey {
    /// Key id.
    pub kid: &'static str,
    /// JWS algorithm name.
    pub alg: &'static str,
    /// base64url of `{"alg","kid","typ":"at+jwt"}`.
    pub encoded_header: String,
    pair: Pair,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

impl FixedKey {
    fn new(kid: &'static str, alg: &'static str, pair: Pair) -> Self {
        let header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"at+jwt"}}"#);
        Self {
            kid,
            alg,
            encoded_header: URL_SAFE_NO_PAD.encode(header),
            pair,
        }
    }

    /// Signs `message` (a JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.pair {
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Es256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .expect("P-256 signing works")
                .as_ref()
                .to_vec(),
        }
    }

    /// The public key as a JWK (JSON).
    pub fn jwk(&self) -> String {
        match &self.pair {
            Pair::Ed25519(pair) => format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"{}","alg":"EdDSA","use":"sig"}}"#,
                URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                self.kid
            ),
            Pair::Es256(pair) => {
                let point = &pair.public_key().as_ref()[1..];
                let (x, y) = point.split_at(32);
                format!(
                    r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}","kid":"{}","alg":"ES256","use":"sig"}}"#,
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y),
                    self.kid
                )
            }
        }
    }
}

/// The two fixed keys: Ed25519 (`fuzz-eddsa`) and P-256 (`fuzz-es256`).
pub fn fixed_keys() -> &'static [FixedKey; 2] {
    static KEYS: OnceLock<[FixedKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ed = Ed25519KeyPair::from_seed_unchecked(&ED25519_SEED).expect("a valid seed");
        let pkcs8: Vec<u8> = (0..ES256_PKCS8_HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&ES256_PKCS8_HEX[i..i + 2], 16).expect("hex"))
            .collect();
        let es = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .expect("a valid PKCS#8 P-256 key");
        [
            FixedKey::new("fuzz-eddsa", "EdDSA", Pair::Ed25519(ed)),
            FixedKey::new("fuzz-es256", "ES256", Pair::Es256(es)),
        ]
    })
}

/// `header.payload.signature` with both parts base64url-encoded and the signature made by `sign`.
pub fn assemble(
    encoded_header: &str,
    payload: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!("{encoded_header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Replaces the character at `at % token.len()` with another base64url character (or, for a `.`,
/// with `A`): the token then reads differently, so it must never verify.
pub fn tamper(token: &str, at: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = token.as_bytes().to_vec();
    let at = at % bytes.len();
    let old = bytes[at];
    bytes[at] = match ALPHABET.iter().position(|&c| c == old) {
        Some(i) => ALPHABET[(i + 1 + at % 63) % 64],
        None => b'A',
    };
    String::from_utf8(bytes).expect("ASCII stays UTF-8")
}

/// A position derived from all of `data` (for [`tamper`]): every input picks its own.
pub fn position(data: &[u8]) -> usize {
    data.iter().fold(17usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    })
}

/// Claims a tokenmint token carries (for seeds and signed-payload modes).
pub fn sample_claims(exp: i64) -> String {
    format!(
        r#"{{"iss":"{ISSUER}","aud":"{ISSUER}","sub":"alice","client_id":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","jti":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","iat":1700000000,"nbf":1700000000,"exp":{exp},"scope":"wallet_view trade_view","adm":true,"ips":["10.0.0.0/8","2001:db8::/32","::ffff:192.168.0.0/112"],"ent":"acme","tpl":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"}}"#
    )
}

/// A current-thread Tokio runtime and a `tokenmint-verify` [`Verifier`] that knows the fixed keys
/// (served once by a local JWKS endpoint). Unknown `kid`s never trigger a refetch (the minimum
/// refresh interval is a year), so a run does no I/O after start-up.
pub fn offline_verifier() -> &'static (tokio::runtime::Runtime, Verifier) {
    static VERIFIER: OnceLock<(tokio::runtime::Runtime, Verifier)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let keys = fixed_keys();
        let body = format!(r#"{{"keys":[{},{}]}}"#, keys[0].jwk(), keys[1].jwk());
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("bound")
        );
        std::thread::spawn(move || serve_jwks(listener, &body));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let verifier = runtime
            .block_on(
                Verifier::builder(JwksSource::http(url))
                    .issuer(ISSUER)
                    .audience(ISSUER)
                    .refresh_interval(Duration::ZERO)
                    .min_refresh_interval(Duration::from_secs(365 * 24 * 3600))
                    .build(),
            )
            .expect("the verifier fetches the fixed keys");
        (runtime, verifier)
    })
}

/// Answers every HTTP request on `listener` with the JWKS `body`.
fn serve_jwks(listener: TcpListener, body: &str) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes());
    }
}

/// Reads a fuzz input as a sequence of fields: fixed-size integers from the front and
/// length-prefixed strings, so that one input drives several parameters.
pub struct Fields<'a> {
    data: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Fields of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// The next byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next 4 bytes as a little-endian `i32` (missing bytes read as 0).
    pub fn i32(&mut self) -> i32 {
        i32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The next 8 bytes as a little-endian `i64`.
    pub fn i64(&mut self) -> i64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        i64::from_le_bytes(bytes)
    }

    /// A string of at most 255 bytes: a length byte, then that many bytes (lossily UTF-8).
    pub fn string(&mut self) -> String {
        let len = usize::from(self.byte()).min(self.data.len());
        let (text, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}
