//! Offline verification: tokenmint's JWT policy applied with keys fetched from a [`JwksSource`],
//! kept fresh by a background task and refreshed on demand when a token names an unknown `kid`;
//! optionally with a view of revocations (the change stream plus the Token Status Lists, see
//! [`crate::revocation`]). Tokens that verified are cached by their full text, so a repeated
//! token costs a hash and a lookup instead of a signature check.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokenmint_jwt::status_list::{StatusList, StatusListClaims, is_status_list_typ};
use tokenmint_jwt::{Compact, Policy};
use tokio::sync::{Mutex, oneshot};
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::change_watch::{self, StreamSource};
use crate::claims::{Claims, unix_now};
use crate::error::VerifyError;
use crate::jwks::{Fetcher, JwksSource, KeySet, PublicKey, key_set};
use crate::proto::v1 as pb;
use crate::revocation::{
    CLOCK_SLACK_SECS, CachedList, RevocationHealth, RevocationView, Verdict, decide,
};

/// Verified tokens kept by default ([`VerifierBuilder::cache_capacity`]).
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// How long the builder waits for the change stream to catch up.
const STREAM_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection and call timeouts of the revocation endpoint (the stream itself has none).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after its stream caught up a new verifier can fetch lists it may use: a list must
/// be rendered more than [`CLOCK_SLACK_SECS`] after the second the stream started in, and a
/// server renders a list at most once per `status_list.render_cache_ms` (1 s by default).
const LISTS_USABLE_AFTER: Duration = Duration::from_secs(CLOCK_SLACK_SECS.unsigned_abs() + 2);

/// How many times a key-set change from a server that reports no key-set version is fetched
/// before giving up (waiting 50 ms, doubling, between tries: about 6 s in all); with versions,
/// the same tries and then one every [`KEY_CHANGE_MAX_WAIT`] until the version is reached.
const KEY_CHANGE_REFETCHES: u32 = 7;

/// The longest wait between fetches of an announced key-set version.
const KEY_CHANGE_MAX_WAIT: Duration = Duration::from_secs(5);

/// The most bytes a status list may inflate to (tokenmint's largest: 2^20 entries of 2 bits,
/// 256 KiB).
const MAX_LIST_BYTES: usize = 1 << 20;

/// A list's `ttl` when it has none, and the bounds put on one it has.
const DEFAULT_LIST_TTL: u64 = 60;
const MAX_LIST_TTL: u64 = 3_600;

/// How far ahead of this host's clock a list's `iat` may be: a list stamped later is refused
/// (a server whose clock runs ahead would otherwise pin its lists as the newest).
const MAX_LIST_CLOCK_AHEAD_SECS: i64 = 30;

/// Verified tokens, by their full text (so a hash collision can never hand one token another's
/// claims), with the key-set generation they were verified under.
type VerifiedCache = quick_cache::sync::Cache<Box<str>, (Arc<Claims>, u64)>;

/// tokenmint's default issuer and audience (`tokens.issuer`, `tokens.audience`).
const DEFAULT_ISSUER_AND_AUDIENCE: &str = "tokenmint";

/// Verifies tokenmint access tokens offline: signature, type, issuer, audience and lifetime,
/// with tokenmint's public keys and no call per token.
///
/// Cheap to clone (an `Arc` inside); clones share keys and the background refresh, which stops
/// when the last clone is dropped. Build one with [`Verifier::builder`].
///
/// Without [`VerifierBuilder::watch_revocations`], offline verification cannot see what
/// tokenmint changed after minting: a revoked, suspended or deleted token keeps verifying here
/// until it expires. With it, a revoke reaches the verifier within one stream round trip of its
/// commit (see the crate docs).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    fetcher: Fetcher,
    source: JwksSource,
    /// Issuer, audience and leeway: the same rules as the server's (`tokenmint-jwt`).
    policy: Policy,
    min_refresh_interval: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped after each key-set install: a cached verification from an older generation is
    /// not trusted (its key may have been withdrawn).
    key_generation: AtomicU64,
    /// The key-set version of the keys in use (`RefreshState::version`, readable without the
    /// refresh lock).
    key_version: AtomicU64,
    /// The highest key-set version a change stream announced (0 after a resync): the one
    /// [`follow_key_set`] task fetches until the keys in use reach it.
    wanted_version: AtomicU64,
    /// Held while fetching: one fetch at a time, and the rate limit's memory.
    refresh: Mutex<RefreshState>,
    /// Tokens that verified (none when the capacity is 0).
    verified: Option<VerifiedCache>,
    /// The view of revocations, when watched.
    revocations: Option<Revocations>,
    /// Dropped with the last `Verifier`, which ends the background refresh at once.
    _stop_background: oneshot::Sender<()>,
    /// Dropped with the last `Verifier`, which ends the change stream at once.
    _stop_stream: Option<oneshot::Sender<()>>,
}

