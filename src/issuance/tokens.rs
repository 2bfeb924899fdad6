//! The token core: minting, reading, listing, changing, lifecycle transitions, verification and
//! caller authentication. Handlers in `grpc/` call exactly one function here per RPC.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::Instrument;

use crate::config::Environment;
use crate::domain::{
    Description, EnterpriseId, IpRestriction, Label, ScopeCatalog, ScopeSet, StoredStatus,
    TemplateId, Timestamp, TokenId, TokenLimits, TokenRecord, TokenStatus, UserId,
};
use crate::error::{Error, ErrorCode, Result, Violations, reason};
use crate::issuance::authority::{self, Expiry, Grant};
use crate::issuance::caches::{MetadataCache, VerifiedCache, token_hash};
use crate::issuance::caller::Caller;
use crate::issuance::claims::{self, Audience, Claims, RawToken};
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::{KeyManager, KeyRing};
use crate::issuance::last_used::LastUsed;
use crate::issuance::lifecycle::{self, Action};
use crate::issuance::paging::{Page, Resume};
use crate::issuance::rules;
use crate::issuance::templates::{self, TemplateManager};
use crate::issuance::verifier::{InactiveReason, JwtPolicy, VerifiedToken};
use crate::store::tokens::StatusFilter;
use crate::store::{ChangeKind, DeniedToken, Store, TokenChange, TokenUpdate, TokenWriter};

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

/// Spending limits as they arrive in a request, before validation.
#[derive(Debug, Clone, Default)]
pub struct LimitsInput {
    /// (coin, tx_value_limit) pairs.
    pub spending: Vec<(String, String)>,
    /// The all-ERC-20 limit, when given.
    pub all_erc20: Option<String>,
}

