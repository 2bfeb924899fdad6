//! VerifyToken: is this token valid for this use right now, and what is it? Answered from
//! memory (signature cache, deny list, metadata cache) for every token seen before.

use std::net::IpAddr;
use std::sync::Arc;

use crate::domain::{ScopeCatalog, StoredStatus, Timestamp, TokenRecord};
use crate::error::{Error, Result, reason};
use crate::issuance::caches::MetadataCache;
use crate::issuance::deny_list::DenyList;
use crate::issuance::last_used::LastUsed;
use crate::issuance::signature_check::SignatureCheck;
use crate::issuance::verifier::InactiveReason;
use crate::store::Store;

/// The outcome of VerifyToken.
#[derive(Debug)]
pub enum Verification {
    /// The token is valid for this use; its metadata.
    Active(Arc<TokenRecord>),
    /// It is not, and why.
    Inactive(InactiveReason),
}

/// Answers VerifyToken for tokens presented by other services.
pub struct Introspector {
    signatures: SignatureCheck,
    catalog: Arc<ScopeCatalog>,
    deny: Arc<DenyList>,
    store: Store,
    metadata: Arc<MetadataCache>,
    last_used: Arc<LastUsed>,
}

impl Introspector {
    /// Checks signatures with `signatures`, required scopes against `catalog`, statuses against
    /// `deny`, and reads metadata from `store` through `metadata`; records each use in
    /// `last_used`.
    pub fn new(
        signatures: SignatureCheck,
        catalog: Arc<ScopeCatalog>,
        deny: Arc<DenyList>,
        store: Store,
        metadata: Arc<MetadataCache>,
        last_used: Arc<LastUsed>,
    ) -> Self {
        Self {
            signatures,
            catalog,
            deny,
            store,
            metadata,
            last_used,
        }
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
        let token = match self.signatures.verified(raw).await {
            Ok(token) => token,
            Err(reason) => return Ok(Verification::Inactive(reason)),
        };
        tracing::Span::current().record("tokenmint.token_id", tracing::field::display(token.id));
        let now = Timestamp::now();
        if let Err(reason) = self.signatures.check_time(&token, now) {
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
                format!("{:?} is not an IP address", crate::error::truncate(raw, 64)),
            )
            .with_meta("ip", crate::error::truncate(raw, 64))
        })
}
