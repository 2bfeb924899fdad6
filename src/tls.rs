//! TLS and mutual TLS for the server port (rustls with ring): the certificate, key and optional
//! client CA are read from PEM files and re-read when they change, so a renewed certificate is
//! served to new connections without a restart. A file that fails to load keeps the previous
//! configuration in service (and says so in the log).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
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

/// How long handshakes may take, and how many one peer address may have in progress.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Time to complete a handshake; then the connection is closed.
    pub timeout: Duration,
    /// Handshakes in progress at once per peer IP address (0: no bound).
    pub per_peer: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            per_peer: 64,
        }
    }
}

impl From<&TlsSettings> for HandshakeLimits {
    fn from(settings: &TlsSettings) -> Self {
        Self {
            timeout: Duration::from_secs(settings.handshake_timeout_secs.get()),
            per_peer: settings.max_handshakes_per_peer,
        }
    }
}

/// The address a peer's handshakes are counted under: an IPv4 address (IPv4-mapped IPv6
/// included), or an IPv6 /64 network, the smallest block a single host is usually given (one
/// host could otherwise draw on 2^64 addresses).
fn peer_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !u128::from(u64::MAX),
            )),
        },
    }
}

/// Handshakes in progress, per peer address group ([`peer_group`]).
#[derive(Debug, Default)]
struct PendingHandshakes {
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

impl PendingHandshakes {
    /// Counts a handshake from `peer` unless it already has `limit` in progress (0: no limit).
    fn begin(self: &Arc<Self>, peer: IpAddr, limit: usize) -> Option<PendingHandshake> {
        let mut counts = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(PendingHandshake {
            pending: self.clone(),
            peer,
        })
    }
}

/// One handshake in progress; dropping it uncounts it.
struct PendingHandshake {
    pending: Arc<PendingHandshakes>,
    peer: IpAddr,
}

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        let mut counts = self
            .pending
            .per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

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
                tokio::time::interval(Duration::from_secs(settings.reload_interval_secs.get()));
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

/// Accepted connections after their TLS handshake. Accepting never waits for a handshake: each
/// runs in a task of its own, for at most `limits.timeout`, so connections that never send a
/// ClientHello cannot keep other clients out. A peer address with `limits.per_peer` handshakes
/// in progress has its next connection closed at once (a flood from one address cannot pile up
/// tasks). Failed handshakes are logged at debug.
pub fn incoming(
    mut tcp: TcpIncoming,
    config: ReloadingConfig,
    limits: HandshakeLimits,
    mut stop: watch::Receiver<bool>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (sender, receiver) = mpsc::channel(64);
    let pending = Arc::new(PendingHandshakes::default());
    tokio::spawn(async move {
        loop {
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
                    // Out of file descriptors, typically: nothing can be accepted for a moment,
                    // and retrying at once would spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let peer = stream.peer_addr().ok();
            let counted = match peer {
                Some(addr) => pending.begin(peer_group(addr.ip()), limits.per_peer),
                None => None,
            };
            if counted.is_none() {
                tracing::debug!(
                    ?peer,
                    "TLS handshakes in progress from this address at the bound; closed"
                );
                continue;
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(config.current());
            let sender = sender.clone();
            tokio::spawn(async move {
                let _counted = counted;
                match tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_bounded_per_peer_address_and_uncounted_when_done() {
        let pending = Arc::new(PendingHandshakes::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let first = pending.begin(a, 2).expect("first");
        let second = pending.begin(a, 2).expect("second");
        assert!(
            pending.begin(a, 2).is_none(),
            "a third from the same address"
        );
        assert!(
            pending.begin(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(pending.begin(a, 2).is_some(), "a slot freed");
        drop(second);
        assert!(pending.begin(a, 0).is_some(), "0: no bound");
    }

    #[test]
    fn ipv6_peers_are_grouped_by_their_64_network() {
        let group = |ip: &str| peer_group(ip.parse().unwrap());
        assert_eq!(group("2001:db8:1:2:aaaa::1"), group("2001:db8:1:2:bbbb::2"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("::ffff:192.0.2.1"), group("192.0.2.1"));
        assert_ne!(group("192.0.2.1"), group("192.0.2.2"));
    }
}