/// Revocation watching: the view, and where status lists are fetched.
pub(crate) struct Revocations {
    pub(crate) view: RevocationView,
    source: StreamSource,
    /// One list fetch at a time (a burst of tokens of a new list fetches it once).
    fetching: Mutex<()>,
}

/// What the last key fetch did, and the version of the key set in use.
#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
    /// The key-set version of the keys in use (0: none reported).
    version: u64,
}

/// Whether a fetched key set replaces the one in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adoption {
    /// Install it, at its version.
    Take,
    /// Keep the set in use.
    Keep,
}

/// Decides whether a set of version `fetched` replaces the one of version `held` (0: no version
/// reported). A lower version is a replica that has not caught up, an equal one holds nothing
/// new, and so does one without a version once versions were seen (an older tokenmint during a
/// rolling upgrade, which may not have applied a withdrawal yet). Without versions on either
/// side, the newest fetch wins, as before versions existed.
fn adopt(held: u64, fetched: u64) -> Adoption {
    if held == 0 || fetched > held {
        Adoption::Take
    } else {
        Adoption::Keep
    }
}

/// Configures and builds a [`Verifier`]. Defaults: issuer and audience `tokenmint`, 5 s
/// leeway, background refresh every 300 s, at most one on-demand refresh per second.
#[derive(Clone)]
#[must_use = "call .build().await to get a Verifier"]
pub struct VerifierBuilder {
    source: JwksSource,
    issuer: String,
    audience: String,
    leeway: Duration,
    refresh_interval: Duration,
    min_refresh_interval: Duration,
    tls: Option<ClientTlsConfig>,
    jwks_ca: Option<Certificate>,
    cache_capacity: usize,
    watch: Option<(String, String)>,
}

