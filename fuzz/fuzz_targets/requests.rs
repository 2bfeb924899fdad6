//! Request validation of every RPC on arbitrary decoded messages: the bytes are decoded with prost
//! into the RPC's request type, then put through the conversion and validation its handler and
//! core run before any storage access (domain parsers, field masks, page tokens, lifetimes,
//! production rules), and every refusal is turned into the `tonic::Status` a client would get.
//!
//! It must never panic; a refusal with INVALID_ARGUMENT always names a field; and whatever a
//! valid CreateToken yields, the token signed for it verifies with the same scopes and networks.
//!
//! Input: byte 0 picks the RPC, byte 1 the environment (bit 0: production), then a
//! length-prefixed `x-request-id`, then the protobuf request. Parts that depend on stored state
//! (templates, callers, enterprise membership, narrowing) are not here: they are not validation.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokenmint::domain::{
    EnterpriseId, Environment, KeyAlgorithm, ScopeCatalog, TemplateId, Timestamp, TokenId,
};
use tokenmint::error::{Error, ErrorCode, Result, reason};
use tokenmint::grpc::{convert, request_id, requests, status};
use tokenmint::issuance::claims::{self, Audience, Claims};
use tokenmint::issuance::introspection::parse_client_ip;
use tokenmint::issuance::keys::KeyRing;
use tokenmint::issuance::paging::Page;
use tokenmint::issuance::rules;
use tokenmint::issuance::verifier::{JwtPolicy, check_time, verify_signature};
use tokenmint::proto::v1 as pb;
use tokenmint_fuzz::{Fields, ISSUER};

/// The default `tokens.max_lifetime_secs` (one year) and `tokens.default_lifetime_secs`.
const MAX_LIFETIME_SECS: i64 = 365 * 24 * 3600;
const DEFAULT_LIFETIME_SECS: i64 = 30 * 24 * 3600;

struct World {
    catalog: ScopeCatalog,
    ring: KeyRing,
    policy: JwtPolicy,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        catalog: ScopeCatalog::builtin(),
        ring: KeyRing::ephemeral(KeyAlgorithm::EdDSA).expect("a key ring"),
        policy: JwtPolicy {
            issuer: ISSUER.into(),
            audience: ISSUER.into(),
            leeway_secs: 30,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut fields = Fields::new(data);
    let rpc = fields.byte();
    let environment = if fields.byte() & 1 == 1 {
        Environment::Production
    } else {
        Environment::Test
    };
    let request_id = fields.string();
    let message = fields.rest();
    let Some(result) = validate(rpc, environment, message) else {
        return;
    };
    if let Err(error) = result {
        assert!(
            error.code != ErrorCode::InvalidArgument || !error.violations.is_empty(),
            "INVALID_ARGUMENT without a field violation: {error:?}"
        );
        let mut request = tonic::Request::new(());
        if let Ok(value) = request_id.parse() {
            request.metadata_mut().insert(request_id::HEADER, value);
        }
        let rid = request_id::of(&request);
        let status = status::to_status(error, &rid);
        let _ = status.into_http::<()>();
    }
});

/// Validates `message` as the request of RPC number `rpc`; `None` when it does not decode.
fn validate(rpc: u8, environment: Environment, message: &[u8]) -> Option<Result<()>> {
    Some(match rpc % 16 {
        0 => create_token(pb::CreateTokenRequest::decode(message).ok()?, environment),
        1 => TokenId::parse(&pb::GetTokenRequest::decode(message).ok()?.id, "id").map(drop),
        2 => list_tokens(pb::ListTokensRequest::decode(message).ok()?),
        3 => update_token(pb::UpdateTokenRequest::decode(message).ok()?),
        4 => TokenId::parse(&pb::SuspendTokenRequest::decode(message).ok()?.id, "id").map(drop),
        5 => TokenId::parse(&pb::ActivateTokenRequest::decode(message).ok()?.id, "id").map(drop),
        6 => TokenId::parse(&pb::RevokeTokenRequest::decode(message).ok()?.id, "id").map(drop),
        7 => TokenId::parse(&pb::DeleteTokenRequest::decode(message).ok()?.id, "id").map(drop),
        8 => verify_token(pb::VerifyTokenRequest::decode(message).ok()?),
        9 => create_template(
            pb::CreateTemplateRequest::decode(message).ok()?,
            environment,
        ),
        10 => TemplateId::parse(&pb::GetTemplateRequest::decode(message).ok()?.id, "id").map(drop),
        11 => list_templates(pb::ListTemplatesRequest::decode(message).ok()?),
        12 => update_template(pb::UpdateTemplateRequest::decode(message).ok()?),
        13 => {
            TemplateId::parse(&pb::DeleteTemplateRequest::decode(message).ok()?.id, "id").map(drop)
        }
        14 => pb::ListScopesRequest::decode(message)
            .ok()
            .map(drop)
            .map(Ok)?,
        _ => pb::GetJwksRequest::decode(message).ok().map(drop).map(Ok)?,
    })
}

