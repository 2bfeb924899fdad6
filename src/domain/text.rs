//! Human-entered text: labels and descriptions.

use crate::error::{Error, Result, reason};

/// Longest label, in characters.
pub const LABEL_MAX_CHARS: usize = 100;
/// Longest description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;

/// A token label: 1-100 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// Validates and trims a label.
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid(
                "label",
                reason::LABEL_REQUIRED,
                "label is required (1-100 characters)",
            ));
        }
        if trimmed.chars().count() > LABEL_MAX_CHARS {
            return Err(Error::invalid(
                "label",
                reason::INVALID_LABEL,
                format!("label must be at most {LABEL_MAX_CHARS} characters"),
            )
            .with_meta("max_chars", LABEL_MAX_CHARS.to_string()));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::invalid(
                "label",
                reason::INVALID_LABEL,
                "label must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a label read back from the store (validated when it was written).
    pub(crate) fn from_stored(raw: String) -> Self {
        Self(raw)
    }
}

/// A token description: at most 1000 characters, may be empty; newlines and tabs allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    /// Validates and trims a description.
    pub fn parse(raw: &str) -> Result<Self> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(Error::invalid(
                "description",
                reason::INVALID_DESCRIPTION,
                format!("description must be at most {DESCRIPTION_MAX_CHARS} characters"),
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(Error::invalid(
                "description",
                reason::INVALID_DESCRIPTION,
                "description must not contain control characters other than newline and tab",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The description as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a description read back from the store.
    pub(crate) fn from_stored(raw: String) -> Self {
        Self(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(Label::parse("  ci bot ").unwrap().as_str(), "ci bot");
        assert_eq!(
            Label::parse("   ").unwrap_err().reason,
            reason::LABEL_REQUIRED
        );
        assert!(Label::parse(&"é".repeat(100)).is_ok());
        assert_eq!(
            Label::parse(&"é".repeat(101)).unwrap_err().reason,
            reason::INVALID_LABEL
        );
        assert_eq!(
            Label::parse("a\u{7}b").unwrap_err().reason,
            reason::INVALID_LABEL
        );
    }

    #[test]
    fn descriptions_allow_newlines_but_not_other_controls() {
        assert!(Description::parse("line one\nline two").is_ok());
        assert!(Description::parse("bad\u{0}").is_err());
        assert!(Description::parse(&"x".repeat(1001)).is_err());
    }
}