impl fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("source", &self.source)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("refresh_interval", &self.refresh_interval)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .field("tls", &self.tls.is_some())
            .field("cache_capacity", &self.cache_capacity)
            // The caller token is a bearer credential: never printed.
            .field("watch", &self.watch.as_ref().map(|(endpoint, _)| endpoint))
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Watches revocations: follows tokenmint's change stream at `endpoint` (gRPC, `http://`
    /// or `https://` with [`tls`](Self::tls)) as `caller_token` (scope `token_introspect`), and
    /// reads each token's entry in its Token Status List (fetched from the same endpoint by the
    /// list id in the token's `status.status_list.uri`; the list's signature is checked with the
    /// same keys, its `typ`, its `sub` against that URI, `iss` and `exp`). Then a revoked,
    /// suspended or deleted token is refused within one stream round trip of the change.
    ///
    /// While the stream is down (reconnecting with backoff from its last cursor), changes are
    /// seen through the lists only, up to their `ttl` late; [`Verifier::revocation_health`]
    /// says which. `build` fails when the stream cannot be opened (an unreachable endpoint, a
    /// caller token without `token_introspect`), and otherwise returns about 3 s after the
    /// stream caught up: a list rendered before the stream started may miss a revoke the
    /// stream will never send, so only lists rendered later (by more than servers' clocks may
    /// disagree) are used, and until the server has rendered one, a token the stream has not
    /// mentioned gets [`VerifyError::RevocationSource`] ("not known yet").
    pub fn watch_revocations(
        mut self,
        endpoint: impl Into<String>,
        caller_token: impl Into<String>,
    ) -> Self {
        self.watch = Some((endpoint.into(), caller_token.into()));
        self
    }

    /// How many verified tokens are kept (by their full text, until they expire) so that a
    /// repeated token skips the signature check; the time and revocation checks run on every
    /// call. 0 turns the cache off. Default 10 000.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The CA certificates (PEM) an `https://` HTTP source's certificate must chain to (for
    /// tokenmint, the CA of its `server.tls.cert_file`). No public roots are built in, so an
    /// `https://` [`JwksSource::Http`] needs this; an `http://` one refuses it.
    pub fn jwks_ca(mut self, ca: Certificate) -> Self {
        self.jwks_ca = Some(ca);
        self
    }

    /// TLS for an `https://` gRPC source: the CA of tokenmint's certificate (`ca_certificate`),
    /// and a client certificate (`identity`) when it requires mutual TLS.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The required `iss` (tokenmint's `tokens.issuer`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The audience that must be in `aud` (tokenmint's `tokens.audience`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Clock leeway for `nbf` and `exp`, in whole seconds (fractions are dropped).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How often the key set is re-fetched in the background; [`Duration::ZERO`] turns the
    /// background refresh off (unknown `kid`s still trigger a refresh).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two refreshes triggered by unknown `kid`s, so that tokens with
    /// made-up `kid`s cannot make the verifier hammer tokenmint.
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// Fetches the keys and starts the background refresh. Must run inside a Tokio runtime.
    ///
    /// Fails with [`VerifyError::KeySource`] when the source is unusable or unreachable or has no
    /// usable key.
    pub async fn build(self) -> Result<Verifier, VerifyError> {
        let fetcher = Fetcher::new(&self.source, self.tls.as_ref(), self.jwks_ca.as_ref())?;
        let fetched = fetcher.fetch().await?;
        let version = fetched.version;
        let keys = key_set(fetched.keys)?;
        tracing::debug!(source = %self.source, keys = keys.len(), "fetched the token signing keys");
        let (stop, stopped) = oneshot::channel();
        let watch = match &self.watch {
            Some((endpoint, caller_token)) => {
                Some(stream_source(endpoint, caller_token, self.tls.as_ref()).await?)
            }
            None => None,
        };
        let (stop_stream, stream_stopped) = oneshot::channel();
        let inner = Arc::new(Inner {
            fetcher,
            source: self.source,
            policy: Policy {
                issuer: self.issuer,
                audience: self.audience,
                leeway_secs: i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX),
            },
            min_refresh_interval: self.min_refresh_interval,
            keys: RwLock::new(Arc::new(keys)),
            key_generation: AtomicU64::new(0),
            key_version: AtomicU64::new(version),
            wanted_version: AtomicU64::new(0),
            refresh: Mutex::new(RefreshState {
                last_attempt: Some(Instant::now()),
                last_error: None,
                version,
            }),
            verified: (self.cache_capacity > 0).then(|| VerifiedCache::new(self.cache_capacity)),
            revocations: watch.clone().map(|source| Revocations {
                view: RevocationView::default(),
                source,
                fetching: Mutex::new(()),
            }),
            _stop_background: stop,
            _stop_stream: watch.is_some().then_some(stop_stream),
        });
        if !self.refresh_interval.is_zero() {
            tokio::spawn(refresh_periodically(
                Arc::downgrade(&inner),
                self.refresh_interval,
                stopped,
            ));
        }
        if let Some(source) = watch {
            let (ready, is_ready) = oneshot::channel();
            tokio::spawn(change_watch::follow(
                Arc::downgrade(&inner),
                source,
                Some(ready),
                stream_stopped,
            ));
            match tokio::time::timeout(STREAM_READY_TIMEOUT, is_ready).await {
                Ok(Ok(Ok(()))) => tokio::time::sleep(LISTS_USABLE_AFTER).await,
                Ok(Ok(Err(error))) => return Err(error),
                Ok(Err(_)) | Err(_) => {
                    return Err(VerifyError::RevocationSource(
                        "the change stream did not catch up within 10 s".into(),
                    ));
                }
            }
        }
        Ok(Verifier { inner })
    }
}

/// Re-fetches the keys every `period` until the verifier is dropped (`stopped` resolves). Holds
/// only a `Weak` between refreshes, so it never keeps the verifier alive.
async fn refresh_periodically(
    inner: Weak<Inner>,
    period: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        if tokio::time::timeout(period, &mut stopped).await.is_ok() {
            break;
        }
        let Some(inner) = inner.upgrade() else {
            break;
        };
        let mut state = inner.refresh.lock().await;
        // Failures are logged by `refresh_locked`; the old keys stay in use.
        let _ = inner.refresh_locked(&mut state).await;
    }
    tracing::debug!("token key refresh stopped");
}

