//! Update masks (`google.protobuf.FieldMask` in the API): which fields an Update* request
//! changes. One rule for every resource, so tokens and templates answer masks alike.

use crate::error::{Error, Result, Violations, reason};

/// The fields an update changes: a non-empty set, each one the resource lets callers update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePaths(Vec<&'static str>);

impl UpdatePaths {
    /// The fields named by `mask`, each of which must be one of `updatable`; without a mask
    /// (absent or empty: the API's "no mask"), the fields that `given` marks as having a value in
    /// the request. Every unknown path is reported (INVALID_UPDATE_MASK at
    /// `update_mask.paths[i]`); an update that changes nothing is refused (EMPTY_UPDATE).
    pub fn parse(
        mask: Option<&[String]>,
        updatable: &[&'static str],
        given: &[(&'static str, bool)],
    ) -> Result<Self> {
        let paths: Vec<&'static str> = match mask.filter(|paths| !paths.is_empty()) {
            Some(paths) => {
                let mut v = Violations::default();
                let mut known = Vec::with_capacity(paths.len());
                for (i, path) in paths.iter().enumerate() {
                    match updatable.iter().find(|field| **field == path.as_str()) {
                        Some(field) => known.push(*field),
                        None => {
                            v.check::<()>(Err(Error::invalid(
                                format!("update_mask.paths[{i}]"),
                                reason::INVALID_UPDATE_MASK,
                                format!(
                                    "{:?} cannot be updated; allowed: {}",
                                    crate::error::truncate(path, 64),
                                    updatable.join(", ")
                                ),
                            )
                            .with_meta("path", crate::error::truncate(path, 64))));
                        }
                    }
                }
                v.finish()?;
                known.dedup();
                known
            }
            None => given
                .iter()
                .filter(|(_, has_value)| *has_value)
                .map(|(field, _)| *field)
                .collect(),
        };
        if paths.is_empty() {
            return Err(Error::invalid(
                "update_mask",
                reason::EMPTY_UPDATE,
                format!(
                    "nothing to update: give a value to one of {}, or name fields in update_mask",
                    updatable.join(", ")
                ),
            ));
        }
        Ok(Self(paths))
    }

    /// Whether `field` changes.
    pub fn contains(&self, field: &str) -> bool {
        self.0.contains(&field)
    }

    /// The fields that change, in the order they were named.
    pub fn fields(&self) -> &[&'static str] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["label", "description"];

    fn mask(paths: &[&str]) -> Vec<String> {
        paths.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn a_mask_names_the_fields_that_change_even_when_their_value_is_empty() {
        let paths = UpdatePaths::parse(
            Some(&mask(&["description"])),
            FIELDS,
            &[("label", true), ("description", false)],
        )
        .unwrap();
        assert!(paths.contains("description"));
        assert!(!paths.contains("label"));
    }

    #[test]
    fn without_a_mask_the_fields_given_a_value_change() {
        for absent in [None, Some(&[][..])] {
            let paths =
                UpdatePaths::parse(absent, FIELDS, &[("label", true), ("description", false)])
                    .unwrap();
            assert_eq!(paths.fields(), ["label"]);
        }
    }

    #[test]
    fn every_unknown_path_is_reported_by_its_index() {
        let error = UpdatePaths::parse(
            Some(&mask(&["label", "scopes", "admin"])),
            FIELDS,
            &[("label", true)],
        )
        .unwrap_err();
        assert_eq!(error.reason, reason::INVALID_UPDATE_MASK);
        let fields: Vec<&str> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["update_mask.paths[1]", "update_mask.paths[2]"]);
    }

    #[test]
    fn an_update_that_changes_nothing_is_refused() {
        let error = UpdatePaths::parse(None, FIELDS, &[("label", false), ("description", false)])
            .unwrap_err();
        assert_eq!(error.reason, reason::EMPTY_UPDATE);
        assert_eq!(error.violations[0].field, "update_mask");
    }
}
