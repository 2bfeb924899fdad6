//! How long a revoke made on one replica takes to reach the others: the `tokenmint-propagation`
//! binary. For each of `revokes` tokens it mints the token on the origin, waits until every
//! replica verifies it as active (so each has it cached, the case that matters), revokes it on
//! the origin, and from the moment the origin answers OK asks every replica VerifyToken every
//! `probe_interval` until it says REVOKED. The delay recorded is from that OK to the first
//! REVOKED answer received, so it includes one VerifyToken round trip and up to one probe interval
//! (an overestimate of the true delay, never an underestimate).
//!
//! With `--offline`, each replica is watched instead by a tokenmint-verify offline `Verifier`
//! (`watch_revocations` on that replica: its change stream and status lists) in this process,
//! asked every `probe_interval` without any RPC: the delay is then from the origin's OK to the
//! moment the offline verifier refuses the token.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use tokenmint::proto::v1 as pb;
use tokenmint_verify::{JwksSource, Verifier, VerifyError};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

type Client = pb::token_service_client::TokenServiceClient<Channel>;

/// What to measure: the arguments of `tokenmint-propagation`.
#[derive(Debug, Clone, clap::Args)]
pub struct PropagationOptions {
    /// The server that mints and revokes.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub origin: String,
    /// The servers that must report each revoke (comma-separated or repeated).
    #[arg(long = "replica", value_delimiter = ',', required = true)]
    pub replicas: Vec<String>,
    /// Revokes to measure.
    #[arg(long, default_value_t = 200)]
    pub revokes: usize,
    /// How often each replica is asked while a revoke has not reached it.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub probe_interval: Duration,
    /// Give up on a revoke that has not reached a replica after this long (counted as a miss).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Measure offline verifiers (tokenmint-verify with `watch_revocations`, one per replica)
    /// instead of VerifyToken on the replicas.
    #[arg(long)]
    pub offline: bool,
    /// Caller token with the scopes user_manage, token_introspect and wallet_view.
    #[arg(
        long,
        env = "TOKENMINT_BENCH_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub token: String,
}

/// The delays measured, in microseconds, over every (revoke, replica) pair.
#[derive(Debug)]
pub struct PropagationReport {
    /// Revokes made.
    pub revokes: usize,
    /// Replicas asked.
    pub replicas: usize,
    /// Delays of the pairs that arrived, in microseconds.
    pub delays: Histogram<u64>,
    /// Pairs that had not arrived after the timeout.
    pub misses: u64,
}

impl fmt::Display for PropagationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.delays.is_empty() {
            return write!(
                f,
                "propagation: {} revokes x {} replicas: none arrived within the timeout",
                self.revokes, self.replicas
            );
        }
        let ms = |quantile: f64| self.delays.value_at_quantile(quantile) as f64 / 1000.0;
        write!(
            f,
            "propagation: {} revokes x {} replicas: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, \
             misses {}",
            self.revokes,
            self.replicas,
            ms(0.5),
            ms(0.99),
            self.delays.max() as f64 / 1000.0,
            self.misses
        )
    }
}