/// A CreateToken request, before validation.
#[derive(Debug, Clone, Default)]
pub struct CreateTokenInput {
    /// Label.
    pub label: String,
    /// Description.
    pub description: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// Lifetime in seconds.
    pub duration_seconds: Option<i64>,
    /// Absolute expiry.
    pub expires_at: Option<Timestamp>,
    /// Addresses / CIDR blocks.
    pub ip_restrict: Vec<String>,
    /// Enterprise id (empty: none).
    pub enterprise_id: String,
    /// Spending limits, when given.
    pub limits: Option<LimitsInput>,
    /// Admin rights.
    pub admin: bool,
    /// Template id (empty: none).
    pub template_id: String,
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

/// One page of ListTokens.
#[derive(Debug)]
pub struct TokenPage {
    /// The tokens, newest first.
    pub tokens: Vec<TokenRecord>,
    /// Token for the next page; empty when this is the last.
    pub next_page_token: String,
    /// The next page's token should the page end early, after any of `tokens`.
    pub resume: Resume,
}

/// Which fields an UpdateToken changes.
#[derive(Debug, Clone)]
pub enum UpdateMask {
    /// No mask: non-empty fields change.
    NonEmpty,
    /// Exactly these paths change.
    Paths(Vec<String>),
}

impl UpdateMask {
    /// The validated change an UpdateToken asks for: which of `label` and `description` change
    /// (the named paths, or the non-empty fields without a mask), each parsed. Pure: the
    /// handler's whole validation before any storage access.
    pub fn resolve(&self, label: &str, description: &str) -> Result<TokenUpdate> {
        let (set_label, set_description) = match self {
            UpdateMask::NonEmpty => (!label.trim().is_empty(), !description.trim().is_empty()),
            UpdateMask::Paths(paths) => {
                let mut v = Violations::default();
                for (i, path) in paths.iter().enumerate() {
                    if path != "label" && path != "description" {
                        v.check::<()>(Err(Error::invalid(
                            format!("update_mask.paths[{i}]"),
                            reason::INVALID_UPDATE_MASK,
                            format!("{path:?} cannot be updated; allowed paths are \"label\" and \"description\""),
                        )
                        .with_meta("path", crate::domain::ids::truncate(path, 64))));
                    }
                }
                v.finish()?;
                (
                    paths.iter().any(|p| p == "label"),
                    paths.iter().any(|p| p == "description"),
                )
            }
        };
        if !set_label && !set_description {
            return Err(Error::invalid(
                "update_mask",
                reason::EMPTY_UPDATE,
                "nothing to update: give a label or description, or name them in update_mask",
            ));
        }
        let mut v = Violations::default();
        let update = TokenUpdate {
            label: if set_label {
                v.check(Label::parse(label))
            } else {
                None
            },
            description: if set_description {
                v.check(Description::parse(description))
            } else {
                None
            },
        };
        v.finish()?;
        Ok(update)
    }
}

/// The outcome of VerifyToken.
#[derive(Debug)]
pub enum Verification {
    /// The token is valid for this use; its metadata.
    Active(Arc<TokenRecord>),
    /// It is not, and why.
    Inactive(InactiveReason),
}

/// The token core. Shared by every handler; cheap to share behind an `Arc`.
pub struct TokenManager {
    store: Store,
    writer: TokenWriter,
    keys: Arc<KeyManager>,
    templates: Arc<TemplateManager>,
    catalog: Arc<ScopeCatalog>,
    policy: IssuancePolicy,
    deny: Arc<DenyList>,
    /// Verified subjects of VerifyToken.
    verified: VerifiedCache,
    /// Verified bearer tokens of callers (kept apart so that many subjects never evict them).
    callers: VerifiedCache,
    metadata: Arc<MetadataCache>,
    last_used: Arc<LastUsed>,
    /// Users with a cascading revoke running: one walk per user at a time.
    cascades: Arc<std::sync::Mutex<std::collections::HashSet<UserId>>>,
}

/// The parts a [`TokenManager`] is built from.
pub struct TokenManagerParts {
    /// Database.
    pub store: Store,
    /// Group-commit writer for new tokens and changes to existing ones.
    pub writer: TokenWriter,
    /// Signing keys.
    pub keys: Arc<KeyManager>,
    /// Templates (for minting from one).
    pub templates: Arc<TemplateManager>,
    /// Scope catalog.
    pub catalog: Arc<ScopeCatalog>,
    /// Rules.
    pub policy: IssuancePolicy,
    /// Denied tokens.
    pub deny: Arc<DenyList>,
    /// Verified-signature cache capacity.
    pub verified_cache_capacity: usize,
    /// Caller (bearer) cache capacity.
    pub caller_cache_capacity: usize,
    /// Metadata cache.
    pub metadata: Arc<MetadataCache>,
    /// Last-used recorder.
    pub last_used: Arc<LastUsed>,
}

impl TokenManager {
    /// Assembles the core.
    pub fn new(parts: TokenManagerParts) -> Self {
        Self {
            store: parts.store,
            writer: parts.writer,
            keys: parts.keys,
            templates: parts.templates,
            catalog: parts.catalog,
            policy: parts.policy,
            deny: parts.deny,
            verified: VerifiedCache::new(parts.verified_cache_capacity),
            callers: VerifiedCache::new(parts.caller_cache_capacity),
            metadata: parts.metadata,
            last_used: parts.last_used,
            cascades: Arc::default(),
        }
    }

    /// "Now" for judging expiry: the current time minus the clock leeway, so that a token reads
    /// EXPIRED exactly when it stops verifying (and can be revoked until then).
    pub fn expiry_clock(&self) -> Timestamp {
        Timestamp::now().plus_secs(-self.policy.jwt.leeway_secs)
    }

