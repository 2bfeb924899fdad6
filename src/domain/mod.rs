//! Newtypes that cannot hold an invalid value. Each `parse` validates and normalises its input
//! once; code that receives one of these types never re-checks it.

pub mod ids;
pub mod ip;
pub mod limits;
pub mod scope;
pub mod template;
pub mod text;
pub mod time;
pub mod token;
mod unique;

pub use ids::{EnterpriseId, TemplateId, TokenId, UserId};
pub use ip::IpRestriction;
pub use limits::{Amount, SpendingLimit, TokenLimits};
pub use scope::{ScopeCatalog, ScopeSet};
pub use template::{TemplateName, TemplateRecord};
pub use text::{Description, Label};
pub use time::Timestamp;
pub use token::{StoredStatus, TokenRecord, TokenStatus};
