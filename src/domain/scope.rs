//! The scope catalog and validated sets of scopes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::error::{Error, Result, reason};

/// The scope that grants every action (test environment only).
pub const ALL: &str = "all";
/// The scope that lets a caller manage its own tokens.
pub const USER_MANAGE: &str = "user_manage";
/// The scope that lets a caller introspect anyone's tokens with VerifyToken.
pub const TOKEN_INTROSPECT: &str = "token_introspect";

/// The catalog shipped with tokenmint.
const DEFAULT_CATALOG: &str = include_str!("../../scopes/default.toml");

/// One scope of the catalog.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ScopeInfo {
    /// The name tokens carry.
    pub name: String,
    /// What it allows.
    pub description: String,
    /// Accepted but discouraged.
    #[serde(default)]
    pub deprecated: bool,
}

#[derive(Deserialize)]
struct CatalogFile {
    scope: Vec<ScopeInfo>,
}

/// Every scope a token may carry, in catalog order.
#[derive(Debug, Clone)]
pub struct ScopeCatalog {
    entries: Vec<ScopeInfo>,
    by_name: BTreeMap<String, usize>,
}

impl ScopeCatalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        Self::from_toml(DEFAULT_CATALOG).expect("the built-in scope catalog is valid")
    }

    /// Parses a catalog from TOML text; names must be unique and well-formed.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut by_name = BTreeMap::new();
        for (i, entry) in file.scope.iter().enumerate() {
            anyhow::ensure!(
                is_scope_name(&entry.name),
                "scope name {:?} is not well-formed",
                entry.name
            );
            anyhow::ensure!(
                by_name.insert(entry.name.clone(), i).is_none(),
                "scope {} is listed twice",
                entry.name
            );
        }
        anyhow::ensure!(!file.scope.is_empty(), "the catalog lists no scope");
        Ok(Self {
            entries: file.scope,
            by_name,
        })
    }

    /// Every scope, in catalog order.
    pub fn entries(&self) -> &[ScopeInfo] {
        &self.entries
    }

    /// The catalog entry of `name`.
    pub fn get(&self, name: &str) -> Option<&ScopeInfo> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Validates requested scopes against the catalog (`field` names the request field), removing
    /// duplicates. Every unknown scope is reported.
    pub fn parse_scopes(&self, requested: &[String], field: &str) -> Result<ScopeSet> {
        let mut error: Option<Error> = None;
        let mut set = BTreeSet::new();
        for (i, name) in requested.iter().enumerate() {
            let name = name.trim();
            if self.get(name).is_some() {
                set.insert(name.to_owned());
                continue;
            }
            let shown = crate::error::truncate(name, 100);
            let violation = format!("unknown scope {shown:?}; ListScopes returns the catalog");
            error = Some(match error {
                None => Error::invalid(format!("{field}[{i}]"), reason::INVALID_SCOPE, violation)
                    .with_meta("scope", shown),
                Some(e) => e.with_violation(format!("{field}[{i}]"), violation),
            });
        }
        match error {
            Some(e) => Err(e),
            None => Ok(ScopeSet(set)),
        }
    }

    /// The deprecated scopes among `scopes`.
    pub fn deprecated_in(&self, scopes: &ScopeSet) -> Vec<String> {
        scopes
            .iter()
            .filter(|s| self.get(s).is_some_and(|e| e.deprecated))
            .map(str::to_owned)
            .collect()
    }
}

/// Whether `name` is a well-formed scope name.
fn is_scope_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// A de-duplicated, sorted set of scopes (validated against the catalog when built from a request).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<String>);

impl ScopeSet {
    /// A set from stored or claimed scope names (already validated when the token was minted).
    pub fn from_trusted<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self(names.into_iter().map(Into::into).collect())
    }

    /// Parses the space-separated `scope` claim.
    pub fn from_claim(claim: &str) -> Self {
        Self::from_trusted(claim.split_ascii_whitespace())
    }

    /// The space-separated form used by the `scope` claim and the database.
    pub fn to_claim(&self) -> String {
        let mut claim = String::with_capacity(self.0.iter().map(|s| s.len() + 1).sum());
        for scope in &self.0 {
            if !claim.is_empty() {
                claim.push(' ');
            }
            claim.push_str(scope);
        }
        claim
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Whether the set grants everything (`all`).
    pub fn has_all(&self) -> bool {
        self.contains(ALL)
    }

    /// Whether the holder of `self` may do what a holder of `scope` may: it holds it, or `all`.
    pub fn grants(&self, scope: &str) -> bool {
        self.has_all() || self.contains(scope)
    }

    /// The scopes of `other` that `self` does not grant.
    pub fn missing_from(&self, other: &ScopeSet) -> Vec<String> {
        if self.has_all() {
            return Vec::new();
        }
        other.0.difference(&self.0).cloned().collect()
    }

    /// Iterates the scope names in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_service_scopes_and_deprecations() {
        let catalog = ScopeCatalog::builtin();
        assert!(catalog.get(USER_MANAGE).is_some());
        assert!(catalog.get(TOKEN_INTROSPECT).is_some());
        assert!(catalog.get(ALL).is_some());
        assert!(catalog.get("portfolio_view").unwrap().deprecated);
        assert!(!catalog.get("wallet_view").unwrap().deprecated);
    }

    #[test]
    fn parse_scopes_dedupes_and_names_each_bad_one() {
        let catalog = ScopeCatalog::builtin();
        let set = catalog
            .parse_scopes(&["wallet_view".into(), "wallet_view".into()], "scopes")
            .unwrap();
        assert_eq!(set.to_claim(), "wallet_view");
        let several = ScopeSet::from_trusted(["wallet_view", "trade_view", "all"]);
        assert_eq!(several.to_claim(), "all trade_view wallet_view");
        assert_eq!(ScopeSet::from_claim(&several.to_claim()), several);
        assert_eq!(ScopeSet::default().to_claim(), "");
        let err = catalog
            .parse_scopes(
                &["wallet_view".into(), "bogus".into(), "nope".into()],
                "scopes",
            )
            .unwrap_err();
        assert_eq!(err.reason, reason::INVALID_SCOPE);
        assert_eq!(err.violations.len(), 2);
        assert_eq!(err.violations[0].field, "scopes[1]");
    }

    #[test]
    fn all_grants_everything() {
        let holder = ScopeSet::from_claim("all");
        assert!(
            holder
                .missing_from(&ScopeSet::from_claim("wallet_view trade_view"))
                .is_empty()
        );
        let weak = ScopeSet::from_claim("wallet_view");
        assert_eq!(
            weak.missing_from(&ScopeSet::from_claim("wallet_view trade_view")),
            vec!["trade_view"]
        );
    }

    #[test]
    fn custom_catalogs_accept_dotted_names() {
        let c = ScopeCatalog::from_toml(
            "[[scope]]\nname = \"environment.apiTokens.read\"\ndescription = \"read\"\n",
        )
        .unwrap();
        assert!(c.get("environment.apiTokens.read").is_some());
    }
}
