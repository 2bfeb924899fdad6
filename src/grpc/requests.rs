//! Parse at the edge: each request that carries values becomes a typed command of domain values
//! before the core sees it. Every bad field is reported at once, in one BadRequest, and nothing
//! here touches storage.

use crate::domain::{
    Description, EnterpriseId, IpRestriction, Label, ScopeCatalog, TemplateId, TemplateName,
    Timestamp, TokenLimits, TokenUpdate, UpdatePaths,
};
use crate::error::{Error, Result, Violations};
use crate::grpc::convert::{limits_from_proto, timestamp_from_proto};
use crate::issuance::management;
use crate::issuance::minting::{Lifetime, MintRequest};
use crate::issuance::templates::{self, TemplateFields, TemplatePatch};
use crate::proto::v1 as pb;

/// CreateToken's request as the core takes it: every field parsed against `catalog` and the
/// lifetime bounded by `max_lifetime_secs`, each bad field reported (in one BadRequest); a
/// malformed `template_id` alone, first. All of CreateToken's validation before any storage
/// access; the CLI's bootstrap mints through it too.
pub fn mint_request(
    req: pb::CreateTokenRequest,
    catalog: &ScopeCatalog,
    max_lifetime_secs: i64,
) -> Result<MintRequest> {
    let template = match req.template_id.as_str() {
        "" => None,
        raw => Some(TemplateId::parse(raw, "template_id")?),
    };
    let mut v = Violations::default();
    let label = match &template {
        Some(_) if req.label.trim().is_empty() => Some(None),
        _ => v.check(Label::parse(&req.label)).map(Some),
    };
    let description = v.check(Description::parse(&req.description));
    let scopes = v.check(catalog.parse_scopes(&req.scopes, "scopes"));
    let ips = v.check(IpRestriction::parse(&req.ip_restrict, "ip_restrict"));
    let enterprise = v.check(EnterpriseId::parse_optional(
        &req.enterprise_id,
        "enterprise_id",
    ));
    let limits = match limits_from_proto(req.token_limits) {
        Some(l) => v
            .check(TokenLimits::parse(
                &l.spending,
                l.all_erc20.as_deref(),
                "token_limits",
            ))
            .map(Some),
        None => Some(None),
    };
    let lifetime = v.check(Lifetime::parse(
        req.duration_seconds,
        req.expires_at.as_ref().map(timestamp_from_proto),
        Timestamp::now(),
        max_lifetime_secs,
    ));
    v.finish()?;
    match (
        label,
        description,
        scopes,
        ips,
        enterprise,
        limits,
        lifetime,
    ) {
        (
            Some(label),
            Some(description),
            Some(scopes),
            Some(ips),
            Some(enterprise),
            Some(limits),
            Some(lifetime),
        ) => Ok(MintRequest {
            label,
            description,
            scopes,
            lifetime,
            ips,
            enterprise,
            limits,
            admin: req.admin,
            template,
        }),
        _ => Err(Error::internal("validation passed without values")),
    }
}

/// UpdateToken's change: the fields its mask names (or, without one, those given a value),
/// each parsed. All of UpdateToken's validation, before any storage access.
pub fn token_update(req: &pb::UpdateTokenRequest) -> Result<TokenUpdate> {
    let paths = UpdatePaths::parse(
        req.update_mask.as_ref().map(|m| m.paths.as_slice()),
        management::UPDATABLE_FIELDS,
        &[
            ("label", !req.label.trim().is_empty()),
            ("description", !req.description.trim().is_empty()),
        ],
    )?;
    let mut v = Violations::default();
    let update = TokenUpdate {
        label: if paths.contains("label") {
            v.check(Label::parse(&req.label))
        } else {
            None
        },
        description: if paths.contains("description") {
            v.check(Description::parse(&req.description))
        } else {
            None
        },
    };
    v.finish()?;
    Ok(update)
}

/// A template's fields as CreateTemplate and UpdateTemplate carry them, before parsing.
struct RawTemplate<'a> {
    name: &'a str,
    enterprise_id: &'a str,
    description: &'a str,
    token_scopes: &'a [String],
    allowed_ips: &'a [String],
    token_limits: Option<&'a pb::TokenLimits>,
    default_duration_seconds: i64,
}

impl<'a> RawTemplate<'a> {
    fn of_create(req: &'a pb::CreateTemplateRequest) -> Self {
        Self {
            name: &req.name,
            enterprise_id: &req.enterprise_id,
            description: &req.description,
            token_scopes: &req.token_scopes,
            allowed_ips: &req.allowed_ips,
            token_limits: req.token_limits.as_ref(),
            default_duration_seconds: req.default_duration_seconds,
        }
    }