/// A change stream reported key-set `version` (announced with a key change, or as the stream
/// server's current version) above the version in use: unless a follow of this or a higher
/// version is under way, starts one. Called for every stream message, so it must be cheap.
pub(crate) fn want_key_set(inner: &Arc<Inner>, version: u64) {
    if version <= inner.key_set_version() {
        return;
    }
    if inner.wanted_version.fetch_max(version, Ordering::AcqRel) < version {
        tokio::spawn(follow_key_set(Arc::downgrade(inner), version));
    }
}

/// Fetches the key set until the keys in use reach `version`, backing off from 50 ms to
/// [`KEY_CHANGE_MAX_WAIT`], for as long as it takes: the key source may be a replica that has
/// not caught up yet, or one whose key reload keeps failing. Ends early when a follow of a
/// higher version takes over, after a resync (`wanted_version` is reset), when the source turns
/// out to report no versions (an older tokenmint: the periodic refresh goes on), or when the
/// verifier is dropped (holds only a `Weak` between fetches).
async fn follow_key_set(inner: Weak<Inner>, version: u64) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1u32.. {
        {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let mut state = inner.refresh.lock().await;
            if state.version >= version || inner.wanted_version.load(Ordering::Acquire) != version {
                return;
            }
            let fetched = inner.refresh_locked(&mut state).await.is_ok();
            if state.version >= version {
                return;
            }
            if fetched && state.version == 0 && attempt >= KEY_CHANGE_REFETCHES {
                tracing::warn!(
                    version,
                    "the key source reports no key-set version (an older tokenmint?): no longer \
                     following the announced key change; the periodic refresh will look again"
                );
                return;
            }
        }
        if attempt == KEY_CHANGE_REFETCHES {
            tracing::warn!(
                version,
                "tokenmint announced a key-set version its key source does not serve yet; \
                 fetching again every few seconds until it does"
            );
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(KEY_CHANGE_MAX_WAIT);
    }
}

impl Verifier {
    /// The verifier `inner` belongs to (for its background tasks).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// A builder for a verifier that reads keys from `source`.
    pub fn builder(source: JwksSource) -> VerifierBuilder {
        VerifierBuilder {
            source,
            issuer: DEFAULT_ISSUER_AND_AUDIENCE.into(),
            audience: DEFAULT_ISSUER_AND_AUDIENCE.into(),
            leeway: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(1),
            tls: None,
            jwks_ca: None,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            watch: None,
        }
    }

