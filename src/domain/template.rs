//! Token templates: names and stored records.

use crate::domain::{
    Description, EnterpriseId, IpRestriction, ScopeSet, TemplateId, Timestamp, TokenLimits, UserId,
};
use crate::error::{Error, Result, reason};

/// Longest template name, in characters.
pub const NAME_MAX_CHARS: usize = 100;

/// A template name: 1-100 characters after trimming, no control characters, case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateName(String);

impl TemplateName {
    /// Validates and trims a name.
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid(
                "name",
                reason::TEMPLATE_NAME_REQUIRED,
                "name is required (1-100 characters)",
            ));
        }
        if trimmed.chars().count() > NAME_MAX_CHARS {
            return Err(Error::invalid(
                "name",
                reason::INVALID_TEMPLATE_NAME,
                format!("name must be at most {NAME_MAX_CHARS} characters"),
            )
            .with_meta("max_chars", NAME_MAX_CHARS.to_string()));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::invalid(
                "name",
                reason::INVALID_TEMPLATE_NAME,
                "name must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a name read back from the store.
    pub(crate) fn from_stored(raw: String) -> Self {
        Self(raw)
    }
}

/// Everything tokenmint keeps about a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// The template's id.
    pub id: TemplateId,
    /// Its owner.
    pub user_id: UserId,
    /// Unique (per owner) name.
    pub name: TemplateName,
    /// Enterprise its tokens are bound to.
    pub enterprise_id: Option<EnterpriseId>,
    /// Free-text description.
    pub description: Description,
    /// Scopes its tokens get (or a subset).
    pub scopes: ScopeSet,
    /// Networks its tokens may be used from; empty means any.
    pub allowed_ips: IpRestriction,
    /// Spending limits: an allow-list of coins and ceilings.
    pub limits: TokenLimits,
    /// Default token lifetime in seconds; 0 means the service default.
    pub default_duration_secs: i64,
    /// Starts at 1; +1 per update.
    pub version: i64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change time.
    pub updated_at: Timestamp,
    /// Creator.
    pub created_by: UserId,
    /// Last modifier.
    pub updated_by: UserId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_case_sensitive_and_bounded() {
        assert_eq!(TemplateName::parse("  Deploy ").unwrap().as_str(), "Deploy");
        assert_ne!(
            TemplateName::parse("Deploy").unwrap(),
            TemplateName::parse("deploy").unwrap()
        );
        let blank = TemplateName::parse(" \t").unwrap_err();
        assert_eq!(blank.reason, reason::TEMPLATE_NAME_REQUIRED);
        let long = TemplateName::parse(&"n".repeat(101)).unwrap_err();
        assert_eq!(long.reason, reason::INVALID_TEMPLATE_NAME);
        let control = TemplateName::parse("a\u{7f}b").unwrap_err();
        assert_eq!(control.reason, reason::INVALID_TEMPLATE_NAME);
    }
}
