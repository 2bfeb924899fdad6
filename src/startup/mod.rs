//! Builds tokenmint from [`Settings`]: store, keys, core ([`core`]), background tasks
//! ([`background`]) and the gRPC server (here); runs it until shutdown, then drains in-flight RPCs
//! and flushes pending writes.

mod background;
mod core;

use self::background::spawn_background;

pub use self::core::{Core, master_key, master_key_for, open_store, scope_catalog};

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
use crate::grpc::connection::Coalesced;
use crate::grpc::http::{MetricsSource, PoolReading};
use crate::grpc::load_shed::LoadShedLayer;
use crate::grpc::observe::ObserveLayer;
use crate::grpc::small_frames::SmallFramesLayer;
use crate::grpc::{self, TemplateApi, TokenApi, request_id::RequestIdLayer};
use crate::proto::v1::template_service_server::TemplateServiceServer;
use crate::proto::v1::token_service_server::TokenServiceServer;
use crate::telemetry::Metrics;
use crate::tls;

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
    let addr = settings.server.listen;
    settings.validate_server()?;
    let tls = settings
        .server
        .tls
        .as_ref()
        .map(tls::ReloadingConfig::load)
        .transpose()?;
    // Bound before the core is built: in test mode, status list URIs name the bound port.
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let core = Core::build(&settings, settings.status_list_base_uri(addr)).await?;
    let metrics_listener = match &settings.server.metrics_listen {
        Some(metrics_addr) => {
            Some(TcpListener::bind(*metrics_addr).await.with_context(|| {
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
    let load_shed = LoadShedLayer::new(settings.server.max_in_flight_requests.get());
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
        .timeout(Duration::from_secs(server.request_timeout_secs.get()))
        .concurrency_limit_per_connection(server.concurrency_limit_per_connection.get())
        .max_concurrent_streams(server.max_concurrent_streams.get())
        .http2_keepalive_interval(secs(server.http2_keepalive_interval_secs))
        .http2_keepalive_timeout(secs(server.http2_keepalive_timeout_secs))
        .layer(
            tower::ServiceBuilder::new()
                .layer(SmallFramesLayer)
                .layer(RequestIdLayer)
                .layer(ObserveLayer::new(metrics))
                .layer(load_shed),
        )
        .add_routes(routes);
    let drain = {
        let mut shutdown = shutdown.clone();
        let changes = core.tokens.changes.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            // Change streams never end on their own: tell their clients to resume elsewhere.
            changes.close();
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
    Ok(tonic::service::Routes::from(grpc::http::router(
        core.keys.clone(),
        core.tokens.status_lists.clone(),
        metrics_source,
    ))
    .add_service(TokenServiceServer::new(tokens).max_decoding_message_size(max_message_bytes))
    .add_service(TemplateServiceServer::new(templates).max_decoding_message_size(max_message_bytes))
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha))
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