    /// Verifies `token` and returns its claims. Checks, in tokenmint's order (the steps of
    /// `tokenmint-jwt`, which the server runs too): form (three base64url parts, a JSON header),
    /// a known `kid` (an unknown one triggers one rate-limited key refresh), the header's `alg`
    /// equal to that key's algorithm, the signature, the claims, `typ`, `iss`, `aud`, then
    /// `nbf`/`exp` with leeway.
    ///
    /// Does not check the token's IP restriction or scopes: see
    /// [`verify_for`](Self::verify_for).
    ///
    /// With [`VerifierBuilder::watch_revocations`], then refuses a token the change stream
    /// reported suspended, revoked or deleted, or whose status list entry is not VALID.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let claims = self.verify_signed(token).await?;
        if let Some(revocations) = &self.inner.revocations {
            self.check_revocation(revocations, &claims).await?;
        }
        Ok(Claims::clone(&claims))
    }

    /// The signature, claims and time checks, from the cache of verified tokens when the same
    /// token verified before (then only the time is checked again).
    async fn verify_signed(&self, token: &str) -> Result<Arc<Claims>, VerifyError> {
        let policy = &self.inner.policy;
        // Read before the key lookup: a key set installed meanwhile makes this entry stale.
        let generation = self.inner.key_generation.load(Ordering::Acquire);
        if let Some((claims, verified_under)) = self
            .inner
            .verified
            .as_ref()
            .and_then(|cache| cache.get(token))
            && verified_under == generation
        {
            policy.check_time(claims.nbf, claims.exp, unix_now())?;
            return Ok(claims);
        }
        let compact = Compact::parse(token)?;
        let key = self.key_for(compact.kid()?).await?;
        let payload = compact.verify_with(key.as_ref())?;
        let claims = tokenmint_jwt::Claims::from_payload(&payload)?;
        policy.check_claims(compact.header(), &claims)?;
        policy.check_time(claims.nbf, claims.exp, unix_now())?;
        let claims = Arc::new(Claims::from(claims));
        if let Some(cache) = &self.inner.verified {
            cache.insert(token.into(), (claims.clone(), generation));
        }
        Ok(claims)
    }

    /// How the view of revocations is doing; `None` without
    /// [`VerifierBuilder::watch_revocations`].
    pub fn revocation_health(&self) -> Option<RevocationHealth> {
        self.inner.revocations.as_ref().map(|r| r.view.health())
    }

    /// Refuses `claims` if the view of revocations says so ([`crate::revocation::decide`]),
    /// fetching the token's status list when it has none usable.
    async fn check_revocation(
        &self,
        revocations: &Revocations,
        claims: &Claims,
    ) -> Result<(), VerifyError> {
        let view = &revocations.view;
        let reported = view.standing(&claims.jti);
        let uri = claims.status_list.as_ref().map(|entry| entry.uri.as_str());
        let now = unix_now();
        let held = uri
            .and_then(|uri| view.list(uri))
            .filter(|list| !list.expired(now));
        if let (Some(uri), Some(list)) = (uri, &held)
            && list.stale()
            && view.may_fetch(uri, self.inner.min_refresh_interval)
        {
            // Keep using the held list meanwhile (it is within its `exp`).
            let (verifier, uri) = (self.clone(), uri.to_owned());
            tokio::spawn(async move {
                // Attempts are rate-limited per list, and so is this log line.
                if let Err(error) = verifier.fetch_list(&uri).await {
                    tracing::warn!(
                        %uri,
                        %error,
                        "could not refresh a status list; the one held stays in use until its exp"
                    );
                }
            });
        }
        let stream = view.health.times();
        let verdict = decide(reported, claims, held.as_deref(), stream);
        let Some(uri) = uri else {
            return settle(verdict);
        };
        match verdict {
            Verdict::NeedList | Verdict::NotYetListed { .. } => {
                let fresh = self.newer_list(revocations, uri, held.as_ref()).await;
                match (verdict, fresh) {
                    (_, Ok(Some(list))) => settle(decide(reported, claims, Some(&list), stream)),
                    // The newest list cannot know the token yet (see `decide`).
                    (Verdict::NotYetListed { .. }, _) => settle(verdict),
                    (_, Err(error)) => Err(error),
                    (_, Ok(None)) => Err(VerifyError::RevocationSource(format!(
                        "the status list at {uri} was fetched less than {:?} ago and is not \
                         usable; not fetching it again yet",
                        self.inner.min_refresh_interval
                    ))),
                }
            }
            _ => settle(verdict),
        }
    }

    /// A list at `uri` rendered after `held` (if any): one another task just fetched, or a
    /// fresh fetch when the rate limit allows; `None` when neither.
    async fn newer_list(
        &self,
        revocations: &Revocations,
        uri: &str,
        held: Option<&Arc<CachedList>>,
    ) -> Result<Option<Arc<CachedList>>, VerifyError> {
        let _one_fetch = revocations.fetching.lock().await;
        let now = unix_now();
        let newer = |list: &Arc<CachedList>| {
            !list.expired(now) && held.is_none_or(|held| list.iat > held.iat)
        };
        if let Some(list) = revocations.view.list(uri).filter(newer) {
            return Ok(Some(list));
        }
        if !revocations
            .view
            .may_fetch(uri, self.inner.min_refresh_interval)
        {
            return Ok(None);
        }
        self.fetch_list_locked(revocations, uri).await.map(Some)
    }

    /// Fetches the list at `uri` (one fetch at a time).
    async fn fetch_list(&self, uri: &str) -> Result<Arc<CachedList>, VerifyError> {
        let Some(revocations) = &self.inner.revocations else {
            return Err(VerifyError::RevocationSource(
                "revocations are not watched".into(),
            ));
        };
        let _one_fetch = revocations.fetching.lock().await;
        self.fetch_list_locked(revocations, uri).await
    }

    /// Fetches the Status List Token of `uri` by its list id, checks it as a relying party must
    /// (signature with this verifier's keys, `typ`, `sub` = `uri`, `iss`, `exp`), decodes the
    /// list (bounded) and caches it.
    async fn fetch_list_locked(
        &self,
        revocations: &Revocations,
        uri: &str,
    ) -> Result<Arc<CachedList>, VerifyError> {
        let fail = |what: &str| VerifyError::RevocationSource(format!("status list {uri}: {what}"));
        let list_id = uri
            .rsplit_once('/')
            .map(|(_, id)| id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| fail("the URI names no list"))?;
        let mut request = Request::new(pb::GetStatusListRequest {
            list_id: list_id.to_owned(),
        });
        request.set_timeout(CALL_TIMEOUT);
        let response = revocations
            .source
            .client
            .clone()
            .get_status_list(request)
            .await
            .map_err(|status| fail(&format!("{:?}: {}", status.code(), status.message())))?
            .into_inner();
        let token = response.status_list_token;
        let compact = Compact::parse(&token).map_err(|_| fail("not a compact JWS"))?;
        let kid = compact.kid().map_err(|_| fail("no kid"))?;
        let key = self
            .key_for(kid)
            .await
            .map_err(|error| fail(&format!("its key: {error}")))?;
        let payload = compact
            .verify_with(key.as_ref())
            .map_err(|_| fail("the signature does not verify"))?;
        if !compact
            .header()
            .typ
            .as_deref()
            .is_some_and(is_status_list_typ)
        {
            return Err(fail("its typ is not statuslist+jwt"));
        }
        let claims: StatusListClaims<'_> =
            serde_json::from_slice(&payload).map_err(|_| fail("unreadable claims"))?;
        let exp = list_claims_problem(&claims, uri, &self.inner.policy.issuer, unix_now())
            .map_err(fail)?;
        let list = StatusList::decode(
            claims.status_list.bits,
            &claims.status_list.lst,
            MAX_LIST_BYTES,
        )
        .map_err(|error| fail(&format!("its list: {error}")))?;
        let ttl = claims
            .ttl
            .unwrap_or(DEFAULT_LIST_TTL)
            .clamp(1, MAX_LIST_TTL);
        Ok(revocations.view.install_list(
            uri,
            CachedList {
                list,
                iat: claims.iat,
                exp,
                ttl: Duration::from_secs(ttl),
                fetched_at: Instant::now(),
            },
        ))
    }

    /// Fetches the key set again and forgets verified tokens (the change stream's history was
    /// lost: a key-set change in it would not be announced again). After `history_rewound` (a
    /// database restored from a backup) the fetched set is taken whatever its version: the
    /// restored counter may stand below the one held.
    pub(crate) async fn reload_keys(&self, history_rewound: bool) {
        {
            let mut state = self.inner.refresh.lock().await;
            if history_rewound {
                state.version = 0;
                self.inner.key_version.store(0, Ordering::Release);
                // A follow started before the restore stops: its version may never come.
                self.inner.wanted_version.store(0, Ordering::Release);
            }
            let _ = self.inner.refresh_locked(&mut state).await;
        }
        if let Some(cache) = &self.inner.verified {
            cache.clear();
        }
    }

    /// The key set changed (the change stream said so) on a server that reports no key-set
    /// version: fetch it again, and forget verified tokens (a key may have been withdrawn). The
    /// key source may be another replica than the stream's, one that has not heard of the change
    /// yet: while it serves the `kid`s already held, it is fetched again, backing off, for a few
    /// seconds. Servers that report versions are followed by [`follow_key_set`] instead.
    pub(crate) async fn keys_changed_unversioned(&self) {
        let before = self.key_ids();
        let mut wait = Duration::from_millis(50);
        for _ in 0..KEY_CHANGE_REFETCHES {
            let fetched = self.refresh().await.is_ok();
            if let Some(cache) = &self.inner.verified {
                cache.clear();
            }
            if fetched && self.key_ids() != before {
                return;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        tracing::warn!(
            "tokenmint said its key set changed, but the key source still serves the same keys \
             after several tries; the next periodic refresh will look again"
        );
    }

    /// [`verify`](Self::verify), then checks the token may be used from `client_ip` and grants
    /// every scope of `required_scopes` (`all` grants any), in that order.
    ///
    /// Like tokenmint's VerifyToken, an IP-restricted token presented from an unknown address
    /// (`client_ip: None`) is refused with [`VerifyError::IpNotAllowed`].
    pub async fn verify_for(
        &self,
        token: &str,
        required_scopes: &[&str],
        client_ip: Option<IpAddr>,
    ) -> Result<Claims, VerifyError> {
        let claims = self.verify(token).await?;
        claims.check_use(required_scopes, client_ip)?;
        Ok(claims)
    }

    /// Re-fetches the key set now, regardless of the rate limit, and returns how many keys it
    /// has. On failure the previous keys stay in use, and so they do when the source serves an
    /// older key set than theirs (a lower key-set version: a replica still catching up).
    pub async fn refresh(&self) -> Result<usize, VerifyError> {
        let mut state = self.inner.refresh.lock().await;
        self.inner.refresh_locked(&mut state).await
    }

    /// The `kid`s of the current key set, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.inner.keys().keys().cloned().collect();
        kids.sort();
        kids
    }

    /// The key named `kid`, refreshing the key set once (rate-limited) when it is unknown.
    async fn key_for(&self, kid: &str) -> Result<Arc<PublicKey>, VerifyError> {
        if let Some(key) = self.inner.key(kid) {
            return Ok(key);
        }
        let mut state = self.inner.refresh.lock().await;
        // Another task may have refreshed while this one waited for the lock.
        if let Some(key) = self.inner.key(kid) {
            return Ok(key);
        }
        let recently = state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.inner.min_refresh_interval);
        if recently {
            return Err(match &state.last_error {
                Some(error) => VerifyError::KeySource(error.clone()),
                None => VerifyError::UnknownKey,
            });
        }
        tracing::debug!(kid, "unknown kid: refreshing the token signing keys");
        self.inner.refresh_locked(&mut state).await?;
        self.inner.key(kid).ok_or(VerifyError::UnknownKey)
    }
}

