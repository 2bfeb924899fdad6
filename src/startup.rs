//! Builds tokenmint from [`Settings`]: store, keys, core, background tasks and the gRPC server;
//! runs it until shutdown, then drains in-flight RPCs and flushes pending writes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;

use crate::config::Settings;
use crate::domain::Environment;
use crate::domain::{ScopeCatalog, Timestamp};
use crate::grpc::connection::Coalesced;
use crate::grpc::http::{MetricsSource, PoolReading};
use crate::grpc::load_shed::LoadShedLayer;
use crate::grpc::observe::ObserveLayer;
use crate::grpc::{self, TemplateApi, TokenApi, request_id::RequestIdLayer};
use crate::issuance::caches::MetadataCache;
use crate::issuance::change_feed::{ChangeFeed, FeedHealth};
use crate::issuance::changes::ChangeCommitter;
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::issuance::last_used::LastUsed;
use crate::issuance::minting::IssuancePolicy;
use crate::issuance::sealing::MasterKey;
use crate::issuance::signature_check::SignatureCheck;
use crate::issuance::templates::TemplateManager;
use crate::issuance::verifier::JwtPolicy;
use crate::issuance::{Authenticator, Introspector, Minter, TokenCore, TokenManager, jwt_crypto};
use crate::proto::v1::template_service_server::TemplateServiceServer;
use crate::proto::v1::token_service_server::TokenServiceServer;
use crate::store::{Store, StoreOptions, TokenWriter};
use crate::telemetry::Metrics;
use crate::tls;

/// Everything a running tokenmint holds, built from settings.
pub struct Core {
    /// Database.
    pub store: Store,
    /// The token core, one part per job.
    pub tokens: TokenCore,
    /// The template core.
    pub templates: Arc<TemplateManager>,
    /// Signing keys.
    pub keys: Arc<KeyManager>,
    /// Denied tokens.
    pub deny: Arc<DenyList>,
    /// Metadata cache.
    pub metadata: Arc<MetadataCache>,
    /// Pending last-used writes.
    pub last_used: Arc<LastUsed>,
    /// What the change feed could not do.
    pub feed_health: Arc<FeedHealth>,
    writer_task: JoinHandle<()>,
}

/// Opens (and migrates) the configured store.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    if settings.database.url.is_none() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                settings.data_dir.display()
            )
        })?;
    }
    let options = StoreOptions {
        max_connections: settings.database.max_connections,
        connect_timeout: Duration::from_secs(settings.database.connect_timeout_secs),
    };
    let store = Store::connect(&settings.database_url(), &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// Loads the master key: configured value, configured file, or (test only) `data_dir/master.key`.
pub fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    if let Some(hex) = &settings.keys.master_key {
        return MasterKey::from_hex(hex.expose()).context("keys.master_key is unreadable");
    }
    if let Some(path) = &settings.keys.master_key_file {
        return MasterKey::read_file(path);
    }
    anyhow::ensure!(
        settings.environment == Environment::Test,
        "production requires a configured master key (keys.master_key or keys.master_key_file)"
    );
    MasterKey::load_or_create(&settings.data_dir.join("master.key"))
}

/// [`master_key`] for a process about to use the signing keys of `store`. Refuses, instead of
/// creating a new `data_dir/master.key`, when no master key is configured, there is none in the
/// data directory, and the store already has signing keys: they were sealed under a master key
/// this process was not given (a command run against a production database without its
/// configuration), and a key made here could be unsealed by no server.
pub async fn master_key_for(settings: &Settings, store: &Store) -> anyhow::Result<MasterKey> {
    let configured = settings.keys.master_key.is_some() || settings.keys.master_key_file.is_some();
    let local = settings.data_dir.join("master.key");
    if !configured && !local.exists() {
        let keys = store.list_keys().await?;
        anyhow::ensure!(
            keys.is_empty(),
            "no master key is configured and there is none at {}, but this database already has \
             {} signing key(s), sealed under the servers' master key: run this with the servers' \
             configuration (keys.master_key_file, e.g. \
             TOKENMINT__KEYS__MASTER_KEY_FILE=/path/to/master.key, or keys.master_key)",
            local.display(),
            keys.len()
        );
    }
    master_key(settings)
}

/// The scope catalog: the configured file, or the built-in one.
pub fn scope_catalog(settings: &Settings) -> anyhow::Result<ScopeCatalog> {
    match &settings.tokens.scope_catalog_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scope catalog {}", path.display()))?;
            ScopeCatalog::from_toml(&text)
                .with_context(|| format!("invalid scope catalog {}", path.display()))
        }
        None => Ok(ScopeCatalog::builtin()),
    }
}

