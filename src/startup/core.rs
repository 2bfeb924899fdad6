//! The core a server (or an operator command) runs on: store, master key, signing keys, deny
//! list, caches and the token and template cores, built from settings.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::domain::Environment;
use crate::domain::{ScopeCatalog, Timestamp};
use crate::issuance::caches::MetadataCache;
use crate::issuance::change_feed::{ChangeFeed, FeedHealth};
use crate::issuance::change_stream::{ChangeHub, StreamPolicy};
use crate::issuance::changes::ChangeCommitter;
use crate::issuance::deny_list::DenyList;
use crate::issuance::keys::KeyManager;
use crate::issuance::last_used::LastUsed;
use crate::issuance::minting::IssuancePolicy;
use crate::issuance::sealing::MasterKey;
use crate::issuance::signature_check::SignatureCheck;
use crate::issuance::status_allocation::{AllocationPolicy, StatusAllocator};
use crate::issuance::status_publisher::{PublishingPolicy, StatusListPublisher};
use crate::issuance::templates::TemplateManager;
use crate::issuance::verifier::JwtPolicy;
use crate::issuance::{Authenticator, Introspector, Minter, TokenCore, TokenManager};
use crate::store::events::LogShape;
use crate::store::{Store, StoreOptions, TokenWriter};

/// How many times the shutdown flush tries rows that another server was writing.
const SHUTDOWN_FLUSH_ATTEMPTS: u32 = 5;
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
    /// The change log's extent, read before the keys and the deny list were loaded.
    pub log_at_load: LogShape,
    /// The status list entries this server hands out.
    pub statuses: Arc<StatusAllocator>,
    /// Wakes the change feed (a change committed here, a PostgreSQL notification).
    pub feed_wake: Arc<Notify>,
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
        max_connections: settings.database.max_connections.get(),
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
    /// New status lists get URIs under `status_base_uri` ([`Settings::status_list_base_uri`]).
    pub async fn build(settings: &Settings, status_base_uri: String) -> anyhow::Result<Self> {
        settings.validate()?;
        let catalog = Arc::new(scope_catalog(settings)?);
        let store = open_store(settings).await?;
        // Read before the keys and the deny list: the change feed starts here, so nothing that
        // commits while they load is missed, and the server is caught up when it starts serving.
        let log_at_load = store.log_shape(0).await?;
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
        let statuses = Arc::new(StatusAllocator::new(
            store.clone(),
            AllocationPolicy {
                base_uri: status_base_uri,
                list_size: settings.status_list.size,
                block: settings.status_list.block,
            },
        ));
        let (writer, writer_task) = TokenWriter::spawn(store.clone());
        let feed_wake = Arc::new(Notify::new());
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
                ChangeCommitter::new(
                    writer.clone(),
                    deny.clone(),
                    metadata.clone(),
                    feed_wake.clone(),
                ),
                settings.environment,
                settings.tokens.leeway_secs,
            )),
            minter: Arc::new(Minter::new(
                store.clone(),
                writer,
                keys.clone(),
                templates.clone(),
                catalog.clone(),
                statuses.clone(),
                policy,
            )),
            keys: keys.clone(),
            catalog,
            status_lists: Arc::new(StatusListPublisher::new(
                store.clone(),
                keys.clone(),
                PublishingPolicy {
                    issuer: settings.tokens.issuer.clone(),
                    ttl_secs: settings.status_list.ttl_secs.get(),
                    exp_secs: settings.status_list.exp_secs.get(),
                    render_cache: Duration::from_millis(settings.status_list.render_cache_ms),
                },
            )),
            changes: Arc::new(ChangeHub::new(
                store.clone(),
                StreamPolicy {
                    max_streams: settings.change_stream_cap(),
                    max_lag: settings.changes.max_lag.get(),
                    heartbeat: Duration::from_millis(settings.changes.heartbeat_ms.get()),
                    stalled_client: Duration::from_millis(settings.changes.stalled_client_ms.get()),
                },
                ChangeFeed::stream_cursor_at_start(&log_at_load),
            )),
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
            log_at_load,
            statuses,
            feed_wake,
            writer_task,
        })
    }

    /// Flushes pending writes and closes the store.
    pub async fn shutdown(self) {
        // A row another server was writing is handed back to the map: try again a few times,
        // so that a rolling restart does not drop the last uses this server saw.
        for attempt in 1..=SHUTDOWN_FLUSH_ATTEMPTS {
            match self.last_used.flush(&self.store).await {
                Ok(_) if self.last_used.queue_depth() == 0 => break,
                Ok(_) if attempt < SHUTDOWN_FLUSH_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(_) => tracing::warn!(
                    left = self.last_used.queue_depth(),
                    "last-used times other servers kept writing were not flushed at shutdown"
                ),
                Err(error) => {
                    tracing::warn!(%error, "could not flush last-used times at shutdown");
                    break;
                }
            }
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