/// CreateToken: every field parsed by the server's own edge conversion, the lifetime computed,
/// the production rules applied; then the token is signed and verified.
fn create_token(req: pb::CreateTokenRequest, environment: Environment) -> Result<()> {
    let world = world();
    let admin = req.admin;
    let now = Timestamp::now();
    let mint = requests::mint_request(req, &world.catalog, MAX_LIFETIME_SECS)?;
    let expires_at = mint
        .lifetime
        .expiry(now, DEFAULT_LIFETIME_SECS, MAX_LIFETIME_SECS)
        .at();
    let (scopes, ips, enterprise) = (mint.scopes, mint.ips, mint.enterprise);
    rules::require_scopes(&scopes, "scopes")?;
    rules::check_environment(environment, &scopes, &ips, "scopes", "ip_restrict")?;
    let id = TokenId::generate();
    let claims = Claims {
        iss: ISSUER.into(),
        aud: Audience::One(ISSUER.into()),
        sub: "alice".into(),
        client_id: id.to_string().into(),
        jti: id.to_string().into(),
        iat: now.as_secs(),
        nbf: now.as_secs(),
        exp: expires_at.as_secs(),
        scope: scopes.to_claim().into(),
        ent: enterprise.as_ref().map(|e| e.to_string().into()),
        adm: admin,
        tpl: None,
        ips: (!ips.is_unrestricted()).then(|| ips.to_strings()),
        status: None,
    };
    let raw = claims::sign(&claims, &world.ring.signing)?;
    let verified = verify_signature(&world.policy, raw.expose(), &world.ring)
        .expect("a token minted from a valid request verifies");
    assert_eq!(*verified.scopes, scopes, "the token's scopes changed");
    assert_eq!(verified.ips, ips, "the token's networks changed");
    assert_eq!(verified.admin, admin);
    assert_eq!(verified.id, id);
    assert!(check_time(&world.policy, &verified, now).is_ok());
    Ok(())
}

fn list_tokens(req: pb::ListTokensRequest) -> Result<()> {
    let status = convert::status_filter_from_proto(req.status).map_err(|n| {
        Error::invalid(
            "status",
            reason::INVALID_FILTER,
            format!("{n} is not a TokenStatus value"),
        )
    })?;
    let query = format!("tokens:{status:?}");
    Page::parse(req.page_size, &req.page_token, query).map(drop)
}

fn update_token(req: pb::UpdateTokenRequest) -> Result<()> {
    TokenId::parse(&req.id, "id")?;
    requests::token_update(&req).map(drop)
}

fn verify_token(req: pb::VerifyTokenRequest) -> Result<()> {
    let world = world();
    let client_ip = parse_client_ip(&req.client_ip)?;
    let required = world
        .catalog
        .parse_scopes(&req.required_scopes, "required_scopes")?;
    if let Ok(token) = verify_signature(&world.policy, &req.token, &world.ring) {
        let _ = check_time(&world.policy, &token, Timestamp::now());
        let _ = token.allows_ip(client_ip);
        let _ = token.scopes.missing_from(&required);
    }
    Ok(())
}

/// CreateTemplate: every field parsed by the server's own edge conversion, then the rules on
/// the values.
fn create_template(req: pb::CreateTemplateRequest, environment: Environment) -> Result<()> {
    let world = world();
    let fields = requests::template_fields(&req, &world.catalog, MAX_LIFETIME_SECS)?;
    rules::require_scopes(&fields.scopes, "token_scopes")?;
    rules::check_environment(
        environment,
        &fields.scopes,
        &fields.ips,
        "token_scopes",
        "allowed_ips",
    )
}

fn list_templates(req: pb::ListTemplatesRequest) -> Result<()> {
    let enterprise = EnterpriseId::parse_optional(&req.enterprise_id, "enterprise_id")?;
    let query = format!(
        "templates:{}",
        enterprise
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    Page::parse(req.page_size, &req.page_token, query).map(drop)
}

/// UpdateTemplate: the template and its id, then the server's own edge conversion of the mask
/// and the named fields.
fn update_template(req: pb::UpdateTemplateRequest) -> Result<()> {
    let world = world();
    let template = req.template.ok_or_else(|| {
        Error::invalid(
            "template",
            reason::TEMPLATE_REQUIRED,
            "template is required (with its id and the new values)",
        )
    })?;
    TemplateId::parse(&template.id, "template.id")?;
    requests::template_patch(
        &template,
        req.update_mask.as_ref(),
        &world.catalog,
        MAX_LIFETIME_SECS,
    )
    .map(drop)
}
