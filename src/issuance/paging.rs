//! Keyset pagination shared by the list RPCs: page sizes (default 50, at most 1000, larger values
//! reduced per AIP-158) and opaque page tokens bound to the query they came from. A page may also
//! end early, at any of its items ([`Resume`]), so that no response outgrows what a default gRPC
//! client accepts (the edge decides where, by encoded size).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::domain::ListCursor;
use crate::domain::Timestamp;
use crate::error::{Error, Result, reason};

/// Default page size.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size (larger requests are reduced to it).
pub const MAX_PAGE_SIZE: usize = 1000;

/// A validated page request.
#[derive(Debug, Clone)]
pub struct Page {
    /// How many items to return.
    pub size: usize,
    /// Where to start; `None` for the first page.
    pub cursor: Option<ListCursor>,
    /// Identifies the query (filters), so a token cannot be replayed against another one.
    query: String,
}

impl Page {
    /// Validates `page_size` and `page_token` for the query identified by `query`.
    pub fn parse(page_size: i32, page_token: &str, query: String) -> Result<Self> {
        let size = match page_size {
            n if n < 0 => {
                return Err(Error::invalid(
                    "page_size",
                    reason::INVALID_PAGE_SIZE,
                    "page_size must not be negative",
                ));
            }
            0 => DEFAULT_PAGE_SIZE,
            n => usize::try_from(n)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE),
        };
        let cursor = if page_token.is_empty() {
            None
        } else {
            Some(decode(page_token, &query)?)
        };
        Ok(Self {
            size,
            cursor,
            query,
        })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> u64 {
        self.size as u64 + 1
    }

    /// Where a page of this query may end early: the token of the page after any of its items.
    pub fn resume(&self) -> Resume {
        Resume {
            query: self.query.clone(),
        }
    }

    /// Trims `items` to the page and returns the token of the next page (empty if none).
    pub fn finish<T>(&self, items: &mut Vec<T>, key: impl Fn(&T) -> (Timestamp, String)) -> String {
        if items.len() <= self.size {
            return String::new();
        }
        items.truncate(self.size);
        items
            .last()
            .map(|last| encode(key(last), &self.query))
            .unwrap_or_default()
    }
}

/// Makes the page token of the page that starts right after a given item, for a page that ends
/// before its full size.
#[derive(Debug, Clone)]
pub struct Resume {
    query: String,
}

impl Resume {
    /// The token of the page after the item created at `created_at` with id `id`.
    pub fn after(&self, created_at: Timestamp, id: &str) -> String {
        encode((created_at, id.to_owned()), &self.query)
    }
}

fn encode((created_at, id): (Timestamp, String), query: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{}|{}|{}", created_at.0, id, query))
}

fn decode(token: &str, query: &str) -> Result<ListCursor> {
    let bad = || {
        Error::invalid(
            "page_token",
            reason::INVALID_PAGE_TOKEN,
            "page_token is not one this service issued for this query",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(4, '|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(created_at), Some(id), Some(q)) if q == query && !id.is_empty() => {
            Ok(ListCursor {
                created_at: Timestamp(created_at.parse().map_err(|_| bad())?),
                id: id.to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_for_their_query() {
        let page = Page::parse(2, "", "q".into()).unwrap();
        let mut items = vec![1, 2, 3];
        let next = page.finish(&mut items, |i| (Timestamp(*i), format!("id{i}")));
        assert_eq!(items, vec![1, 2]);
        let again = Page::parse(2, &next, "q".into()).unwrap();
        assert_eq!(again.cursor.unwrap().id, "id2");
        let err = Page::parse(2, &next, "other".into()).unwrap_err();
        assert_eq!(err.reason, reason::INVALID_PAGE_TOKEN);
    }

    #[test]
    fn a_page_ended_early_resumes_right_after_its_last_item() {
        let page = Page::parse(10, "", "q".into()).unwrap();
        let token = page.resume().after(Timestamp(7), "id7");
        let next = Page::parse(10, &token, "q".into()).unwrap();
        let cursor = next.cursor.unwrap();
        assert_eq!(
            (cursor.created_at, cursor.id.as_str()),
            (Timestamp(7), "id7")
        );
        assert!(Page::parse(10, &token, "other".into()).is_err());
    }

    #[test]
    fn sizes_default_clamp_and_refuse_negatives() {
        assert_eq!(
            Page::parse(0, "", String::new()).unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            Page::parse(5000, "", String::new()).unwrap().size,
            MAX_PAGE_SIZE
        );
        assert!(Page::parse(-1, "", String::new()).is_err());
    }
}
