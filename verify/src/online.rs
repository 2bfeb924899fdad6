//! Online verification: ask tokenmint (`VerifyToken`) whether a token is active right now, and
//! remember the answer for a short time.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ring::digest;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig};

use crate::claims::{self, Claims, unix_now};
use crate::error::VerifyError;
use crate::proto::v1::token_service_client::TokenServiceClient;
use crate::proto::v1::{InactiveReason, VerifyTokenRequest};

/// Default number of remembered answers.
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// How long connecting to tokenmint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `VerifyToken` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Verifies tokens by asking tokenmint (`TokenService/VerifyToken`), so revocation, suspension
/// and deletion are seen within `ttl` — at the cost of one RPC per distinct token (and client
/// address) per `ttl`.
///
/// Answers, active or inactive, are cached by the SHA-256 of the token and client address (the
/// token itself is never kept) for `ttl`, and an active answer never beyond the token's `exp`.
/// Failed calls ([`VerifyError::Introspection`]) are not cached. The cache holds at most
/// `cache_capacity` answers: when full, expired answers are dropped first, then the oldest.
///
/// Needs a caller token with scope `token_introspect` (or `all`). Cheap to clone.
#[derive(Clone)]
pub struct OnlineVerifier {
    inner: Arc<OnlineInner>,
}

struct OnlineInner {
    client: TokenServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
    cache: Mutex<AnswerCache>,
}

/// Answers by cache key, bounded.
struct AnswerCache {
    ttl: Duration,
    capacity: usize,
    answers: HashMap<[u8; 32], CachedAnswer>,
}

/// A remembered answer.
struct CachedAnswer {
    answer: Result<Claims, VerifyError>,
    stored_at: Instant,
    valid_until: Instant,
}

/// Configures and connects an [`OnlineVerifier`]. Defaults: `ttl` 5 s, 10 000 cached answers.
#[must_use = "call .connect().await to get an OnlineVerifier"]
pub struct OnlineVerifierBuilder {
    endpoint: String,
    caller_token: String,
    ttl: Duration,
    capacity: usize,
    tls: Option<ClientTlsConfig>,
}