impl Inner {
    /// The key-set version of the keys in use (0 when the source reports none).
    pub(crate) fn key_set_version(&self) -> u64 {
        self.key_version.load(Ordering::Acquire)
    }

    /// The revocation view (only called where revocations are watched).
    pub(crate) fn revocations(&self) -> &Revocations {
        self.revocations.as_ref().expect("revocations are watched")
    }

    /// The current key set.
    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current key named `kid`.
    fn key(&self, kid: &str) -> Option<Arc<PublicKey>> {
        self.keys().get(kid).cloned()
    }

    /// Fetches and installs the key set; the caller holds the refresh lock (`state`). Verified
    /// tokens are forgotten (the generation moves) only when the set changed.
    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<usize, VerifyError> {
        state.last_attempt = Some(Instant::now());
        let fetched = self
            .fetcher
            .fetch()
            .await
            .and_then(|fetched| Ok((fetched.version, key_set(fetched.keys)?)));
        match fetched {
            Ok((version, keys)) => {
                let count = keys.len();
                state.last_error = None;
                let held = state.version;
                if adopt(held, version) == Adoption::Keep {
                    if version < held {
                        tracing::debug!(source = %self.source, held, fetched = version, "the key source served an older key set (a replica still catching up, or an older tokenmint): keeping the newer one");
                    }
                    return Ok(self.keys().len());
                }
                state.version = version;
                self.key_version.store(version, Ordering::Release);
                if !same_keys(&self.keys(), &keys) {
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                    self.key_generation.fetch_add(1, Ordering::Release);
                }
                tracing::debug!(source = %self.source, keys = count, version, "refreshed the token signing keys");
                Ok(count)
            }
            Err(error) => {
                tracing::warn!(source = %self.source, %error, "cannot refresh the token signing keys; keeping the old ones");
                state.last_error = Some(match &error {
                    VerifyError::KeySource(message) => message.clone(),
                    other => other.to_string(),
                });
                Err(error)
            }
        }
    }
}