    /// The scope catalog.
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// The key manager (for JWKS).
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// Mints a token for `caller`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id))]
    pub async fn create(&self, caller: &Caller, input: CreateTokenInput) -> Result<MintedToken> {
        let now = Timestamp::now();
        let template = match input.template_id.as_str() {
            "" => None,
            raw => Some(
                self.templates
                    .owned(caller, TemplateId::parse(raw, "template_id")?)
                    .await?,
            ),
        };
        let mut v = Violations::default();
        let label = match &template {
            Some(t) if input.label.trim().is_empty() => v.check(Label::parse(t.name.as_str())),
            _ => v.check(Label::parse(&input.label)),
        };
        let description = v.check(Description::parse(&input.description));
        let scopes = v.check(self.catalog.parse_scopes(&input.scopes, "scopes"));
        let ips = v.check(IpRestriction::parse(&input.ip_restrict, "ip_restrict"));
        let enterprise = v.check(EnterpriseId::parse_optional(
            &input.enterprise_id,
            "enterprise_id",
        ));
        let limits = match &input.limits {
            Some(l) => v
                .check(TokenLimits::parse(
                    &l.spending,
                    l.all_erc20.as_deref(),
                    "token_limits",
                ))
                .map(Some),
            None => Some(None),
        };
        let default_lifetime = template
            .as_ref()
            .map(|t| t.default_duration_secs)
            .filter(|secs| *secs > 0)
            .unwrap_or(self.policy.default_lifetime_secs);
        let expires_at = v.check(self.expiry(
            input.duration_seconds,
            input.expires_at,
            now,
            default_lifetime,
        ));
        v.finish()?;
        let (
            Some(label),
            Some(description),
            Some(scopes),
            Some(ips),
            Some(enterprise),
            Some(limits),
            Some(expires_at),
        ) = (
            label,
            description,
            scopes,
            ips,
            enterprise,
            limits,
            expires_at,
        )
        else {
            return Err(Error::internal("validation passed without values"));
        };
        let asked = Grant {
            scopes,
            admin: input.admin,
            expiry: expires_at,
            ips,
            limits: limits.unwrap_or_default(),
            limits_complete: false,
            enterprise,
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
        self.require_issuable(caller, &scopes, &ips, enterprise.as_ref())
            .await?;
        let id = TokenId::generate();
        tracing::Span::current().record("tokenmint.token_id", tracing::field::display(id));
        let ring = self.keys.ring();
        let claims = Claims {
            iss: self.policy.jwt.issuer.clone(),
            aud: Audience::One(self.policy.jwt.audience.clone()),
            sub: caller.user_id.to_string(),
            client_id: id.to_string(),
            jti: id.to_string(),
            iat: now.as_secs(),
            nbf: now.as_secs(),
            exp: expires_at.as_secs(),
            scope: scopes.to_claim(),
            ent: enterprise.as_ref().map(ToString::to_string),
            adm: admin,
            tpl: template.as_ref().map(|t| t.id.to_string()),
            ips: (!ips.is_unrestricted()).then(|| ips.to_strings()),
        };
        let raw = {
            let _span = tracing::debug_span!("sign_token", kid = %ring.signing.kid).entered();
            claims::sign(&claims, &ring.signing)?
        };
        let record = TokenRecord {
            id,
            user_id: caller.user_id.clone(),
            label,
            description,
            scopes,
            enterprise_id: enterprise,
            ip_restrict: ips,
            limits,
            admin,
            template_id: template.as_ref().map(|t| t.id.to_string()),
            template_version: template.as_ref().map_or(0, |t| t.version),
            status: StoredStatus::Active,
            checksum: raw.checksum(),
            key_id: ring.signing.kid.clone(),
            created_by: caller.user_id.clone(),
            updated_by: caller.user_id.clone(),
            created_at: now,
            updated_at: now,
            expires_at,
            last_used_at: None,
            last_used_ip: None,
            deleted_at: None,
            parent_id: caller.token_id,
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

    /// The rules every new or re-enabled token meets besides its caller's bounds: the
    /// environment's (production: a restriction that is not a catch-all, no `all`) and
    /// membership of its enterprise.
    async fn require_issuable(
        &self,
        caller: &Caller,
        scopes: &ScopeSet,
        ips: &IpRestriction,
        enterprise: Option<&EnterpriseId>,
    ) -> Result<()> {
        rules::check_environment(
            self.policy.environment,
            scopes,
            ips,
            "scopes",
            "ip_restrict",
        )?;
        if let Some(enterprise) = enterprise {
            rules::require_member(&self.store, enterprise, &caller.user_id).await?;
        }
        Ok(())
    }

    /// The expiry from the two lifetime fields, defaulting and bounded by configuration (the
    /// caller's bound comes later, in [`authority::narrow`]).
    fn expiry(
        &self,
        duration: Option<i64>,
        expires_at: Option<Timestamp>,
        now: Timestamp,
        default_lifetime_secs: i64,
    ) -> Result<Expiry> {
        let max = self.policy.max_lifetime_secs;
        let too_long = |field: &str| {
            Error::invalid(
                field,
                reason::LIFETIME_TOO_LONG,
                format!("the lifetime may be at most {max} seconds"),
            )
            .with_meta("max_lifetime_seconds", max.to_string())
        };
        match (duration, expires_at) {
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
            (Some(secs), None) => Ok(Expiry::Asked {
                at: Timestamp::from_secs(now.plus_secs(secs).ceil_secs()),
                field: "duration_seconds",
            }),
            (None, Some(at)) if at <= now => Err(Error::invalid(
                "expires_at",
                reason::INVALID_LIFETIME,
                "expires_at must be in the future",
            )),
            (None, Some(at)) if at > now.plus_secs(max) => Err(too_long("expires_at")),
            (None, Some(at)) => Ok(Expiry::Asked {
                at: Timestamp::from_secs(at.as_secs()),
                field: "expires_at",
            }),
            (None, None) => Ok(Expiry::Default(Timestamp::from_secs(
                now.plus_secs(default_lifetime_secs.min(max)).ceil_secs(),
            ))),
        }
    }

    /// `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn get(&self, caller: &Caller, id: TokenId) -> Result<TokenRecord> {
        self.owned(caller, id).await
    }

    /// Loads `id` if it exists, is not deleted and belongs to `caller`; otherwise NOT_FOUND.
    async fn owned(&self, caller: &Caller, id: TokenId) -> Result<TokenRecord> {
        match self.store.find_token(id).await? {
            Some(record) if record.deleted_at.is_none() && record.user_id == caller.user_id => {
                Ok(record)
            }
            _ => Err(Error::token_not_found(id)),
        }
    }

    /// A page of `caller`'s tokens, newest first.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id))]
    pub async fn list(
        &self,
        caller: &Caller,
        page_size: i32,
        page_token: &str,
        status: Option<TokenStatus>,
        parent: Option<TokenId>,
    ) -> Result<TokenPage> {
        let filter = match status {
            None => StatusFilter::Any,
            Some(TokenStatus::Active) => StatusFilter::Active,
            Some(TokenStatus::Suspended) => StatusFilter::Suspended,
            Some(TokenStatus::Revoked) => StatusFilter::Revoked,
            Some(TokenStatus::Expired) => StatusFilter::Expired,
        };
        let parent_tag = parent.map(|p| p.to_string()).unwrap_or_default();
        let page = Page::parse(
            page_size,
            page_token,
            format!("tokens:{}:{parent_tag}", filter_tag(filter)),
        )?;
        let now = self.expiry_clock();
        let mut tokens = self
            .store
            .list_tokens(
                &caller.user_id,
                filter,
                parent,
                page.cursor.clone(),
                page.fetch_limit(),
                now,
            )
            .await?;
        let next_page_token = page.finish(&mut tokens, |t| (t.created_at, t.id.to_string()));
        Ok(TokenPage {
            tokens,
            next_page_token,
            resume: page.resume(),
        })
    }

    /// Changes label/description of `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn update(
        &self,
        caller: &Caller,
        id: TokenId,
        label: &str,
        description: &str,
        mask: UpdateMask,
    ) -> Result<TokenRecord> {
        let update = mask.resolve(label, description)?;
        let change = TokenChange {
            id,
            user: caller.user_id.clone(),
            at: Timestamp::now(),
            kind: ChangeKind::Text(update),
        };
        if self.commit_change(change, None).await?.is_none() {
            return Err(Error::token_not_found(id));
        }
        self.owned(caller, id).await
    }

    /// Applies a lifecycle action (activate, suspend or revoke) to `caller`'s token `id`.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id, action = action.as_str()))]
    pub async fn transition(
        &self,
        caller: &Caller,
        id: TokenId,
        action: Action,
    ) -> Result<TokenRecord> {
        // Compare-and-set on the stored status; a concurrent change makes us re-decide against
        // the new state (a few times at most) rather than fail with a stale reason.
        let mut attempts = 0;
        let (record, target) = loop {
            attempts += 1;
            let record = self.owned(caller, id).await?;
            let status = record.status_at(self.expiry_clock());
            let Some(target) = lifecycle::transition(status, action) else {
                return Err(invalid_transition(id, status, action));
            };
            if action == Action::Activate {
                // Re-enabling is minting again: the caller must be able to mint it today.
                authority::admits(&caller.ceiling(), &record)?;
                self.require_issuable(
                    caller,
                    &record.scopes,
                    &record.ip_restrict,
                    record.enterprise_id.as_ref(),
                )
                .await?;
            }
            let change = TokenChange {
                id,
                user: caller.user_id.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Status {
                    from: record.status,
                    to: target,
                },
            };
            let denied = DeniedToken {
                id,
                status: target,
                deleted: false,
                expires_at: record.expires_at,
            };
            if self.commit_change(change, Some(denied)).await?.is_some() {
                break (record, target);
            }
            if attempts >= 3 {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    reason::CONCURRENT_CHANGE,
                    "the token kept changing concurrently; retry",
                )
                .with_meta("token_id", id.to_string()));
            }
        };
        tracing::info!(token_id = %id, action = action.as_str(), from = record.status.as_str(), to = target.as_str(), "token status changed");
        self.owned(caller, id).await
    }