impl Core {
    /// Builds the core: validates settings, opens the store, loads keys and the deny list.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        jwt_crypto::install();
        let catalog = Arc::new(scope_catalog(settings)?);
        let store = open_store(settings).await?;
        let master = master_key_for(settings, &store).await?;
        let retention = settings.tokens.max_lifetime_secs + settings.tokens.leeway_secs;
        let keys = Arc::new(
            KeyManager::load(store.clone(), master, settings.keys.algorithm, retention).await?,
        );
        let deny = Arc::new(DenyList::default());
        // Keep tokens that expired within the leeway: they still pass the time check.
        let horizon = Timestamp::now().plus_secs(-settings.tokens.leeway_secs);
        deny.replace_all(&store.denied_tokens(horizon).await?);
        let metadata = Arc::new(MetadataCache::new(
            settings.cache.metadata_capacity,
            Duration::from_secs(settings.cache.metadata_ttl_secs),
        ));
        let last_used = Arc::new(LastUsed::default());
        let (writer, writer_task) = TokenWriter::spawn(store.clone());
        let policy = IssuancePolicy {
            environment: settings.environment,
            default_lifetime_secs: settings.tokens.default_lifetime_secs,
            max_lifetime_secs: settings.tokens.max_lifetime_secs,
            jwt: JwtPolicy {
                issuer: settings.tokens.issuer.clone(),
                audience: settings.tokens.audience.clone(),
                leeway_secs: settings.tokens.leeway_secs,
            },
        };
        let templates = Arc::new(TemplateManager::new(
            store.clone(),
            catalog.clone(),
            settings.environment,
            settings.tokens.max_lifetime_secs,
        ));
        let tokens = TokenCore {
            authenticator: Arc::new(Authenticator::new(
                SignatureCheck::new(
                    keys.clone(),
                    policy.jwt.clone(),
                    settings.cache.caller_capacity,
                ),
                deny.clone(),
                store.clone(),
                metadata.clone(),
                last_used.clone(),
            )),
            introspector: Arc::new(Introspector::new(
                SignatureCheck::new(
                    keys.clone(),
                    policy.jwt.clone(),
                    settings.cache.verified_capacity,
                ),
                catalog.clone(),
                deny.clone(),
                store.clone(),
                metadata.clone(),
                last_used.clone(),
            )),
            manager: Arc::new(TokenManager::new(
                store.clone(),
                ChangeCommitter::new(writer.clone(), deny.clone(), metadata.clone()),
                settings.environment,
                settings.tokens.leeway_secs,
            )),
            minter: Arc::new(Minter::new(
                store.clone(),
                writer,
                keys.clone(),
                templates.clone(),
                catalog.clone(),
                policy,
            )),
            keys: keys.clone(),
            catalog,
        };
        Ok(Self {
            store,
            tokens,
            templates,
            keys,
            deny,
            metadata,
            last_used,
            feed_health: Arc::new(FeedHealth::default()),
            writer_task,
        })
    }

    /// Flushes pending writes and closes the store.
    pub async fn shutdown(self) {
        if let Err(error) = self.last_used.flush(&self.store).await {
            tracing::warn!(%error, "could not flush last-used times at shutdown");
        }
        let Self {
            store,
            tokens,
            writer_task,
            ..
        } = self;
        drop(tokens);
        let _ = writer_task.await;
        store.close().await;
    }
}

/// A server started by [`start`].
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound address of the metrics listener, when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, drains in-flight RPCs, flushes pending writes and waits for the end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task panicked")?
    }

    /// Waits until the server ends (after a shutdown signal).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    /// A handle that triggers shutdown.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Builds everything and starts serving on `settings.server.listen` (port 0 picks a free port).
/// Fails fast on unusable settings, TLS files or database.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    let addr = settings.listen_addr()?;
    settings.validate_server()?;
    let tls = settings
        .server
        .tls
        .as_ref()
        .map(tls::ReloadingConfig::load)
        .transpose()?;
    let core = Core::build(&settings).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match &settings.server.metrics_listen {
        Some(metrics_addr) => {
            Some(TcpListener::bind(metrics_addr).await.with_context(|| {
                format!("server.metrics_listen: cannot listen on {metrics_addr}")
            })?)
        }
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let transport = match &settings.server.tls {
        None => "plaintext",
        Some(t) if t.client_ca_file.is_some() => "mutual TLS",
        Some(_) => "TLS",
    };
    let (shutdown, signal) = watch::channel(false);
    let listeners = Listeners {
        grpc: listener,
        metrics: metrics_listener,
    };
    let task = tokio::spawn(serve(settings, core, listeners, tls, signal));
    tracing::info!(%addr, transport, ?metrics_addr, "tokenmint listening");
    Ok(RunningServer {
        addr,
        metrics_addr,
        shutdown,
        task,
    })
}

