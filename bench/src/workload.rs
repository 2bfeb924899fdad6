//! The scenarios: what one request of each does, and the data it needs prepared beforehand.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokenmint::proto::v1::{self as pb, token_service_client::TokenServiceClient};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::BenchOptions;

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// `grpc.health.v1.Health/Check`: the gRPC floor of this server.
    Health,
    /// `VerifyToken` over a pool of pre-minted tokens.
    Verify,
    /// `CreateToken` with 5 scopes, 2 CIDRs and 2 spending limits.
    Create,
    /// 90% verify, 9% create, 1% revoke.
    Mixed,
}

impl Scenario {
    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Verify => "verify",
            Self::Create => "create",
            Self::Mixed => "mixed",
        }
    }
}

/// Which tokens the verify pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMix {
    /// Only valid tokens.
    Valid,
    /// 80% valid, 10% revoked, 5% expired, 5% tampered.
    Mixed,
}

/// The client address verify requests present (inside the tokens' `ip_restrict`).
const CLIENT_IP: &str = "10.1.2.3";

/// Scopes of the realistic create request.
pub const CREATE_SCOPES: [&str; 5] = [
    "wallet_view",
    "wallet_spend",
    "wallet_create",
    "trade_view",
    "trade_trade",
];

/// One connection's clients.
pub struct Client {
    tokens: TokenServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Client {
    /// Clients over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            tokens: TokenServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }
}

/// A prepared scenario.
pub struct Workload {
    /// The scenario.
    pub scenario: Scenario,
    mix: VerifyMix,
    bearer: MetadataValue<Ascii>,
    /// (token, expected `active`).
    pool: Vec<(String, bool)>,
    created: Mutex<Vec<String>>,
}

impl Workload {
    /// Prepares `scenario`: mints the verify pool when needed.
    pub async fn prepare(
        scenario: Scenario,
        options: &BenchOptions,
        channel: &Channel,
    ) -> anyhow::Result<Self> {
        let bearer: MetadataValue<Ascii> = format!("Bearer {}", options.token.trim())
            .parse()
            .context("the caller token is not valid metadata")?;
        let mut workload = Self {
            scenario,
            mix: options.verify_mix,
            bearer,
            pool: Vec::new(),
            created: Mutex::new(Vec::new()),
        };
        if matches!(scenario, Scenario::Verify | Scenario::Mixed) {
            if options.token.is_empty() {
                anyhow::bail!(
                    "the {} scenario needs --token (scopes user_manage, token_introspect)",
                    scenario.name()
                );
            }
            let mix = if scenario == Scenario::Mixed {
                VerifyMix::Valid
            } else {
                options.verify_mix
            };
            workload.pool = workload
                .mint_pool(channel, options.pool.max(1), mix)
                .await?;
        }
        if scenario == Scenario::Create && options.token.is_empty() {
            anyhow::bail!(
                "the create scenario needs --token (scopes user_manage and {})",
                CREATE_SCOPES.join(", ")
            );
        }
        Ok(workload)
    }

    /// Describes the verify pool.
    pub fn mix_label(&self) -> Option<&'static str> {
        match self.scenario {
            Scenario::Verify => Some(match self.mix {
                VerifyMix::Valid => "valid",
                VerifyMix::Mixed => "mixed",
            }),
            _ => None,
        }
    }

    fn authed<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// Issues one request; `Err` carries the gRPC code of a failure (or `Unknown` for a wrong answer).
    pub async fn call(&self, client: &mut Client, sequence: u64) -> Result<(), Code> {
        match self.scenario {
            Scenario::Health => self.health(client).await,
            Scenario::Verify => self.verify(client, sequence).await,
            Scenario::Create => self.create(client).await,
            Scenario::Mixed => match sequence % 100 {
                0 => self.revoke(client).await,
                1..=9 => self.create(client).await,
                _ => self.verify(client, sequence).await,
            },
        }
    }

