//! Writes the seed corpora in `fuzz/corpus/<target>/`: a handful of real, valid inputs per target
//! (signed tokens, encoded requests, page tokens, catalogs, configurations). Run from `fuzz/`
//! with `cargo run --example make_seeds`; the output is committed.

use std::fs;
use std::path::Path;

use prost::Message;
use tokenmint::domain::Timestamp;
use tokenmint::issuance::paging::Page;
use tokenmint::proto::v1 as pb;
use tokenmint_fuzz::{assemble, fixed_keys, sample_claims};

/// A far-future expiry (2100-01-01), so seed tokens stay valid.
const FAR_FUTURE: i64 = 4_102_444_800;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn with_prefix(prefix: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(data);
    out
}

fn tokens() {
    let keys = fixed_keys();
    let claims = sample_claims(FAR_FUTURE);
    let minimal = format!(
        r#"{{"iss":"tokenmint","aud":["other","tokenmint"],"sub":"bob","client_id":"x","jti":"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","iat":1,"nbf":1,"exp":{FAR_FUTURE},"scope":"all"}}"#
    );
    for target in ["verify_token", "verify_offline"] {
        for (k, key) in keys.iter().enumerate() {
            let k = k as u8;
            let token = assemble(&key.encoded_header, claims.as_bytes(), |m| key.sign(m));
            write(
                target,
                &format!("raw-{}", key.kid),
                &with_prefix(&[0, k], token.as_bytes()),
            );
            let (_, after_header) = token.split_once('.').expect("a JWT");
            write(
                target,
                &format!("own-header-{}", key.kid),
                &with_prefix(&[1, k], after_header.as_bytes()),
            );
            write(
                target,
                &format!("signed-claims-{}", key.kid),
                &with_prefix(&[2, k], claims.as_bytes()),
            );
            write(
                target,
                &format!("signed-minimal-{}", key.kid),
                &with_prefix(&[2, k], minimal.as_bytes()),
            );
            let header = format!(
                r#"{{"alg":"{}","kid":"{}","typ":"application/at+jwt"}}"#,
                key.alg, key.kid
            );
            write(
                target,
                &format!("own-header-json-{}", key.kid),
                &with_prefix(&[3, k], format!("{header}\n{claims}").as_bytes()),
            );
        }
    }
}

/// `[rpc, environment, request-id length, request id…, protobuf…]`.
fn request(rpc: u8, production: bool, message: &impl Message) -> Vec<u8> {
    let rid = b"req-0001";
    let mut out = vec![rpc, u8::from(production), rid.len() as u8];
    out.extend_from_slice(rid);
    out.extend_from_slice(&message.encode_to_vec());
    out
}

fn requests() {
    let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned();
    let limits = pb::TokenLimits {
        spending_limits: vec![
            pb::SpendingLimit {
                coin: "btc".into(),
                tx_value_limit: "1000".into(),
            },
            pb::SpendingLimit {
                coin: "ETH".into(),
                tx_value_limit: "0050".into(),
            },
        ],
        all_erc20_tokens_limit: Some(pb::AllErc20TokensLimit {
            tx_value_limit: "7".into(),
        }),
    };
    let create = pb::CreateTokenRequest {
        label: "ci bot".into(),
        description: "deploys\nthings".into(),
        scopes: vec!["wallet_view".into(), "trade_view".into()],
        duration_seconds: Some(3600),
        ip_restrict: vec![
            "10.0.0.0/8".into(),
            "2001:db8::1".into(),
            "::ffff:10.1.2.3".into(),
        ],
        enterprise_id: "acme".into(),
        token_limits: Some(limits.clone()),
        admin: true,
        ..Default::default()
    };
    write("requests", "create-token", &request(0, false, &create));
    write(
        "requests",
        "create-token-production",
        &request(0, true, &create),
    );
    let expires = pb::CreateTokenRequest {
        label: "x".into(),
        scopes: vec!["all".into()],
        expires_at: Some(Timestamp::now().plus_secs(86_400).to_proto()),
        ..Default::default()
    };
    write(
        "requests",
        "create-token-expires-at",
        &request(0, false, &expires),
    );
    write(
        "requests",
        "get-token",
        &request(1, false, &pb::GetTokenRequest { id: id.clone() }),
    );
    let page = Page::parse(
        1,
        "",
        format!("tokens:{:?}", Some(tokenmint::domain::TokenStatus::Active)),
    )
    .expect("a first page");
    let mut rows = vec![
        (Timestamp(1_764_590_000_123_456), id.clone()),
        (Timestamp(0), id.clone()),
    ];
    let next = page.finish(&mut rows, |r| r.clone());
    let list = pb::ListTokensRequest {
        page_size: 20,
        page_token: next,
        status: pb::TokenStatus::Active as i32,
    };
    write("requests", "list-tokens", &request(2, false, &list));
    let update = pb::UpdateTokenRequest {
        id: id.clone(),
        label: "new label".into(),
        description: String::new(),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["label".into(), "description".into()],
        }),
    };
    write("requests", "update-token", &request(3, false, &update));
    write(
        "requests",
        "suspend-token",
        &request(4, false, &pb::SuspendTokenRequest { id: id.clone() }),
    );
    write(
        "requests",
        "activate-token",
        &request(5, false, &pb::ActivateTokenRequest { id: id.clone() }),
    );
    write(
        "requests",
        "revoke-token",
        &request(
            6,
            false,
            &pb::RevokeTokenRequest {
                id: id.clone(),
                ..Default::default()
            },
        ),
    );
    write(
        "requests",
        "delete-token",
        &request(7, false, &pb::DeleteTokenRequest { id: id.clone() }),
    );
    let key = &fixed_keys()[0];
    let token = assemble(
        &key.encoded_header,
        sample_claims(FAR_FUTURE).as_bytes(),
        |m| key.sign(m),
    );
    let verify = pb::VerifyTokenRequest {
        token,
        client_ip: "10.1.2.3".into(),
        required_scopes: vec!["wallet_view".into()],
    };
    write("requests", "verify-token", &request(8, false, &verify));
    let template = pb::CreateTemplateRequest {
        name: "Deploy".into(),
        enterprise_id: "acme".into(),
        description: "deploy bots".into(),
        token_scopes: vec!["wallet_view".into(), "trade_view".into()],
        allowed_ips: vec!["10.0.0.0/8".into()],
        token_limits: Some(limits.clone()),
        default_duration_seconds: 86_400,
    };
    write("requests", "create-template", &request(9, true, &template));
    write(
        "requests",
        "get-template",
        &request(10, false, &pb::GetTemplateRequest { id: id.clone() }),
    );
    let templates_page = Page::parse(1, "", "templates:acme".into()).expect("a first page");
    let mut rows = vec![(Timestamp(5), id.clone()), (Timestamp(4), id.clone())];
    let list = pb::ListTemplatesRequest {
        page_size: 5,
        page_token: templates_page.finish(&mut rows, |r| r.clone()),
        enterprise_id: "acme".into(),
    };
    write("requests", "list-templates", &request(11, false, &list));
    let update = pb::UpdateTemplateRequest {
        template: Some(pb::Template {
            id: id.clone(),
            name: "Deploy v2".into(),
            token_scopes: vec!["wallet_view".into()],
            allowed_ips: vec!["10.1.0.0/16".into()],
            token_limits: Some(limits),
            version: 1,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![
                "name".into(),
                "token_scopes".into(),
                "allowed_ips".into(),
                "token_limits".into(),
            ],
        }),
    };
    write("requests", "update-template", &request(12, false, &update));
    write(
        "requests",
        "delete-template",
        &request(13, false, &pb::DeleteTemplateRequest { id }),
    );
}

