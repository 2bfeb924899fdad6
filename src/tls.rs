//! TLS and mutual TLS for the server port (rustls with ring): the certificate, key and optional
//! client CA are read from PEM files and re-read when they change, so a renewed certificate is
//! served to new connections without a restart. A file that fails to load keeps the previous
//! configuration in service (and says so in the log).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;

use crate::config::TlsSettings;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; beyond that, accepting waits (a flood of idle connections
/// cannot pile up tasks).
const MAX_PENDING_HANDSHAKES: usize = 256;

/// Reads the files named by `settings` into a rustls server configuration (ALPN h2 and
/// http/1.1; client certificates required when `client_ca_file` is set).
pub fn load(settings: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    let certs = read_certs(&settings.cert_file, "server.tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).with_context(|| {
        format!(
            "server.tls.key_file {}: no readable PEM private key",
            settings.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path, "server.tls.client_ca_file")? {
                roots.add(cert).with_context(|| {
                    format!(
                        "server.tls.client_ca_file {}: not a usable CA certificate",
                        path.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("server.tls.client_ca_file: cannot build the client verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("server.tls: the certificate and private key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path, option: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{option} {}: unreadable PEM", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{option} {}: no certificate in the file",
        path.display()
    );
    Ok(certs)
}

/// The TLS configuration in service, replaced when the files change.
#[derive(Clone)]
pub struct ReloadingConfig {
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl ReloadingConfig {
    /// Loads the files once (failing start-up if they are unusable).
    pub fn load(settings: &TlsSettings) -> anyhow::Result<Self> {
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(load(settings)?))),
        })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, config: rustls::ServerConfig) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(config);
    }

    /// Checks the files every `settings.reload_interval_secs` and reloads after a change,
    /// until `stop` turns true.
    pub fn watch(&self, settings: TlsSettings, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let files: Vec<PathBuf> = [
                Some(settings.cert_file.clone()),
                Some(settings.key_file.clone()),
                settings.client_ca_file.clone(),
            ]
            .into_iter()
            .flatten()
            .collect();
            let stamp = || files.iter().map(|f| modified(f)).collect::<Vec<_>>();
            let mut seen = stamp();
            let mut interval =
                tokio::time::interval(Duration::from_secs(settings.reload_interval_secs));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let now = stamp();
                if now == seen {
                    continue;
                }
                match load(&settings) {
                    Ok(config) => {
                        this.replace(config);
                        seen = now;
                        tracing::info!("TLS certificate files reloaded");
                    }
                    // Probably caught mid-update: keep serving the old files and retry next tick.
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "TLS reload failed; keeping the previous certificate"
                        )
                    }
                }
            }
        })
    }
}

/// A file's modification time and length (what changes when a certificate is renewed).
fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Accepted connections after their TLS handshake. Handshakes run in their own tasks (at most
/// 256 at once, 10 s each), so a slow or hostile client does not hold up the accept loop; failed
/// handshakes are logged at debug.
pub fn incoming(
    mut tcp: TcpIncoming,
    config: ReloadingConfig,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                break;
            };
            let accepted = tokio::select! {
                accepted = tcp.next() => accepted,
                _ = stop.wait_for(|s| *s) => None,
                _ = sender.closed() => None,
            };
            let Some(accepted) = accepted else { break };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let sender = sender.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let peer = stream.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(?peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
