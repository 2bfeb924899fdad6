//! Offline verification: tokenmint's JWT policy applied with keys fetched from a [`JwksSource`],
//! kept fresh by a background task and refreshed on demand when a token names an unknown `kid`.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokenmint_jwt::{Compact, Policy};
use tokio::sync::{Mutex, oneshot};
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::claims::{Claims, unix_now};
use crate::error::VerifyError;
use crate::jwks::{Fetcher, JwksSource, KeySet, PublicKey, key_set};

/// tokenmint's default issuer and audience (`tokens.issuer`, `tokens.audience`).
const DEFAULT_ISSUER_AND_AUDIENCE: &str = "tokenmint";

/// Verifies tokenmint access tokens offline: signature, type, issuer, audience and lifetime,
/// with tokenmint's public keys and no call per token.
///
/// Cheap to clone (an `Arc` inside); clones share keys and the background refresh, which stops
/// when the last clone is dropped. Build one with [`Verifier::builder`].
///
/// Offline verification cannot see what tokenmint changed after minting: a revoked, suspended or
/// deleted token keeps verifying here until it expires. Use [`crate::OnlineVerifier`] where that
/// matters.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    fetcher: Fetcher,
    source: JwksSource,
    /// Issuer, audience and leeway: the same rules as the server's (`tokenmint-jwt`).
    policy: Policy,
    min_refresh_interval: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching: one fetch at a time, and the rate limit's memory.
    refresh: Mutex<RefreshState>,
    /// Dropped with the last `Verifier`, which ends the background refresh at once.
    _stop_background: oneshot::Sender<()>,
}

/// What the last key fetch did.
#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// Configures and builds a [`Verifier`]. Defaults: issuer and audience `tokenmint`, 5 s
/// leeway, background refresh every 300 s, at most one on-demand refresh per second.
#[derive(Debug, Clone)]
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
}

impl VerifierBuilder {
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
        let keys = key_set(fetcher.fetch().await?)?;
        tracing::debug!(source = %self.source, keys = keys.len(), "fetched the token signing keys");
        let (stop, stopped) = oneshot::channel();
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
            refresh: Mutex::new(RefreshState {
                last_attempt: Some(Instant::now()),
                last_error: None,
            }),
            _stop_background: stop,
        });
        if !self.refresh_interval.is_zero() {
            tokio::spawn(refresh_periodically(
                Arc::downgrade(&inner),
                self.refresh_interval,
                stopped,
            ));
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

impl Verifier {
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
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let compact = Compact::parse(token)?;
        let key = self.key_for(compact.kid()?).await?;
        let payload = compact.verify_with(key.as_ref())?;
        let claims = tokenmint_jwt::Claims::from_payload(&payload)?;
        let policy = &self.inner.policy;
        policy.check_claims(compact.header(), &claims)?;
        policy.check_time(claims.nbf, claims.exp, unix_now())?;
        Ok(claims.into())
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
    /// has. On failure the previous keys stay in use.
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
    /// The current key set.
    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current key named `kid`.
    fn key(&self, kid: &str) -> Option<Arc<PublicKey>> {
        self.keys().get(kid).cloned()
    }

    /// Fetches and installs the key set; the caller holds the refresh lock (`state`).
    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<usize, VerifyError> {
        state.last_attempt = Some(Instant::now());
        match self.fetcher.fetch().await.and_then(key_set) {
            Ok(keys) => {
                let count = keys.len();
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                state.last_error = None;
                tracing::debug!(source = %self.source, keys = count, "refreshed the token signing keys");
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