    /// Deletes `caller`'s token `id` (any state): it never verifies again.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn delete(&self, caller: &Caller, id: TokenId) -> Result<()> {
        let record = self.owned(caller, id).await?;
        let change = TokenChange {
            id,
            user: caller.user_id.clone(),
            at: Timestamp::now(),
            kind: ChangeKind::Delete,
        };
        let denied = DeniedToken {
            id,
            status: record.status,
            deleted: true,
            expires_at: record.expires_at,
        };
        if self.commit_change(change, Some(denied)).await?.is_none() {
            return Err(Error::token_not_found(id));
        }
        tracing::info!(token_id = %id, "token deleted");
        Ok(())
    }

    /// Revokes `caller`'s token `id` (unless it is already revoked or expired) and every token
    /// descending from it. Returns the token and how many descendants this call revoked.
    ///
    /// The tree is walked breadth-first in pages of [`CASCADE_PAGE`] children, each page's revokes
    /// applied concurrently; it runs as a task of its own, so a caller who gives up does not leave
    /// the tree half revoked, and one user runs one walk at a time (CASCADE_IN_PROGRESS). Children minted during the walk are found if their parent's page
    /// has not been read yet; a repeated cascade revokes any still valid.
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.user_id = %caller.user_id, tokenmint.token_id = %id))]
    pub async fn revoke_tree(&self, caller: &Caller, id: TokenId) -> Result<(TokenRecord, u64)> {
        let root = self.owned(caller, id).await?;
        let turn = CascadeTurn::take(&self.cascades, &caller.user_id)?;
        if matches!(
            root.status_at(self.expiry_clock()),
            TokenStatus::Active | TokenStatus::Suspended
        ) {
            match self.transition(caller, id, Action::Revoke).await {
                // Revoked (or expired) meanwhile: the walk goes on all the same.
                Err(e) if e.reason == reason::INVALID_TRANSITION => {}
                other => {
                    other?;
                }
            }
        }
        let walk = TreeRevoker {
            store: self.store.clone(),
            writer: self.writer.clone(),
            deny: self.deny.clone(),
            metadata: self.metadata.clone(),
            user: caller.user_id.clone(),
            now: self.expiry_clock(),
            _turn: turn,
        };
        let revoked = tokio::spawn(
            walk.revoke_descendants(id)
                .instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| Error::internal(format!("a cascading revoke failed: {e}")))??;
        tracing::info!(token_id = %id, descendants_revoked = revoked, "token tree revoked");
        Ok((self.owned(caller, id).await?, revoked))
    }

    /// Commits `change` and, if it applied, brings this server's memory in line: the deny list
    /// takes `denied` (the token's new state) at the change's log position, and the cached
    /// metadata is dropped. Returns that position, or `None` if the change did not apply.
    ///
    /// Runs as a task of its own, so that a caller who gives up (a cancelled RPC, an expired
    /// deadline) cannot leave a committed change unapplied here until the change feed's next
    /// poll: on SQLite the change is committed by the writer task whether or not anyone waits.
    async fn commit_change(
        &self,
        change: TokenChange,
        denied: Option<DeniedToken>,
    ) -> Result<Option<i64>> {
        commit_change(
            self.writer.clone(),
            self.deny.clone(),
            self.metadata.clone(),
            change,
            denied,
        )
        .await
    }

    /// [`Self::verified_by`] with the current key ring; when the token names a key this server
    /// does not know, once more after re-reading the keys (another server may have rotated one in
    /// that this server's change feed has not brought yet).
    async fn verified(
        &self,
        raw: &str,
        cache: &VerifiedCache,
    ) -> Result<Arc<VerifiedToken>, InactiveReason> {
        let ring = self.keys.ring();
        match self.verified_by(raw, cache, &ring) {
            Err(InactiveReason::UnknownKey) if self.keys.refresh_for_unknown_key(&ring).await => {
                self.verified_by(raw, cache, &self.keys.ring())
            }
            result => result,
        }
    }

    /// Checks signature and static claims against `ring`, through `cache` (the callers' or the
    /// subjects').
    fn verified_by(
        &self,
        raw: &str,
        cache: &VerifiedCache,
        ring: &KeyRing,
    ) -> Result<Arc<VerifiedToken>, InactiveReason> {
        let hash = token_hash(raw);
        if let Some(hit) = cache.get(&hash) {
            // A retired key takes its signatures with it, cached or not.
            return match ring.verifying_key(&hit.kid) {
                Some(_) => Ok(hit),
                None => Err(InactiveReason::UnknownKey),
            };
        }
        let token = {
            let _span = tracing::debug_span!("verify_signature").entered();
            Arc::new(self.policy.jwt.verify_signature(raw, ring)?)
        };
        cache.insert(hash, token.clone());
        Ok(token)
    }

    /// Introspects `raw` (VerifyToken). Status comes from memory; metadata from the cache (or one
    /// database read per token per cache lifetime).
    #[tracing::instrument(level = "debug", skip_all, fields(tokenmint.token_id))]
    pub async fn verify(
        &self,
        raw: &str,
        client_ip: &str,
        required_scopes: &[String],
    ) -> Result<Verification> {
        let client_ip = parse_client_ip(client_ip)?;
        let required = self
            .catalog
            .parse_scopes(required_scopes, "required_scopes")?;
        let token = match self.verified(raw, &self.verified).await {
            Ok(token) => token,
            Err(reason) => return Ok(Verification::Inactive(reason)),
        };
        tracing::Span::current().record("tokenmint.token_id", tracing::field::display(token.id));
        let now = Timestamp::now();
        if let Err(reason) = self.policy.jwt.check_time(&token, now) {
            return Ok(Verification::Inactive(reason));
        }
        if let Some(denial) = self.deny.check(&token.id) {
            return Ok(Verification::Inactive(denial.reason()));
        }
        if !token.allows_ip(client_ip) {
            return Ok(Verification::Inactive(InactiveReason::IpNotAllowed));
        }
        if !token.scopes.missing_from(&required).is_empty() {
            return Ok(Verification::Inactive(InactiveReason::InsufficientScope));
        }
        let load = || self.store.find_token(token.id);
        let Some(record) = self.metadata.get_or_load(token.id, load).await? else {
            return Ok(Verification::Inactive(InactiveReason::UnknownToken));
        };
        if record.deleted_at.is_some() {
            return Ok(Verification::Inactive(InactiveReason::UnknownToken));
        }
        match record.status {
            StoredStatus::Active => {}
            StoredStatus::Suspended => {
                return Ok(Verification::Inactive(InactiveReason::Suspended));
            }
            StoredStatus::Revoked => return Ok(Verification::Inactive(InactiveReason::Revoked)),
        }
        self.last_used.record(token.id, now, client_ip);
        Ok(Verification::Active(record))
    }

    /// Authenticates the bearer token of an RPC made from `peer`: signature (cached), time, the
    /// deny list, the token's IP restriction, then its stored metadata (cached; one database read
    /// per token per cache lifetime).
    pub async fn authenticate(&self, raw: &str, peer: Option<IpAddr>) -> Result<Caller> {
        let unauthenticated = |why: InactiveReason| {
            Error::new(
                ErrorCode::Unauthenticated,
                reason::INVALID_CREDENTIALS,
                format!(
                    "the bearer token is not valid ({})",
                    why.as_str().to_ascii_lowercase().replace('_', " ")
                ),
            )
            .with_meta("inactive_reason", why.as_str())
        };
        let token = self
            .verified(raw, &self.callers)
            .await
            .map_err(unauthenticated)?;
        let now = Timestamp::now();
        self.policy
            .jwt
            .check_time(&token, now)
            .map_err(unauthenticated)?;
        if let Some(denial) = self.deny.check(&token.id) {
            return Err(unauthenticated(denial.reason()));
        }
        if !token.allows_ip(peer) {
            return Err(Error::denied(
                reason::IP_NOT_ALLOWED,
                "the bearer token may not be used from this address",
            )
            .with_meta("peer_ip", peer.map(|p| p.to_string()).unwrap_or_default()));
        }
        // The stored row bounds what the caller mints (its limits are in no claim), and a token
        // whose row is gone (a restore, a failover to a lagging replica) stops authenticating
        // within the metadata cache's lifetime.
        let load = || self.store.find_token(token.id);
        let record = match self.metadata.get_or_load(token.id, load).await? {
            Some(record) if record.deleted_at.is_none() => record,
            _ => return Err(unauthenticated(InactiveReason::UnknownToken)),
        };
        self.last_used.record(token.id, now, peer);
        Ok(Caller {
            user_id: token.user_id.clone(),
            token_id: Some(token.id),
            scopes: token.scopes.clone(),
            admin: token.admin,
            token: Some(token),
            record: Some(record),
        })
    }
}

