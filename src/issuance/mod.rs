//! The issuance core: what a token may be, and the jobs done with tokens. No tonic and no SQL
//! here: storage goes through `store`.
//!
//! One module per job, each called by the gRPC handlers (one call per RPC):
//! [`authenticator`] (who is calling), [`minting`] (CreateToken), [`management`] (reading and
//! changing existing tokens, with [`cascade`] for a tree revoke), [`introspection`] (VerifyToken)
//! and [`templates`]; [`status_allocation`] gives each new token its status list entry and
//! [`status_publisher`] signs the lists. The rules they share: [`authority`] (what a minter may grant), [`rules`]
//! (the environment and enterprise membership) and [`lifecycle`] (status transitions).

pub mod authenticator;
pub mod authority;
pub mod caches;
pub mod caller;
pub mod cascade;
pub mod change_feed;
pub mod change_stream;
pub mod changes;
pub mod claims;
pub mod deny_list;
pub mod introspection;
pub mod key_manager;
pub mod key_rows;
pub mod keys;
pub mod last_used;
pub mod lifecycle;
pub mod management;
pub mod minting;
pub mod paging;
pub mod rules;
pub mod sealing;
pub mod signature_check;
pub mod status_allocation;
pub mod status_index;
pub mod status_publisher;
pub mod templates;
pub mod verifier;

use std::sync::Arc;

pub use authenticator::Authenticator;
pub use caller::Caller;
pub use introspection::{Introspector, Verification};
pub use management::TokenManager;
pub use minting::Minter;
pub use verifier::InactiveReason;

use crate::domain::ScopeCatalog;
use keys::KeyManager;

/// The token core's parts, one per job, as the TokenService handlers hold them.
#[derive(Clone)]
pub struct TokenCore {
    /// Authenticates RPC callers.
    pub authenticator: Arc<Authenticator>,
    /// Mints tokens (CreateToken).
    pub minter: Arc<Minter>,
    /// Reads and changes existing tokens.
    pub manager: Arc<TokenManager>,
    /// Answers VerifyToken.
    pub introspector: Arc<Introspector>,
    /// Signing keys (GetJwks).
    pub keys: Arc<KeyManager>,
    /// The scope catalog (ListScopes).
    pub catalog: Arc<ScopeCatalog>,
    /// Signed status lists (GetStatusList, `GET /statuslists/<id>`).
    pub status_lists: Arc<status_publisher::StatusListPublisher>,
    /// The change feed's fan-out to WatchTokenChanges streams.
    pub changes: Arc<change_stream::ChangeHub>,
}