/// The sockets a server answers on.
struct Listeners {
    /// gRPC, JWKS and metrics.
    grpc: TcpListener,
    /// Metrics alone, plaintext (`server.metrics_listen`).
    metrics: Option<TcpListener>,
}

/// Serves gRPC (TokenService, TemplateService, health, reflection v1 and v1alpha) and the HTTP
/// routes (JWKS, metrics) until `shutdown` turns true; in-flight RPCs then get
/// `server.shutdown_grace_secs`.
async fn serve(
    settings: Settings,
    core: Core,
    listeners: Listeners,
    tls: Option<tls::ReloadingConfig>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = listeners.grpc;
    let (stop_background, mut background) = spawn_background(&settings, &core);
    let metrics = Arc::new(Metrics::new());
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TokenServiceServer<TokenApi>>()
        .await;
    health_reporter
        .set_serving::<TemplateServiceServer<TemplateApi>>()
        .await;
    let load_shed = LoadShedLayer::new(settings.server.max_in_flight_requests);
    let metrics_source = MetricsSource {
        metrics: metrics.clone(),
        keys: core.keys.clone(),
        pool: {
            let store = core.store.clone();
            Arc::new(move || {
                let usage = store.pool_usage();
                PoolReading {
                    in_use: usage.in_use,
                    idle: usage.idle,
                    max: usage.max,
                }
            })
        },
        last_used: core.last_used.clone(),
        in_flight: load_shed.in_flight(),
        feed: core.feed_health.clone(),
    };
    if let Some(listener) = listeners.metrics {
        background.push(serve_metrics(
            listener,
            metrics_source.clone(),
            shutdown.clone(),
        ));
    }
    let routes = routes(&core, &metrics, metrics_source, &settings)?.add_service(health_service);
    let grace = Duration::from_secs(settings.server.shutdown_grace_secs);
    let server = &settings.server;
    let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    let router = tonic::transport::Server::builder()
        .accept_http1(true)
        .timeout(Duration::from_secs(server.request_timeout_secs))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection)
        .max_concurrent_streams(server.max_concurrent_streams)
        .http2_keepalive_interval(secs(server.http2_keepalive_interval_secs))
        .http2_keepalive_timeout(secs(server.http2_keepalive_timeout_secs))
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestIdLayer)
                .layer(ObserveLayer::new(metrics))
                .layer(load_shed),
        )
        .add_routes(routes);
    let drain = {
        let mut shutdown = shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            health_reporter
                .set_not_serving::<TokenServiceServer<TokenApi>>()
                .await;
            health_reporter
                .set_not_serving::<TemplateServiceServer<TemplateApi>>()
                .await;
            tracing::info!("shutting down: draining in-flight requests");
        }
    };
    // Small gRPC frames must not wait for Nagle's algorithm (a 40 ms stall against delayed ACKs).
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(secs(server.tcp_keepalive_secs));
    if let (Some(config), Some(files)) = (&tls, &settings.server.tls) {
        background.push(config.watch(files.clone(), shutdown.clone()));
    }
    let handshakes = settings
        .server
        .tls
        .as_ref()
        .map(tls::HandshakeLimits::from)
        .unwrap_or_default();
    let served = async {
        match tls {
            Some(config) => {
                let incoming = tls::incoming(incoming, config, handshakes, shutdown.clone())
                    .map(|accepted| accepted.map(Coalesced::new));
                router.serve_with_incoming_shutdown(incoming, drain).await
            }
            None => {
                let incoming = incoming.map(|accepted| accepted.map(Coalesced::new));
                router.serve_with_incoming_shutdown(incoming, drain).await
            }
        }
    };
    let mut deadline = shutdown.clone();
    let result = tokio::select! {
        result = served => result.context("gRPC server failed"),
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
            Ok(())
        }
    };
    let _ = stop_background.send(true);
    for task in background {
        let _ = task.await;
    }
    core.shutdown().await;
    tracing::info!("tokenmint stopped");
    result
}