fn invalid_transition(id: TokenId, status: TokenStatus, action: Action) -> Error {
    Error::new(
        ErrorCode::FailedPrecondition,
        reason::INVALID_TRANSITION,
        format!(
            "cannot {} a token that is {}",
            action.as_str(),
            lifecycle::status_name(status)
        ),
    )
    .with_meta("token_id", id.to_string())
    .with_meta("status", lifecycle::status_name(status))
    .with_meta("action", action.as_str())
}

/// Parses VerifyToken's `client_ip`: empty means unknown.
pub fn parse_client_ip(raw: &str) -> Result<Option<IpAddr>> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.trim()
        .parse::<IpAddr>()
        .map(|ip| Some(crate::domain::ip::canonical(ip)))
        .map_err(|_| {
            Error::invalid(
                "client_ip",
                reason::INVALID_IP_ADDRESS,
                format!(
                    "{:?} is not an IP address",
                    crate::domain::ids::truncate(raw, 64)
                ),
            )
            .with_meta("ip", crate::domain::ids::truncate(raw, 64))
        })
}

fn filter_tag(filter: StatusFilter) -> &'static str {
    match filter {
        StatusFilter::Any => "any",
        StatusFilter::Active => "active",
        StatusFilter::Suspended => "suspended",
        StatusFilter::Revoked => "revoked",
        StatusFilter::Expired => "expired",
    }
}

