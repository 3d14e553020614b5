//! Pages of lists read from the database, and the one page-token codec.
//!
//! Lists page by key: a page is read with one row more than asked for, to learn
//! whether another follows, and the token of the next page is the key of the last
//! row returned. Lists ordered by time key on (instant, id), written as
//! `<RFC 3339 instant in microseconds>|<id>`; lists ordered by a text key use the key
//! itself. A token that does not decode starts from the beginning of the order.

use chrono::{DateTime, Utc};

/// One page of a list and the token of the next page (`None` on the last page).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows` (read with one row more than `page_size`): the first
    /// `page_size` rows, and when more followed, the token `key` makes of the last
    /// row kept.
    pub fn of(mut rows: Vec<T>, page_size: u32, key: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = if more { rows.last().map(key) } else { None };
        Page {
            items: rows,
            next_page_token,
        }
    }

    /// The same page with each item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_page_token: self.next_page_token,
        }
    }
}

/// How many bytes a stored JSON document takes written out: what a list weighs a
/// record by to keep a page under the message cap.
pub fn json_bytes(doc: &serde_json::Value) -> usize {
    serde_json::to_vec(doc).map_or(0, |v| v.len())
}

/// Microsecond precision: what both backends store, so keys, pages and stored times
/// compare exactly.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The earliest instant a list keys on.
pub(crate) fn far_past() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// Past any instant a list keys on.
pub(crate) fn far_future() -> DateTime<Utc> {
    "9999-12-31T00:00:00Z".parse().expect("valid instant")
}

/// The token of a row keyed on (`at`, `id`).
pub(crate) fn encode_token(at: DateTime<Utc>, id: &str) -> String {
    format!(
        "{}|{id}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// The (instant, id) of a token; `start` (with an empty id) for the first page or a
/// token that does not decode.
pub(crate) fn decode_token_or(token: &str, start: DateTime<Utc>) -> (DateTime<Utc>, String) {
    token
        .split_once('|')
        .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
        .unwrap_or_else(|| (start, String::new()))
}

/// The (instant, id) of a token for a list newest first: the first page starts
/// after every instant.
pub(crate) fn decode_token(token: &str) -> (DateTime<Utc>, String) {
    decode_token_or(token, far_future())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let at: DateTime<Utc> = "2026-11-25T15:00:00.123456Z".parse().unwrap();
        assert_eq!(decode_token(&encode_token(at, "n-1")), (at, "n-1".into()));
        assert_eq!(decode_token("garbage").0, far_future());
        assert_eq!(decode_token_or("", far_past()).0, far_past());
    }

    #[test]
    fn a_page_keeps_its_size_and_names_the_last_row() {
        let page = Page::of(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next_page_token.as_deref(), Some("2"));
        let last = Page::of(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last.next_page_token, None);
    }
}