impl fmt::Debug for OnlineVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnlineVerifierBuilder")
            .field("endpoint", &self.endpoint)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl OnlineVerifierBuilder {
    /// How long an answer is reused; [`Duration::ZERO`] asks tokenmint every time.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most answers kept at once (at least 1).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// TLS for an `https://` endpoint: the CA of tokenmint's certificate (`ca_certificate`), and
    /// a client certificate (`identity`) when it requires mutual TLS.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects to tokenmint: `http://`, or `https://` with [`tls`](Self::tls).
    ///
    /// Fails with [`VerifyError::Introspection`] when the endpoint is invalid or unreachable, or
    /// the caller token is not a valid header value.
    pub async fn connect(self) -> Result<OnlineVerifier, VerifyError> {
        let fail = |what: String| VerifyError::Introspection(what);
        let mut authorization: MetadataValue<Ascii> = format!("Bearer {}", self.caller_token)
            .parse()
            .map_err(|_| fail("the caller token is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        let channel = crate::jwks::grpc_endpoint(&self.endpoint, self.tls.as_ref())
            .map_err(fail)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(|e| fail(format!("cannot connect to {}: {e}", self.endpoint)))?;
        Ok(OnlineVerifier {
            inner: Arc::new(OnlineInner {
                client: TokenServiceClient::new(channel),
                authorization,
                cache: Mutex::new(AnswerCache {
                    ttl: self.ttl,
                    capacity: self.capacity,
                    answers: HashMap::new(),
                }),
            }),
        })
    }
}

impl OnlineVerifier {
    /// Connects to the tokenmint at `endpoint` with `caller_token` (scope `token_introspect`),
    /// caching answers for `ttl` (e.g. 5 s).
    pub async fn connect(
        endpoint: impl Into<String>,
        caller_token: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, VerifyError> {
        Self::builder(endpoint, caller_token)
            .ttl(ttl)
            .connect()
            .await
    }

    /// A builder, for a cache capacity other than the default.
    pub fn builder(
        endpoint: impl Into<String>,
        caller_token: impl Into<String>,
    ) -> OnlineVerifierBuilder {
        OnlineVerifierBuilder {
            endpoint: endpoint.into(),
            caller_token: caller_token.into(),
            ttl: Duration::from_secs(5),
            capacity: DEFAULT_CACHE_CAPACITY,
            tls: None,
        }
    }

    /// Asks tokenmint whether `token`, presented from `client_ip`, is active, and returns its
    /// claims when it is. Inactive tokens give tokenmint's reason ([`VerifyError::Revoked`],
    /// [`VerifyError::Expired`], …). An IP-restricted token with `client_ip: None` is
    /// [`VerifyError::IpNotAllowed`].
    pub async fn verify(
        &self,
        token: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Claims, VerifyError> {
        let key = cache_key(token, client_ip);
        if let Some(answer) = self.inner.lock_cache().get(&key, Instant::now()) {
            return answer;
        }
        let mut request = tonic::Request::new(VerifyTokenRequest {
            token: token.to_owned(),
            client_ip: client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            required_scopes: Vec::new(),
        });
        request
            .metadata_mut()
            .insert("authorization", self.inner.authorization.clone());
        let response = self
            .inner
            .client
            .clone()
            .verify_token(request)
            .await
            .map_err(|status| {
                VerifyError::Introspection(format!("{:?}: {}", status.code(), status.message()))
            })?
            .into_inner();
        let answer = if response.active {
            // tokenmint has just verified this exact token's signature: its payload is authentic.
            claims::from_verified_token(token)
        } else {
            Err(inactive_reason(response.reason))
        };
        if !matches!(answer, Err(VerifyError::Introspection(_))) {
            self.inner
                .lock_cache()
                .insert(key, &answer, Instant::now(), unix_now());
        }
        answer
    }

    /// [`verify`](Self::verify), then checks the token grants every scope of
    /// `required_scopes` (`all` grants any).
    pub async fn verify_for(
        &self,
        token: &str,
        required_scopes: &[&str],
        client_ip: Option<IpAddr>,
    ) -> Result<Claims, VerifyError> {
        let claims = self.verify(token, client_ip).await?;
        claims.check_use(required_scopes, client_ip)?;
        Ok(claims)
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        self.inner.lock_cache().answers.clear();
    }
}

impl OnlineInner {
    fn lock_cache(&self) -> MutexGuard<'_, AnswerCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AnswerCache {
    /// The remembered answer for `key`, if still fresh at `now`.
    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Result<Claims, VerifyError>> {
        self.answers
            .get(key)
            .filter(|entry| entry.valid_until > now)
            .map(|entry| entry.answer.clone())
    }

    /// Remembers `answer` for the TTL (an active one no longer than the token's `exp`, judged
    /// against `unix_now` seconds), making room when full: expired answers go first, then the
    /// oldest one.
    fn insert(
        &mut self,
        key: [u8; 32],
        answer: &Result<Claims, VerifyError>,
        now: Instant,
        unix_now: i64,
    ) {
        let mut lifetime = self.ttl;
        if let Ok(claims) = answer {
            let left = u64::try_from(claims.exp.saturating_sub(unix_now)).unwrap_or(0);
            lifetime = lifetime.min(Duration::from_secs(left));
        }
        if lifetime.is_zero() {
            return;
        }
        if self.answers.len() >= self.capacity && !self.answers.contains_key(&key) {
            self.answers.retain(|_, entry| entry.valid_until > now);
            while self.answers.len() >= self.capacity {
                let oldest = self
                    .answers
                    .iter()
                    .min_by_key(|(_, entry)| entry.stored_at)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(oldest) => self.answers.remove(&oldest),
                    None => break,
                };
            }
        }
        self.answers.insert(
            key,
            CachedAnswer {
                answer: answer.clone(),
                stored_at: now,
                valid_until: now + lifetime,
            },
        );
    }
}

impl fmt::Debug for OnlineVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.inner.lock_cache();
        f.debug_struct("OnlineVerifier")
            .field("ttl", &cache.ttl)
            .field("capacity", &cache.capacity)
            .field("cached", &cache.answers.len())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of the token and the client address: the cache key (the token is never stored).
fn cache_key(token: &str, client_ip: Option<IpAddr>) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(token.as_bytes());
    context.update(&[0]);
    if let Some(ip) = client_ip {
        context.update(ip.to_string().as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// The error for an inactive `VerifyToken` answer.
fn inactive_reason(reason: i32) -> VerifyError {
    match InactiveReason::try_from(reason) {
        Ok(InactiveReason::Malformed) => VerifyError::Malformed,
        Ok(InactiveReason::BadSignature) => VerifyError::BadSignature,
        Ok(InactiveReason::UnknownKey) => VerifyError::UnknownKey,
        Ok(InactiveReason::Expired) => VerifyError::Expired,
        Ok(InactiveReason::NotYetValid) => VerifyError::NotYetValid,
        Ok(InactiveReason::Revoked) => VerifyError::Revoked,
        Ok(InactiveReason::Suspended) => VerifyError::Suspended,
        Ok(InactiveReason::UnknownToken) => VerifyError::UnknownToken,
        Ok(InactiveReason::IpNotAllowed) => VerifyError::IpNotAllowed,
        Ok(InactiveReason::InsufficientScope) => VerifyError::InsufficientScope,
        Ok(InactiveReason::InvalidClaims) => VerifyError::InvalidClaims,
        Ok(InactiveReason::Unspecified) | Err(_) => VerifyError::Introspection(format!(
            "tokenmint answered inactive with reason {reason}, which this crate does not know"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_depend_on_token_and_address() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(cache_key("a.b.c", None), cache_key("a.b.c", None));
        assert_ne!(cache_key("a.b.c", None), cache_key("a.b.d", None));
        assert_ne!(cache_key("a.b.c", None), cache_key("a.b.c", Some(ip)));
    }

    #[test]
    fn every_known_reason_maps_to_its_variant() {
        assert_eq!(
            inactive_reason(InactiveReason::Revoked as i32),
            VerifyError::Revoked
        );
        assert_eq!(
            inactive_reason(InactiveReason::InvalidClaims as i32),
            VerifyError::InvalidClaims
        );
        assert!(inactive_reason(0).is_unavailable());
        assert!(inactive_reason(99).is_unavailable());
    }

    fn cache(capacity: usize) -> AnswerCache {
        AnswerCache {
            ttl: Duration::from_secs(5),
            capacity,
            answers: HashMap::new(),
        }
    }

    fn claims(exp: i64) -> Claims {
        Claims {
            exp,
            ..Claims::of_alice()
        }
    }

    #[test]
    fn answers_expire_after_the_ttl_or_the_token() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        cache.insert([1; 32], &Err(VerifyError::Revoked), t0, 1000);
        cache.insert([2; 32], &Ok(claims(1002)), t0, 1000);
        cache.insert([3; 32], &Ok(claims(1000)), t0, 1000);
        assert_eq!(cache.get(&[1; 32], t0), Some(Err(VerifyError::Revoked)));
        assert!(cache.get(&[2; 32], t0 + Duration::from_secs(1)).is_some());
        assert!(cache.get(&[2; 32], t0 + Duration::from_secs(2)).is_none());
        assert!(cache.get(&[1; 32], t0 + Duration::from_secs(5)).is_none());
        assert!(
            cache.get(&[3; 32], t0).is_none(),
            "an expired token is not cached"
        );
    }

    #[test]
    fn a_full_cache_drops_expired_answers_then_the_oldest() {
        let mut cache = cache(2);
        let t0 = Instant::now();
        cache.insert([1; 32], &Err(VerifyError::Revoked), t0, 0);
        cache.insert(
            [2; 32],
            &Err(VerifyError::Revoked),
            t0 + Duration::from_secs(1),
            0,
        );
        cache.insert(
            [3; 32],
            &Err(VerifyError::Revoked),
            t0 + Duration::from_secs(2),
            0,
        );
        assert_eq!(cache.answers.len(), 2);
        assert!(!cache.answers.contains_key(&[1; 32]), "the oldest went");
        cache.insert(
            [4; 32],
            &Err(VerifyError::Revoked),
            t0 + Duration::from_secs(6),
            0,
        );
        assert_eq!(cache.answers.len(), 2);
        assert!(
            !cache.answers.contains_key(&[2; 32]),
            "the expired one went"
        );
        assert!(cache.answers.contains_key(&[3; 32]));
    }
}
