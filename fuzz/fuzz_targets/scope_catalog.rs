//! The scope-catalog parser (`ScopeCatalog::from_toml`, what `tokens.scope_catalog_file` and the
//! built-in `scopes/default.toml` go through) on arbitrary text, then scope validation against
//! the catalog it yields. It must never panic; a catalog it accepts has unique, well-formed
//! names, each found by name, and scope sets survive the `scope` claim's round trip.
//!
//! Input: the catalog's TOML text, optionally followed by a NUL byte and requested scope names
//! (one per line) to validate against it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenmint::domain::{ScopeCatalog, ScopeSet};

fuzz_target!(|data: &[u8]| {
    let (text, requested) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(catalog) = ScopeCatalog::from_toml(text) else {
        return;
    };
    assert!(
        !catalog.entries().is_empty(),
        "an empty catalog was accepted"
    );
    for entry in catalog.entries() {
        let found = catalog
            .get(&entry.name)
            .expect("every entry is found by name");
        assert_eq!(found, entry, "two entries share the name {:?}", entry.name);
    }
    let all: Vec<String> = catalog.entries().iter().map(|e| e.name.clone()).collect();
    let set = catalog
        .parse_scopes(&all, "scopes")
        .expect("the catalog's own names are valid scopes");
    assert_eq!(
        ScopeSet::from_claim(&set.to_claim()),
        set,
        "the claim round trip changed a set"
    );
    let _ = catalog.deprecated_in(&set);

    let requested: Vec<String> = String::from_utf8_lossy(requested)
        .lines()
        .map(str::to_owned)
        .collect();
    match catalog.parse_scopes(&requested, "scopes") {
        Ok(parsed) => {
            assert!(
                parsed.is_subset_of(&set),
                "a scope outside the catalog was accepted"
            );
            assert_eq!(ScopeSet::from_claim(&parsed.to_claim()), parsed);
        }
        Err(error) => assert!(!error.violations.is_empty(), "a refusal names no field"),
    }
});
