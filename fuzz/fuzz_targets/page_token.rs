//! Page-token decoding (`Page::parse`, shared by ListTokens and ListTemplates) on arbitrary page
//! sizes, tokens and queries. It must never panic, must bound the page size, and a token it
//! issued must lead back to the same place, for its own query only.
//!
//! Input: a page size (4 bytes), a length-prefixed query, a length-prefixed row id, a creation
//! time (8 bytes), then the page token.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenmint::domain::Timestamp;
use tokenmint::issuance::paging::{MAX_PAGE_SIZE, Page};
use tokenmint_fuzz::Fields;

fuzz_target!(|data: &[u8]| {
    let mut fields = Fields::new(data);
    let page_size = fields.i32();
    let query = fields.string();
    let id = fields.string();
    let created_at = Timestamp(fields.i64());
    let token = String::from_utf8_lossy(fields.rest()).into_owned();

    if let Ok(page) = Page::parse(page_size, &token, query.clone()) {
        assert!(
            (1..=MAX_PAGE_SIZE).contains(&page.size),
            "page size {}",
            page.size
        );
        assert!(page_size >= 0, "a negative page size was accepted");
        assert_eq!(page.fetch_limit(), page.size as u64 + 1);
    }

    // Round trip: the token of a page ending at (created_at, id) continues from there. Row ids
    // are UUIDs: never empty, never holding the token's `|` separator.
    if id.is_empty() || id.contains('|') {
        return;
    }
    let Ok(first) = Page::parse(1, "", query.clone()) else {
        panic!("a first page was refused");
    };
    let mut rows = vec![(created_at, id.clone()), (Timestamp(0), "next".to_owned())];
    let next = first.finish(&mut rows, |row| row.clone());
    assert_eq!(rows.len(), 1);
    let again = Page::parse(1, &next, query.clone()).expect("our own token is accepted");
    let cursor = again.cursor.expect("a cursor");
    assert_eq!((cursor.created_at, cursor.id), (created_at, id));
    let other = format!("{query}x");
    assert!(
        Page::parse(1, &next, other).is_err(),
        "a token was accepted for another query"
    );
});