/// [`TokenManager::commit_change`]'s body, for callers without a manager (the tree walk).
async fn commit_change(
    writer: TokenWriter,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    change: TokenChange,
    denied: Option<DeniedToken>,
) -> Result<Option<i64>> {
    let id = change.id;
    let task = tokio::spawn(
        async move {
            let seq = writer.change(change).await?;
            if let Some(seq) = seq {
                if let Some(denied) = &denied {
                    deny.apply(denied, seq);
                }
                metadata.invalidate(&id);
            }
            Ok(seq)
        }
        .instrument(tracing::Span::current()),
    );
    task.await
        .map_err(|e| Error::internal(format!("a token change task failed: {e}")))?
}

/// Children of a token are read and revoked this many at a time.
const CASCADE_PAGE: u64 = 500;

/// A cascading revoke's walk down a token tree (owned parts, so that it runs as its own task).
struct TreeRevoker {
    store: Store,
    writer: TokenWriter,
    deny: Arc<DenyList>,
    metadata: Arc<MetadataCache>,
    user: crate::domain::UserId,
    now: Timestamp,
    /// Held until the walk ends, even when the RPC that started it was cancelled.
    _turn: CascadeTurn,
}

/// A user's turn to run a cascading revoke: a cascade walks (and re-walks) a whole tree, so
/// one user gets one walk at a time instead of as many as they can send.
struct CascadeTurn {
    running: Arc<std::sync::Mutex<std::collections::HashSet<UserId>>>,
    user: UserId,
}

