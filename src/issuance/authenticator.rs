//! Caller authentication: the bearer token of an RPC becomes a [`Caller`], or the call is
//! refused. Both gRPC services authenticate through one [`Authenticator`].

use std::net::IpAddr;
use std::sync::Arc;

use crate::domain::{StoredStatus, Timestamp};
use crate::error::{Error, ErrorCode, Result, reason};
use crate::issuance::caches::MetadataCache;
use crate::issuance::caller::Caller;
use crate::issuance::deny_list::DenyList;
use crate::issuance::last_used::LastUsed;
use crate::issuance::signature_check::SignatureCheck;
use crate::issuance::verifier::InactiveReason;
use crate::store::Store;

/// Checks the bearer tokens of RPC callers, from memory for tokens it has seen.
pub struct Authenticator {
    signatures: SignatureCheck,
    deny: Arc<DenyList>,
    store: Store,
    metadata: Arc<MetadataCache>,
    last_used: Arc<LastUsed>,
}

impl Authenticator {
    /// Checks signatures with `signatures`, statuses against `deny`, and reads the caller's row
    /// from `store` through `metadata`; records each use in `last_used`.
    pub fn new(
        signatures: SignatureCheck,
        deny: Arc<DenyList>,
        store: Store,
        metadata: Arc<MetadataCache>,
        last_used: Arc<LastUsed>,
    ) -> Self {
        Self {
            signatures,
            deny,
            store,
            metadata,
            last_used,
        }
    }

    /// Authenticates the bearer token of an RPC made from `peer`: signature (cached), time, the
    /// deny list, the token's IP restriction, then its stored metadata (cached; one database read
    /// per token per cache lifetime).
    pub async fn authenticate(&self, raw: &str, peer: Option<IpAddr>) -> Result<Caller> {
        let token = self
            .signatures
            .verified(raw)
            .await
            .map_err(unauthenticated)?;
        let now = Timestamp::now();
        self.signatures
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
        // The deny list is the fast answer; the row is the authority. A replica whose change
        // feed lags (or gave up on a gap) must not let a stopped token keep minting once its
        // row says so, as VerifyToken already refuses it.
        match record.status {
            StoredStatus::Active => {}
            StoredStatus::Suspended => return Err(unauthenticated(InactiveReason::Suspended)),
            StoredStatus::Revoked => return Err(unauthenticated(InactiveReason::Revoked)),
        }
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

/// UNAUTHENTICATED INVALID_CREDENTIALS, saying why the bearer token is not valid.
fn unauthenticated(why: InactiveReason) -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        reason::INVALID_CREDENTIALS,
        format!(
            "the bearer token is not valid ({})",
            why.as_str().to_ascii_lowercase().replace('_', " ")
        ),
    )
    .with_meta("inactive_reason", why.as_str())
}
