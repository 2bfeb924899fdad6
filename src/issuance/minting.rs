//! Minting (CreateToken): a request is parsed, narrowed by its template, then by its caller,
//! then by the environment's rules (authority.rs), signed and stored through the group-commit
//! writer.

use std::borrow::Cow;
use std::sync::Arc;

use tokenmint_jwt::{StatusClaim, StatusListReference};

use crate::domain::{
    Description, EnterpriseId, Environment, IpRestriction, KeyId, Label, ScopeCatalog, ScopeSet,
    StoredStatus, TemplateId, Timestamp, TokenId, TokenLimits, TokenRecord,
};
use crate::error::{Error, Result, reason};
use crate::issuance::authority::{self, Expiry, Grant};
use crate::issuance::caller::Caller;
use crate::issuance::claims::{self, Audience, Claims, RawToken};
use crate::issuance::keys::KeyManager;
use crate::issuance::rules;
use crate::issuance::status_allocation::StatusAllocator;
use crate::issuance::templates::{self, TemplateManager};
use crate::issuance::verifier::JwtPolicy;
use crate::store::{Store, TokenWriter};

/// Issuance rules from configuration.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    /// `test` or `production`.
    pub environment: Environment,
    /// Lifetime when the request gives none, in seconds.
    pub default_lifetime_secs: i64,
    /// Longest allowed lifetime, in seconds.
    pub max_lifetime_secs: i64,
    /// Signature and claim policy.
    pub jwt: JwtPolicy,
}

/// A CreateToken request as the core receives it: every field already parsed (at the edge:
/// `grpc::convert::mint_request`, which the CLI's bootstrap uses too).
#[derive(Debug, Clone)]
pub struct MintRequest {
    /// The label; `None` when a template is named and no label given: the template's name.
    pub label: Option<Label>,
    /// The description.
    pub description: Description,
    /// The scopes asked for (checked against the template and the caller later).
    pub scopes: ScopeSet,
    /// The lifetime asked for.
    pub lifetime: Lifetime,
    /// The networks the token may be used from (unrestricted: inherited from the caller).
    pub ips: IpRestriction,
    /// The enterprise the token is bound to, if any.
    pub enterprise: Option<EnterpriseId>,
    /// The spending limits asked for, if any.
    pub limits: Option<TokenLimits>,
    /// Whether the token is admin.
    pub admin: bool,
    /// The template to mint from, if any.
    pub template: Option<TemplateId>,
}

/// The lifetime a CreateToken asks for, within the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// `duration_seconds`: this many seconds (positive, at most the maximum) from the mint.
    Duration(i64),
    /// `expires_at`: this time (in the future, at most the maximum away).
    Until(Timestamp),
    /// Neither: the template's default lifetime, else the configured default (each cut to the
    /// maximum).
    Default,
}