fn page_tokens() {
    // [page size (4), query length, query, id length, id, created_at (8), token]
    let seed = |size: i32, query: &str, id: &str, at: i64, token: &str| {
        let mut out = size.to_le_bytes().to_vec();
        out.push(query.len() as u8);
        out.extend_from_slice(query.as_bytes());
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(token.as_bytes());
        out
    };
    let id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    for (name, query) in [
        ("tokens", "tokens:Some(Active)"),
        ("templates", "templates:acme"),
    ] {
        let page = Page::parse(1, "", query.into()).expect("a first page");
        let mut rows = vec![
            (Timestamp(1_764_590_000_123_456), id.to_owned()),
            (Timestamp(0), id.to_owned()),
        ];
        let token = page.finish(&mut rows, |r| r.clone());
        write(
            "page_token",
            &format!("{name}-next"),
            &seed(50, query, id, 1_764_590_000_123_456, &token),
        );
    }
    write(
        "page_token",
        "first-page",
        &seed(0, "tokens:None", id, 0, ""),
    );
    write(
        "page_token",
        "too-large",
        &seed(5000, "templates:", id, -1, ""),
    );
}

fn catalogs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let default = fs::read(root.join("scopes/default.toml")).expect("the default catalog");
    write("scope_catalog", "default", &default);
    write(
        "scope_catalog",
        "default-with-requests",
        &with_prefix(&default, b"\0wallet_view\n trade_view \nbogus\nall\n"),
    );
    write(
        "scope_catalog",
        "dotted",
        b"[[scope]]\nname = \"environment.apiTokens.read\"\ndescription = \"read\"\ndeprecated = true\n\n[[scope]]\nname = \"a:b-c_d\"\ndescription = \"x\"\n\0environment.apiTokens.read\n",
    );
}

fn configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = fs::read(root.join("deploy/tokenmint.example.toml")).expect("the example config");
    write("config", "example", &example);
    write(
        "config",
        "example-with-env",
        &with_prefix(
            &example,
            b"\0TOKENMINT__TOKENS__ISSUER=b\nDATABASE_URL=postgres://u:p@db/tokenmint?password=x\nTOKENMINT__SERVER__MAX_MESSAGE_BYTES=4096\nOTHER=1\n",
        ),
    );
    write(
        "config",
        "small",
        b"environment = \"production\"\n[tokens]\nleeway_secs = 9\nissuer = \"a\"\n[server]\nlisten = \"[::1]:0\"\nallow_plaintext = true\n",
    );
    write(
        "config",
        "empty-with-env",
        b"\0TOKENMINT__BACKGROUND__CHANGE_POLL_INTERVAL_MS=0\nTOKENMINT__KEYS__ALGORITHM=ES256\n",
    );
}

fn main() {
    tokens();
    requests();
    page_tokens();
    catalogs();
    configs();
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