/// Runs the measurement.
pub async fn measure(options: &PropagationOptions) -> anyhow::Result<PropagationReport> {
    anyhow::ensure!(
        !options.token.is_empty(),
        "a caller token is needed (--token or TOKENMINT_BENCH_TOKEN)"
    );
    let bearer: MetadataValue<_> = format!("Bearer {}", options.token)
        .parse()
        .context("the token is not valid header text")?;
    let caller = Caller { bearer };
    let origin = Client::new(crate::connect(&options.origin, 1).await?.remove(0));
    let mut replicas = Vec::with_capacity(options.replicas.len());
    for addr in &options.replicas {
        replicas.push(if options.offline {
            let verifier = Verifier::builder(JwksSource::grpc(addr.clone()))
                .watch_revocations(addr.clone(), options.token.clone())
                .build()
                .await
                .with_context(|| format!("an offline verifier watching {addr}"))?;
            Replica::Offline(verifier)
        } else {
            Replica::Server(Client::new(crate::connect(addr, 1).await?.remove(0)))
        });
    }
    let mut delays = Histogram::<u64>::new(3).context("histogram")?;
    let mut misses = 0;
    for round in 0..options.revokes {
        let minted = caller.mint(&origin).await?;
        for replica in &replicas {
            let active = caller
                .wait_for(replica, &minted.raw_token, (None, None), options)
                .await?;
            anyhow::ensure!(active.is_some(), "a replica never saw token {round} active");
        }
        caller.revoke(&origin, &minted).await?;
        let acknowledged = Instant::now();
        let revoked = Some(pb::InactiveReason::Revoked);
        let revoked_offline = Some(VerifyError::Revoked);
        let arrivals = join_all(replicas.iter().map(|replica| {
            caller.wait_for(
                replica,
                &minted.raw_token,
                (revoked, revoked_offline.clone()),
                options,
            )
        }))
        .await;
        for arrival in arrivals {
            match arrival? {
                Some(at) => {
                    let micros = at.saturating_duration_since(acknowledged).as_micros();
                    delays.record(u64::try_from(micros).unwrap_or(u64::MAX))?;
                }
                None => misses += 1,
            }
        }
        if (round + 1) % 50 == 0 {
            eprintln!("{} revokes measured", round + 1);
        }
    }
    Ok(PropagationReport {
        revokes: options.revokes,
        replicas: replicas.len(),
        delays,
        misses,
    })
}

/// Where a revoke must arrive.
enum Replica {
    /// A server, asked VerifyToken.
    Server(Client),
    /// An offline verifier watching a server's changes, asked locally.
    Offline(Verifier),
}

/// The caller's credentials on every request.
struct Caller {
    bearer: MetadataValue<tonic::metadata::Ascii>,
}

impl Caller {
    fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    async fn mint(&self, origin: &Client) -> anyhow::Result<pb::CreateTokenResponse> {
        let request = pb::CreateTokenRequest {
            label: "propagation".into(),
            scopes: vec!["wallet_view".into()],
            duration_seconds: Some(600),
            ..Default::default()
        };
        let response = origin.clone().create_token(self.authed(request)).await;
        Ok(response.context("CreateToken on the origin")?.into_inner())
    }

    async fn revoke(
        &self,
        origin: &Client,
        minted: &pb::CreateTokenResponse,
    ) -> anyhow::Result<()> {
        let id = minted.token.as_ref().context("token metadata")?.id.clone();
        let request = pb::RevokeTokenRequest { id, cascade: false };
        origin
            .clone()
            .revoke_token(self.authed(request))
            .await
            .context("RevokeToken on the origin")?;
        Ok(())
    }

    /// Asks `replica` about `token` every probe interval until it is active (`reason` None) or
    /// inactive for `reason` (as a server and as an offline verifier say it); when it first
    /// answered so, or `None` after the timeout.
    async fn wait_for(
        &self,
        replica: &Replica,
        token: &str,
        reason: (Option<pb::InactiveReason>, Option<VerifyError>),
        options: &PropagationOptions,
    ) -> anyhow::Result<Option<Instant>> {
        let started = Instant::now();
        loop {
            let arrived = match replica {
                Replica::Server(client) => {
                    let request = pb::VerifyTokenRequest {
                        token: token.to_owned(),
                        ..Default::default()
                    };
                    let response = client.clone().verify_token(self.authed(request)).await;
                    let response = response.context("VerifyToken on a replica")?.into_inner();
                    match reason.0 {
                        None => response.active,
                        Some(reason) => response.reason == reason as i32,
                    }
                }
                Replica::Offline(verifier) => {
                    let answer = verifier.verify(token).await;
                    match (&reason.1, answer) {
                        (None, answer) => answer.is_ok(),
                        (Some(expected), Err(error)) => error == *expected,
                        (Some(_), Ok(_)) => false,
                    }
                }
            };
            if arrived {
                return Ok(Some(Instant::now()));
            }
            if started.elapsed() > options.timeout {
                return Ok(None);
            }
            tokio::time::sleep(options.probe_interval).await;
        }
    }
}