impl Lifetime {
    /// The lifetime of the two request fields at `now`, each bounded by `max_lifetime_secs`
    /// (LIFETIME_TOO_LONG); both given is CONFLICTING_LIFETIME, a non-positive duration or a
    /// past expiry INVALID_LIFETIME.
    pub fn parse(
        duration_seconds: Option<i64>,
        expires_at: Option<Timestamp>,
        now: Timestamp,
        max_lifetime_secs: i64,
    ) -> Result<Self> {
        let max = max_lifetime_secs;
        let too_long = |field: &str| {
            Error::invalid(
                field,
                reason::LIFETIME_TOO_LONG,
                format!("the lifetime may be at most {max} seconds"),
            )
            .with_meta("max_lifetime_seconds", max.to_string())
        };
        match (duration_seconds, expires_at) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "expires_at",
                reason::CONFLICTING_LIFETIME,
                "give duration_seconds or expires_at, not both",
            )),
            (Some(secs), None) if secs <= 0 => Err(Error::invalid(
                "duration_seconds",
                reason::INVALID_LIFETIME,
                "duration_seconds must be positive",
            )),
            (Some(secs), None) if secs > max => Err(too_long("duration_seconds")),
            (Some(secs), None) => Ok(Self::Duration(secs)),
            (None, Some(at)) if at <= now => Err(Error::invalid(
                "expires_at",
                reason::INVALID_LIFETIME,
                "expires_at must be in the future",
            )),
            (None, Some(at)) if at > now.plus_secs(max) => Err(too_long("expires_at")),
            (None, Some(at)) => Ok(Self::Until(at)),
            (None, None) => Ok(Self::Default),
        }
    }

    /// The expiry of a token minted at `now` (whole seconds, as the JWT carries them);
    /// `default_secs` for [`Lifetime::Default`], cut to `max_secs`. The caller's bound comes
    /// later, in [`authority::narrow`].
    pub fn expiry(self, now: Timestamp, default_secs: i64, max_secs: i64) -> Expiry {
        match self {
            Self::Duration(secs) => Expiry::Asked {
                at: Timestamp::from_secs(now.plus_secs(secs).ceil_secs()),
                field: "duration_seconds",
            },
            Self::Until(at) => Expiry::Asked {
                at: Timestamp::from_secs(at.as_secs()),
                field: "expires_at",
            },
            Self::Default => Expiry::Default(Timestamp::from_secs(
                now.plus_secs(default_secs.min(max_secs)).ceil_secs(),
            )),
        }
    }
}

/// A new token: its metadata, the signed token (shown once) and deprecated scopes it carries.
#[derive(Debug)]
pub struct MintedToken {
    /// Stored metadata.
    pub record: TokenRecord,
    /// The signed JWT.
    pub raw: RawToken,
    /// Deprecated scopes among the token's scopes.
    pub deprecated_scopes: Vec<String>,
}

/// Mints tokens. Shared by the handlers behind an `Arc`.
pub struct Minter {
    store: Store,
    writer: TokenWriter,
    keys: Arc<KeyManager>,
    templates: Arc<TemplateManager>,
    catalog: Arc<ScopeCatalog>,
    statuses: Arc<StatusAllocator>,
    policy: IssuancePolicy,
}

impl Minter {
    /// Mints under `policy` with scopes from `catalog`, signing with `keys`, reading templates
    /// from `templates` and memberships from `store`, giving each token a status list entry
    /// from `statuses`, and storing through `writer`.
    pub fn new(
        store: Store,
        writer: TokenWriter,
        keys: Arc<KeyManager>,
        templates: Arc<TemplateManager>,
        catalog: Arc<ScopeCatalog>,
        statuses: Arc<StatusAllocator>,
        policy: IssuancePolicy,
    ) -> Self {
        Self {
            store,
            writer,
            keys,
            templates,
            catalog,
            statuses,
            policy,
        }
    }

    /// The longest lifetime a token may be given, in seconds (for parsing requests).
    pub fn max_lifetime_secs(&self) -> i64 {
        self.policy.max_lifetime_secs
    }

