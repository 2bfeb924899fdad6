//! The issuance core: signing keys, claims, verification policy, lifecycle rules and the token
//! manager that the gRPC handlers call. No tonic and no SQL here: storage goes through `store`.

pub mod authority;
pub mod caches;
pub mod caller;
pub mod change_feed;
pub mod claims;
pub mod deny_list;
pub mod jwt_crypto;
pub mod key_manager;
pub mod key_rows;
pub mod keys;
pub mod last_used;
pub mod lifecycle;
pub mod paging;
pub mod rules;
pub mod sealing;
pub mod templates;
pub mod tokens;
pub mod verifier;

pub use caller::Caller;
pub use tokens::{TokenManager, Verification};
pub use verifier::InactiveReason;