/// Every route but health: the HTTP routes (JWKS, metrics, unknown-method fallback), TokenService
/// and TemplateService (requests above `server.max_message_bytes` refused), and reflection
/// v1/v1alpha.
fn routes(
    core: &Core,
    metrics: &Arc<Metrics>,
    metrics_source: MetricsSource,
    settings: &Settings,
) -> anyhow::Result<tonic::service::Routes> {
    let max_message_bytes = settings.server.max_message_bytes;
    let reflection_v1 = reflection_builder().build_v1().context("reflection v1")?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("reflection v1alpha")?;
    let tokens = TokenApi::new(
        core.tokens.clone(),
        metrics.clone(),
        settings.cache.metadata_capacity,
        settings.requests.into(),
    );
    let templates = TemplateApi::new(
        core.tokens.authenticator.clone(),
        core.templates.clone(),
        settings.requests.into(),
    );
    Ok(
        tonic::service::Routes::from(grpc::http::router(core.keys.clone(), metrics_source))
            .add_service(
                TokenServiceServer::new(tokens).max_decoding_message_size(max_message_bytes),
            )
            .add_service(
                TemplateServiceServer::new(templates).max_decoding_message_size(max_message_bytes),
            )
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha),
    )
}

/// Serves `GET /metrics` alone on `listener` (plaintext) until `shutdown` turns true.
fn serve_metrics(
    listener: TcpListener,
    source: MetricsSource,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let router = grpc::http::metrics_router(source);
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "the metrics listener failed");
        }
    })
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Starts the change-feed poller, the last-used flusher and the housekeeping task.
fn spawn_background(
    settings: &Settings,
    core: &Core,
) -> (watch::Sender<bool>, Vec<JoinHandle<()>>) {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut feed = ChangeFeed::new(
        core.store.clone(),
        core.deny.clone(),
        core.metadata.clone(),
        core.keys.clone(),
        core.feed_health.clone(),
        settings.tokens.leeway_secs,
    );
    let period = Duration::from_millis(settings.background.change_poll_interval_ms);
    let mut stop_feed = stopped.clone();
    tasks.push(tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(error) = feed.poll().await {
                        tracing::warn!(%error, "change feed poll failed");
                    }
                }
                _ = stopped_signal(&mut stop_feed) => break,
            }
        }
    }));

    let (store, last_used) = (core.store.clone(), core.last_used.clone());
    let period = Duration::from_millis(settings.background.last_used_flush_interval_ms);
    tasks.push(every(period, stopped.clone(), move || {
        let (store, last_used) = (store.clone(), last_used.clone());
        async move {
            if let Err(error) = last_used.flush(&store).await {
                tracing::warn!(%error, "last-used flush failed; will retry");
            }
        }
    }));

    let (store, deny) = (core.store.clone(), core.deny.clone());
    let retention = settings.tokens.max_lifetime_secs + settings.tokens.leeway_secs;
    let leeway = settings.tokens.leeway_secs;
    tasks.push(every(Duration::from_secs(60), stopped, move || {
        let (store, deny) = (store.clone(), deny.clone());
        async move { housekeeping(&store, &deny, retention, leeway).await }
    }));
    (stop, tasks)
}

/// Forgets what can no longer matter: deny-list entries and tombstones of expired tokens, old
/// change-log entries, and retired keys past the longest token lifetime.
async fn housekeeping(store: &Store, deny: &DenyList, key_retention_secs: i64, leeway_secs: i64) {
    let now = Timestamp::now();
    deny.prune(now.plus_secs(-leeway_secs), now.plus_secs(-60));
    let results = [
        ("change log", store.prune_events(now.plus_secs(-3600)).await),
        (
            "tombstones",
            store
                .purge_expired_tombstones(now.plus_secs(-leeway_secs))
                .await,
        ),
        (
            "retired keys",
            store
                .delete_keys_retired_before(now.plus_secs(-key_retention_secs))
                .await,
        ),
    ];
    for (what, result) in results {
        match result {
            Ok(0) => {}
            Ok(n) => tracing::debug!(what, removed = n, "housekeeping"),
            Err(error) => tracing::warn!(what, %error, "housekeeping failed"),
        }
    }
}

/// Runs `tick` every `period` until `stop` turns true.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => tick().await,
                _ = stopped_signal(&mut stop) => break,
            }
        }
    })
}

/// Resolves once `stop` is true (or its sender is gone), without holding a guard across awaits.
async fn stopped_signal(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}