    fn of_template(template: &'a pb::Template) -> Self {
        Self {
            name: &template.name,
            enterprise_id: &template.enterprise_id,
            description: &template.description,
            token_scopes: &template.token_scopes,
            allowed_ips: &template.allowed_ips,
            token_limits: template.token_limits.as_ref(),
            default_duration_seconds: template.default_duration_seconds,
        }
    }

    fn limits(&self) -> Result<TokenLimits> {
        match limits_from_proto(self.token_limits.cloned()) {
            Some(l) => TokenLimits::parse(&l.spending, l.all_erc20.as_deref(), "token_limits"),
            None => Ok(TokenLimits::default()),
        }
    }
}

/// CreateTemplate's fields, each parsed against `catalog`, the default lifetime bounded by
/// `max_lifetime_secs`; every bad field reported at once.
pub fn template_fields(
    req: &pb::CreateTemplateRequest,
    catalog: &ScopeCatalog,
    max_lifetime_secs: i64,
) -> Result<TemplateFields> {
    let raw = RawTemplate::of_create(req);
    let mut v = Violations::default();
    let name = v.check(TemplateName::parse(raw.name));
    let enterprise = v.check(EnterpriseId::parse_optional(
        raw.enterprise_id,
        "enterprise_id",
    ));
    let description = v.check(Description::parse(raw.description));
    let scopes = v.check(catalog.parse_scopes(raw.token_scopes, "token_scopes"));
    let ips = v.check(IpRestriction::parse(raw.allowed_ips, "allowed_ips"));
    let limits = v.check(raw.limits());
    let duration = v.check(templates::parse_default_duration(
        raw.default_duration_seconds,
        max_lifetime_secs,
    ));
    v.finish()?;
    match (name, enterprise, description, scopes, ips, limits, duration) {
        (
            Some(name),
            Some(enterprise),
            Some(description),
            Some(scopes),
            Some(ips),
            Some(limits),
            Some(default_duration_secs),
        ) => Ok(TemplateFields {
            name,
            enterprise,
            description,
            scopes,
            ips,
            limits,
            default_duration_secs,
        }),
        _ => Err(Error::internal("template validation passed without values")),
    }
}

/// UpdateTemplate's change (its id is parsed apart, first): the fields its mask names (or,
/// without one, those given a value, [`templates::UPDATABLE_FIELDS`]), each parsed; bad fields
/// are reported under `template.`.
pub fn template_patch(
    template: &pb::Template,
    mask: Option<&prost_types::FieldMask>,
    catalog: &ScopeCatalog,
    max_lifetime_secs: i64,
) -> Result<TemplatePatch> {
    let raw = RawTemplate::of_template(template);
    let paths = UpdatePaths::parse(
        mask.map(|m| m.paths.as_slice()),
        templates::UPDATABLE_FIELDS,
        &[
            ("name", !raw.name.trim().is_empty()),
            ("description", !raw.description.trim().is_empty()),
            ("enterprise_id", !raw.enterprise_id.is_empty()),
            ("token_scopes", !raw.token_scopes.is_empty()),
            ("allowed_ips", !raw.allowed_ips.is_empty()),
            ("token_limits", raw.token_limits.is_some()),
            (
                "default_duration_seconds",
                raw.default_duration_seconds != 0,
            ),
        ],
    )?;
    let set = |field: &str| paths.contains(field);
    let mut v = Violations::default();
    let patch = TemplatePatch {
        name: set("name")
            .then(|| v.check(TemplateName::parse(raw.name)))
            .flatten(),
        enterprise: set("enterprise_id")
            .then(|| {
                v.check(EnterpriseId::parse_optional(
                    raw.enterprise_id,
                    "enterprise_id",
                ))
            })
            .flatten(),
        description: set("description")
            .then(|| v.check(Description::parse(raw.description)))
            .flatten(),
        scopes: set("token_scopes")
            .then(|| v.check(catalog.parse_scopes(raw.token_scopes, "token_scopes")))
            .flatten(),
        ips: set("allowed_ips")
            .then(|| v.check(IpRestriction::parse(raw.allowed_ips, "allowed_ips")))
            .flatten(),
        limits: set("token_limits").then(|| v.check(raw.limits())).flatten(),
        default_duration_secs: set("default_duration_seconds")
            .then(|| {
                v.check(templates::parse_default_duration(
                    raw.default_duration_seconds,
                    max_lifetime_secs,
                ))
            })
            .flatten(),
    };
    v.finish().map_err(|e| e.nested_in("template"))?;
    Ok(patch)
}