    /// The scope catalog requests are parsed against.
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// Mints a token for `caller`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id))]
    pub async fn create(&self, caller: &Caller, request: MintRequest) -> Result<MintedToken> {
        let now = Timestamp::now();
        let template = match request.template {
            None => None,
            Some(id) => Some(self.templates.owned(caller, id).await?),
        };
        let label = match (request.label, &template) {
            (Some(label), _) => label,
            (None, Some(t)) => Label::parse(t.name.as_str())?,
            (None, None) => {
                return Err(Error::internal("a label is required without a template"));
            }
        };
        let default_lifetime = template
            .as_ref()
            .map(|t| t.default_duration_secs)
            .filter(|secs| *secs > 0)
            .unwrap_or(self.policy.default_lifetime_secs);
        let expiry = request
            .lifetime
            .expiry(now, default_lifetime, self.policy.max_lifetime_secs);
        let asked = Grant {
            scopes: request.scopes,
            admin: request.admin,
            expiry,
            ips: request.ips,
            limits: request.limits.unwrap_or_default(),
            limits_complete: false,
            enterprise: request.enterprise,
        };
        // Authority only flows downward (authority.rs): the template's bounds, then the
        // caller's, then the environment's rules on the result.
        let asked = match &template {
            Some(t) => authority::narrow(&templates::ceiling(t), asked)?,
            None => asked,
        };
        let Grant {
            scopes,
            admin,
            expiry,
            ips,
            limits,
            enterprise,
            ..
        } = authority::narrow(&caller.ceiling(), asked)?;
        if !ips.is_readable() {
            // Narrowing refuses an unreadable bound before this; should one ever slip through,
            // it would be signed as a readable subset (or `[]`) and stored as less than it was.
            return Err(Error::internal(
                "refusing to mint from an unreadable IP restriction",
            ));
        }
        let expires_at = expiry.at();
        if expires_at <= now {
            // A caller inside its clock leeway past expiry would mint an already-expired token.
            return Err(Error::denied(
                reason::EXCEEDS_CALLER,
                "the calling token has expired; nothing can be minted with it",
            )
            .with_meta("field", "expires_at"));
        }
        rules::require_scopes(&scopes, "scopes")?;
        rules::require_issuable(
            &self.store,
            self.policy.environment,
            &caller.user_id,
            &scopes,
            &ips,
            enterprise.as_ref(),
        )
        .await?;
        let id = TokenId::generate();
        tracing::Span::current().record("tokenmint.token_id", tracing::field::display(id));
        // Allocated before signing: the token carries its entry. An entry whose token never
        // commits stays unused and reads INVALID.
        let status = self.statuses.allocate().await?;
        let ring = self.keys.ring();
        let id_text = id.to_string();
        let claims = Claims {
            iss: Cow::Borrowed(&self.policy.jwt.issuer),
            aud: Audience::One(self.policy.jwt.audience.clone()),
            sub: Cow::Borrowed(caller.user_id.as_str()),
            client_id: Cow::Borrowed(&id_text),
            jti: Cow::Borrowed(&id_text),
            iat: now.as_secs(),
            nbf: now.as_secs(),
            exp: expires_at.as_secs(),
            scope: Cow::Owned(scopes.to_claim()),
            ent: enterprise.as_ref().map(|e| Cow::Owned(e.to_string())),
            adm: admin,
            tpl: template.as_ref().map(|t| Cow::Owned(t.id.to_string())),
            ips: (!ips.is_unrestricted()).then(|| ips.to_strings()),
            status: Some(StatusClaim {
                status_list: StatusListReference {
                    idx: u64::from(status.entry.index),
                    uri: Cow::Borrowed(&status.uri),
                },
            }),
        };
        let raw = {
            let _span = tracing::debug_span!("sign_token", kid = %ring.signing.kid).entered();
            claims::sign(&claims, &ring.signing)?
        };
        let record = TokenRecord {
            id,
            user_id: caller.user_id.clone(),
            label,
            description: request.description,
            scopes,
            enterprise_id: enterprise,
            ip_restrict: ips,
            limits,
            admin,
            template_id: template.as_ref().map(|t| t.id),
            template_version: template.as_ref().map_or(0, |t| t.version),
            status: StoredStatus::Active,
            checksum: raw.checksum(),
            key_id: KeyId::new(ring.signing.kid.clone()),
            created_by: caller.user_id.clone(),
            updated_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            expires_at,
            last_used_at: None,
            last_used_ip: None,
            deleted_at: None,
            parent_id: caller.token_id,
            status_entry: Some(status.entry),
            status_position: Some(status.position),
        };
        let record = self.writer.insert(record).await?;
        let deprecated_scopes = self.catalog.deprecated_in(&record.scopes);
        tracing::debug!(token_id = %id, key_id = %record.key_id, "token minted");
        Ok(MintedToken {
            record,
            raw,
            deprecated_scopes,
        })
    }
}