impl CascadeTurn {
    /// Takes `user`'s turn, or fails with UNAVAILABLE CASCADE_IN_PROGRESS while another runs.
    fn take(
        running: &Arc<std::sync::Mutex<std::collections::HashSet<UserId>>>,
        user: &UserId,
    ) -> Result<Self> {
        let mut set = running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.insert(user.clone()) {
            return Err(Error::new(
                ErrorCode::Unavailable,
                reason::CASCADE_IN_PROGRESS,
                "a cascading revoke of this user's tokens is still running; retry when it ends",
            ));
        }
        Ok(Self {
            running: running.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for CascadeTurn {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.user);
    }
}

impl TreeRevoker {
    /// Revokes every still-valid descendant of `root`, level by level; returns how many. A
    /// descendant that kept changing concurrently does not stop the walk: the others are revoked
    /// and the call then fails with CONCURRENT_CHANGE (a repeated cascade picks it up).
    async fn revoke_descendants(self, root: TokenId) -> Result<u64> {
        let mut revoked = 0;
        let mut contended = 0u64;
        let mut level = vec![root];
        let mut seen = std::collections::HashSet::from([root]);
        while !level.is_empty() {
            let mut next = Vec::new();
            for parents in level.chunks(CASCADE_PAGE as usize) {
                let mut after = None;
                loop {
                    let children = self
                        .store
                        .children_of(&self.user, parents, after, CASCADE_PAGE)
                        .await?;
                    let full = children.len() as u64 == CASCADE_PAGE;
                    after = children.last().map(|c| c.id);
                    let revokes = children
                        .iter()
                        .filter(|c| seen.insert(c.id))
                        .inspect(|c| next.push(c.id))
                        .filter(|c| {
                            c.deleted_at.is_none()
                                && matches!(
                                    c.status_at(self.now),
                                    TokenStatus::Active | TokenStatus::Suspended
                                )
                        })
                        .map(|c| self.revoke(c))
                        .collect::<Vec<_>>();
                    for applied in futures_util::future::join_all(revokes).await {
                        match applied {
                            Ok(applied) => revoked += u64::from(applied),
                            Err(e) if e.reason == reason::CONCURRENT_CHANGE => contended += 1,
                            Err(e) => return Err(e),
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            level = next;
        }
        if contended > 0 {
            return Err(Error::new(
                ErrorCode::Unavailable,
                reason::CONCURRENT_CHANGE,
                format!(
                    "{revoked} descendants were revoked, but {contended} kept changing concurrently; repeat the cascading revoke"
                ),
            )
            .with_meta("descendants_revoked", revoked.to_string())
            .with_meta("descendants_contended", contended.to_string()));
        }
        Ok(revoked)
    }

    /// Revokes one descendant; `false` if it was already stopped (revoked, deleted or expired)
    /// by the time its change was applied. A concurrent change makes it re-read the token and try
    /// again, a few times at most.
    async fn revoke(&self, child: &TokenRecord) -> Result<bool> {
        let mut current = child.clone();
        for _ in 0..3 {
            let change = TokenChange {
                id: current.id,
                user: self.user.clone(),
                at: Timestamp::now(),
                kind: ChangeKind::Status {
                    from: current.status,
                    to: StoredStatus::Revoked,
                },
            };
            let denied = DeniedToken {
                id: current.id,
                status: StoredStatus::Revoked,
                deleted: false,
                expires_at: current.expires_at,
            };
            let applied = commit_change(
                self.writer.clone(),
                self.deny.clone(),
                self.metadata.clone(),
                change,
                Some(denied),
            )
            .await?;
            if applied.is_some() {
                return Ok(true);
            }
            match self.store.find_token(current.id).await? {
                Some(now)
                    if now.deleted_at.is_none()
                        && matches!(
                            now.status_at(self.now),
                            TokenStatus::Active | TokenStatus::Suspended
                        ) =>
                {
                    current = now;
                }
                _ => return Ok(false),
            }
        }
        Err(Error::new(
            ErrorCode::Unavailable,
            reason::CONCURRENT_CHANGE,
            "a descendant kept changing concurrently; repeat the cascading revoke",
        )
        .with_meta("token_id", child.id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_runs_one_cascade_at_a_time() {
        let running = Arc::default();
        let alice = UserId::parse("alice").unwrap();
        let first = CascadeTurn::take(&running, &alice).unwrap();
        let again = CascadeTurn::take(&running, &alice).map(|_| ()).unwrap_err();
        assert_eq!(again.reason, reason::CASCADE_IN_PROGRESS);
        assert!(CascadeTurn::take(&running, &UserId::parse("bob").unwrap()).is_ok());
        drop(first);
        assert!(CascadeTurn::take(&running, &alice).is_ok());
    }
}
