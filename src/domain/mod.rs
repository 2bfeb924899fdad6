//! Newtypes that cannot hold an invalid value. Each `parse` validates and normalises its input
//! once; code that receives one of these types never re-checks it.

pub mod change;
pub mod ids;
pub mod ip;
pub mod limits;
pub mod policy;
pub mod scope;
pub mod status_list;
pub mod template;
pub mod text;
pub mod time;
pub mod token;
mod unique;
pub mod update_paths;

pub use change::{
    ChangeCursor, ChangeEvent, ChangeKind, DeniedToken, EventKind, ListCursor, LogEntryMark,
    TokenChange, TokenStateChange,
};
pub use ids::{EnterpriseId, KeyId, TemplateId, TokenId, UserId};
pub use ip::IpRestriction;
pub use limits::{Amount, LimitsInput, SpendingLimit, TokenLimits};
pub use policy::{Environment, KeyAlgorithm};
pub use scope::{ScopeCatalog, ScopeSet};
pub use status_list::{StatusEntry, StatusListId};
pub use template::{TemplateName, TemplateRecord};
pub use text::{Description, Label};
pub use time::Timestamp;
pub use token::{StoredStatus, TokenRecord, TokenStatus, TokenUpdate};
pub use update_paths::UpdatePaths;
