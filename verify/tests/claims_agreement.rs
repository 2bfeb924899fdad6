//! The server and this crate reach the same verdict on any signed token: a property test that
//! signs generated claims (good and bad ids, `ips`, issuers, audiences, `typ`, time windows)
//! with a server key and compares the server's verification (`verify_signature`, then
//! `check_time`: what VerifyToken runs before it looks the token up) with [`Verifier::verify`].
//! No tokenmint server runs: the key set is served by a one-route HTTP server.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokenmint::domain::{KeyAlgorithm, Timestamp};
use tokenmint::issuance::keys::KeyRing;
use tokenmint::issuance::verifier::{self, JwtPolicy};
use tokenmint_verify::{JwksSource, Verifier, VerifyError};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::helpers::{read_request_head, unix_now};

const ISSUER: &str = "tokenmint";
const AUDIENCE: &str = "tokenmint";
const LEEWAY_SECS: i64 = 5;
const JTI: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// Serves `document` to every HTTP request on a local port; returns its URL.
async fn serve(document: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let document = document.clone();
            tokio::spawn(async move {
                if !read_request_head(&mut stream).await {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{document}",
                    document.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}/jwks.json")
}

/// A server key ring, and an offline verifier that reads its key set over HTTP.
struct Parties {
    runtime: Runtime,
    ring: Arc<KeyRing>,
    verifier: Verifier,
}

impl Parties {
    fn new(algorithm: KeyAlgorithm) -> Self {
        let runtime = Runtime::new().expect("runtime");
        let ring = Arc::new(KeyRing::ephemeral(algorithm).expect("key ring"));
        let keys: Vec<_> = ring.verifying_keys().map(|key| key.to_jwk()).collect();
        let document = json!({ "keys": keys }).to_string();
        let verifier = runtime.block_on(async {
            let url = serve(document).await;
            Verifier::builder(JwksSource::http(url))
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .leeway(Duration::from_secs(LEEWAY_SECS as u64))
                .build()
                .await
                .expect("verifier builds")
        });
        Self {
            runtime,
            ring,
            verifier,
        }
    }

    /// Signs `claims` under `header` (its `kid` and `alg` are the key's).
    fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> String {
        header.insert("kid".into(), self.ring.signing.kid.clone().into());
        header.insert("alg".into(), self.ring.signing.algorithm.name().into());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.ring.signing.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The server's verdict: `ACTIVE` or its inactive reason.
    fn server(&self, token: &str, now: i64) -> &'static str {
        let policy = JwtPolicy {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway_secs: LEEWAY_SECS,
        };
        let verdict = verifier::verify_signature(&policy, token, &self.ring)
            .and_then(|token| verifier::check_time(&policy, &token, Timestamp::from_secs(now)));
        verdict.map_or_else(|reason| reason.as_str(), |()| "ACTIVE")
    }

    /// This crate's verdict, named as the server names it.
    fn offline(&self, token: &str) -> &'static str {
        match self.runtime.block_on(self.verifier.verify(token)) {
            Ok(_) => "ACTIVE",
            Err(VerifyError::Malformed) => "MALFORMED",
            Err(VerifyError::BadSignature) => "BAD_SIGNATURE",
            Err(VerifyError::UnknownKey) => "UNKNOWN_KEY",
            Err(VerifyError::Expired) => "EXPIRED",
            Err(VerifyError::NotYetValid) => "NOT_YET_VALID",
            Err(VerifyError::InvalidClaims) => "INVALID_CLAIMS",
            Err(other) => panic!("a verdict the token alone cannot cause: {other:?}"),
        }
    }
}

/// A claim's value: one tokenmint writes, or one it never would.
fn one_of(values: &[Value]) -> impl Strategy<Value = Option<Value>> + use<> {
    let values = values.to_vec();
    proptest::option::weighted(0.9, proptest::sample::select(values))
}

/// Generated claims: each field present or absent, well or badly formed.
fn claims() -> impl Strategy<Value = Value> {
    let ids = (
        one_of(&[json!(JTI), json!("t1"), json!(""), json!(7)]),
        one_of(&[
            json!("alice"),
            json!(""),
            json!("a b"),
            json!("x".repeat(129)),
        ]),
        proptest::option::of(one_of(&[
            json!("acme"),
            json!(""),
            json!("ac me"),
            Value::Null,
        ])),
        proptest::option::of(one_of(&[json!(JTI), json!("tp1"), json!(""), Value::Null])),
    );
    let grants = (
        one_of(&[json!("wallet_view"), json!(""), json!(["wallet_view"])]),
        proptest::option::of(one_of(&[
            json!(["10.0.0.0/8"]),
            json!([]),
            Value::Null,
            json!(["not-a-network"]),
            json!("10.0.0.0/8"),
        ])),
        proptest::option::of(one_of(&[json!(true), json!(false), json!("yes")])),
    );
    let party = (
        one_of(&[json!(ISSUER), json!("someone-else")]),
        one_of(&[
            json!(AUDIENCE),
            json!([AUDIENCE, "billing"]),
            json!("billing"),
        ]),
    );
    // Offsets from now: (nbf, exp).
    let window = prop_oneof![
        Just((-60, 600)),
        Just((-600, -60)),
        Just((-600, -2)),
        Just((60, 600)),
        Just((2, 600)),
    ];
    (ids, grants, party, window).prop_map(
        |((jti, sub, ent, tpl), (scope, ips, adm), (iss, aud), (nbf, exp))| {
            let now = unix_now();
            let mut claims = Map::new();
            let mut put = |name: &str, value: Option<Value>| {
                if let Some(value) = value {
                    claims.insert(name.into(), value);
                }
            };
            put("client_id", jti.clone());
            put("jti", jti);
            put("sub", sub);
            put("ent", ent.flatten());
            put("tpl", tpl.flatten());
            put("scope", scope);
            put("ips", ips.flatten());
            put("adm", adm.flatten());
            put("iss", iss);
            put("aud", aud);
            put("iat", Some(json!(now - 60)));
            put("nbf", Some(json!(now + nbf)));
            put("exp", Some(json!(now + exp)));
            Value::Object(claims)
        },
    )
}

fn header() -> impl Strategy<Value = Map<String, Value>> {
    proptest::sample::select(vec![
        json!("at+jwt"),
        json!("application/at+jwt"),
        json!("JWT"),
    ])
    .prop_map(|typ| {
        let mut header = Map::new();
        header.insert("typ".into(), typ);
        header
    })
}

fn agree(parties: &Parties, header: Map<String, Value>, claims: &Value) -> (String, String) {
    let token = parties.sign(header, claims);
    let server = parties.server(&token, unix_now());
    let offline = parties.offline(&token);
    (server.to_owned(), offline.to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn server_and_offline_verifiers_reach_the_same_verdict_on_eddsa_tokens(
        header in header(),
        claims in claims(),
    ) {
        static PARTIES: std::sync::LazyLock<Parties> =
            std::sync::LazyLock::new(|| Parties::new(KeyAlgorithm::EdDSA));
        let (server, offline) = agree(&PARTIES, header, &claims);
        prop_assert_eq!(server, offline, "claims {}", claims);
    }
}

#[test]
fn both_verifiers_accept_a_well_formed_token_and_refuse_one_bad_id() {
    let parties = Parties::new(KeyAlgorithm::ES256);
    let now = unix_now();
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": JTI, "jti": JTI,
        "iat": now, "nbf": now, "exp": now + 600, "scope": "wallet_view", "ent": "acme",
    });
    let mut header = Map::new();
    header.insert("typ".into(), json!("at+jwt"));

    let (server, offline) = agree(&parties, header.clone(), &claims);
    assert_eq!((server.as_str(), offline.as_str()), ("ACTIVE", "ACTIVE"));

    claims["ent"] = json!("");
    let (server, offline) = agree(&parties, header, &claims);
    assert_eq!(
        (server.as_str(), offline.as_str()),
        ("MALFORMED", "MALFORMED")
    );
}