    async fn health(&self, client: &mut Client) -> Result<(), Code> {
        let response = client
            .health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| s.code())?;
        if response.into_inner().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(Code::Unavailable)
        }
    }

    async fn verify(&self, client: &mut Client, sequence: u64) -> Result<(), Code> {
        let (token, expected) = &self.pool[(sequence as usize) % self.pool.len()];
        let request = pb::VerifyTokenRequest {
            token: token.clone(),
            client_ip: CLIENT_IP.into(),
            required_scopes: vec![],
        };
        let response = client
            .tokens
            .verify_token(self.authed(request))
            .await
            .map_err(|s| s.code())?;
        if response.into_inner().active == *expected {
            Ok(())
        } else {
            Err(Code::Unknown)
        }
    }

    async fn create(&self, client: &mut Client) -> Result<(), Code> {
        let response = client
            .tokens
            .create_token(self.authed(create_request()))
            .await
            .map_err(|s| s.code())?;
        if self.scenario == Scenario::Mixed
            && let Some(token) = response.into_inner().token
        {
            let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
            if created.len() < 100_000 {
                created.push(token.id);
            }
        }
        Ok(())
    }

    async fn revoke(&self, client: &mut Client) -> Result<(), Code> {
        let id = self.created.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match id {
            Some(id) => {
                client
                    .tokens
                    .revoke_token(self.authed(pb::RevokeTokenRequest { id, cascade: false }))
                    .await
                    .map_err(|s| s.code())?;
                Ok(())
            }
            None => self.create(client).await,
        }
    }

    /// Mints `size` tokens (64 at a time) and shapes them into the requested mix.
    async fn mint_pool(
        &self,
        channel: &Channel,
        size: usize,
        mix: VerifyMix,
    ) -> anyhow::Result<Vec<(String, bool)>> {
        eprintln!("minting a pool of {size} tokens…");
        let mut client = TokenServiceClient::new(channel.clone());
        let expiring = if mix == VerifyMix::Mixed {
            size / 20
        } else {
            0
        };
        let mut pool = Vec::with_capacity(size);
        for chunk_start in (0..size).step_by(64) {
            let chunk = (chunk_start..size.min(chunk_start + 64)).map(|i| {
                let mut client = client.clone();
                let mut request = create_request();
                if i < expiring {
                    request.duration_seconds = Some(1);
                }
                let request = self.authed(request);
                async move { client.create_token(request).await }
            });
            for result in futures_util::future::join_all(chunk).await {
                let created = result
                    .context("minting the verify pool failed")?
                    .into_inner();
                let id = created.token.map(|t| t.id).unwrap_or_default();
                pool.push((created.raw_token, id));
            }
        }
        let mut shaped = Vec::with_capacity(size);
        for (i, (raw, id)) in pool.into_iter().enumerate() {
            let bucket = if mix == VerifyMix::Valid {
                99
            } else {
                i * 20 / size.max(1)
            };
            match bucket {
                0 => shaped.push((raw, false)), // expiring (duration 1 s)
                1 => shaped.push((tamper(&raw), false)),
                2 | 3 => {
                    client
                        .revoke_token(self.authed(pb::RevokeTokenRequest { id, cascade: false }))
                        .await
                        .context("revoking")?;
                    shaped.push((raw, false));
                }
                _ => shaped.push((raw, true)),
            }
        }
        if expiring > 0 {
            // Wait until the short-lived tokens read as inactive (expiry plus the server's leeway).
            let deadline = Instant::now() + Duration::from_secs(30);
            for (probe, _) in &shaped[..expiring] {
                loop {
                    let request = pb::VerifyTokenRequest {
                        token: probe.clone(),
                        client_ip: CLIENT_IP.into(),
                        required_scopes: vec![],
                    };
                    let active = client
                        .verify_token(self.authed(request))
                        .await?
                        .into_inner()
                        .active;
                    if !active {
                        break;
                    }
                    anyhow::ensure!(
                        Instant::now() < deadline,
                        "short-lived tokens did not expire in 30 s"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Ok(shaped)
    }
}

/// The realistic CreateToken request: 5 scopes, 2 CIDRs, 2 spending limits.
pub fn create_request() -> pb::CreateTokenRequest {
    pb::CreateTokenRequest {
        label: "bench".into(),
        scopes: CREATE_SCOPES.iter().map(|s| s.to_string()).collect(),
        ip_restrict: vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()],
        token_limits: Some(pb::TokenLimits {
            spending_limits: vec![
                pb::SpendingLimit {
                    coin: "btc".into(),
                    tx_value_limit: "100000000".into(),
                },
                pb::SpendingLimit {
                    coin: "eth".into(),
                    tx_value_limit: "5000000000000000000".into(),
                },
            ],
            all_erc20_tokens_limit: None,
        }),
        duration_seconds: Some(3600),
        ..Default::default()
    }
}

/// Changes one character of the payload, keeping the signature: a tampered token.
fn tamper(raw: &str) -> String {
    let mut parts: Vec<String> = raw.split('.').map(str::to_owned).collect();
    if let Some(payload) = parts.get_mut(1) {
        let mut bytes = payload.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        *payload = String::from_utf8(bytes).unwrap_or_default();
    }
    parts.join(".")
}