/// Whether two key sets hold the same keys under the same `kid`s.
fn same_keys(a: &KeySet, b: &KeySet) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(kid, key)| b.get(kid).is_some_and(|other| key.same_as(other)))
}

/// The verdict as a result.
fn settle(verdict: Verdict) -> Result<(), VerifyError> {
    match verdict {
        Verdict::Refuse(why) => Err(why.into()),
        Verdict::Accept | Verdict::NotYetListed { covered: true } => Ok(()),
        Verdict::NotYetListed { covered: false } => Err(VerifyError::RevocationSource(
            "the token is newer than its status list, and the change stream is down or started \
             after the token was issued: its state is not known yet; retry shortly"
                .into(),
        )),
        Verdict::NeedList => Err(VerifyError::RevocationSource(
            "the token's status list is not available".into(),
        )),
    }
}

/// The client and credentials of the change stream at `endpoint`.
async fn stream_source(
    endpoint: &str,
    caller_token: &str,
    tls: Option<&ClientTlsConfig>,
) -> Result<StreamSource, VerifyError> {
    let fail = |what: String| VerifyError::RevocationSource(what);
    let mut authorization: MetadataValue<Ascii> = format!("Bearer {caller_token}")
        .parse()
        .map_err(|_| fail("the caller token is not a valid header value".into()))?;
    authorization.set_sensitive(true);
    let channel = crate::jwks::grpc_endpoint(endpoint, tls)
        .map_err(fail)?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| fail(format!("cannot connect to {endpoint}: {e}")))?;
    Ok(StreamSource {
        client: pb::token_service_client::TokenServiceClient::new(channel),
        authorization,
    })
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("source", &self.inner.source)
            .field("issuer", &self.inner.policy.issuer)
            .field("audience", &self.inner.policy.audience)
            .field("leeway_secs", &self.inner.policy.leeway_secs)
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// The list's `exp` if its claims are what a relying party may use for the token's `uri`, at
/// `now`: its `sub` is that URI, its `iss` this verifier's issuer, it has not expired, and it
/// was not issued in the future; else what is wrong.
fn list_claims_problem(
    claims: &StatusListClaims<'_>,
    uri: &str,
    issuer: &str,
    now: i64,
) -> Result<i64, &'static str> {
    if claims.sub != uri {
        return Err("its sub is not the token's status list URI");
    }
    if claims.iss.as_deref() != Some(issuer) {
        return Err("its issuer is not this verifier's");
    }
    let exp = claims.exp.ok_or("it has no exp")?;
    if now >= exp {
        return Err("it has expired");
    }
    // A list stamped in the future would pass for newer than every honest one (the view keeps
    // the newest, and a newer list outweighs the stream) for as long as its server's clock is
    // ahead: refuse it rather than let one skewed server pin old entries.
    if claims.iat > now.saturating_add(MAX_LIST_CLOCK_AHEAD_SECS) {
        return Err("it was issued in the future (its server's clock is ahead)");
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claims of a list for `uri` rendered at `iat`, by issuer `tokenmint`, usable 600 s.
    fn list_claims(uri: &str, iat: i64) -> StatusListClaims<'_> {
        StatusListClaims {
            iss: Some("tokenmint".into()),
            sub: uri.into(),
            iat,
            exp: Some(iat + 600),
            ttl: Some(60),
            status_list: tokenmint_jwt::status_list::EncodedStatusList {
                bits: 2,
                lst: "eNrbuRgAAhcBXQ".into(),
            },
        }
    }

    #[test]
    fn a_list_is_used_only_for_its_uri_issuer_and_time() {
        let uri = "https://t.example/statuslists/a";
        let now = 1_000_000;
        let check =
            |claims: &StatusListClaims<'_>| list_claims_problem(claims, uri, "tokenmint", now);
        assert_eq!(check(&list_claims(uri, now - 10)), Ok(now + 590));
        assert_eq!(
            check(&list_claims(uri, now + MAX_LIST_CLOCK_AHEAD_SECS)),
            Ok(now + MAX_LIST_CLOCK_AHEAD_SECS + 600),
            "a server clock a little ahead is tolerated"
        );
        assert!(
            check(&list_claims(uri, now + MAX_LIST_CLOCK_AHEAD_SECS + 1)).is_err(),
            "a list from the future would pin itself as the newest"
        );
        assert!(check(&list_claims("https://t.example/statuslists/b", now)).is_err());
        assert!(check(&list_claims(uri, now - 600)).is_err(), "expired");
        let mut foreign = list_claims(uri, now);
        foreign.iss = Some("someone-else".into());
        assert!(check(&foreign).is_err());
        let mut endless = list_claims(uri, now);
        endless.exp = None;
        assert!(check(&endless).is_err());
    }

    #[test]
    fn a_key_set_is_taken_only_at_a_higher_version() {
        assert_eq!(adopt(5, 6), Adoption::Take);
        assert_eq!(adopt(0, 6), Adoption::Take);
        assert_eq!(adopt(5, 5), Adoption::Keep, "nothing new");
        assert_eq!(adopt(5, 4), Adoption::Keep, "a replica still catching up");
    }

    #[test]
    fn a_set_without_a_version_is_taken_only_while_none_was_seen() {
        assert_eq!(adopt(0, 0), Adoption::Take, "as before versions existed");
        assert_eq!(
            adopt(5, 0),
            Adoption::Keep,
            "an older tokenmint may not have applied a withdrawal yet"
        );
    }
}
