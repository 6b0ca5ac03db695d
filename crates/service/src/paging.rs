//! Paging of Bundles (searchset and history): `_count` and `_offset`, the self / first /
//! previous / next / last links, and the Bundle's meta. Read and search both page; neither
//! depends on the other for it.

use serde::Serialize;

use crate::ApiError;

/// The default and largest page sizes.
pub const DEFAULT_COUNT: i64 = 50;

/// The largest `_count`.
pub const MAX_COUNT: i64 = 1000;

/// A Bundle link.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    relation: &'static str,
    url: String,
}

pub(crate) fn count_param(params: &[(String, String)]) -> Result<i64, ApiError> {
    match params.iter().rev().find(|(k, _)| k == "_count") {
        None => Ok(DEFAULT_COUNT),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(n) if (0..=MAX_COUNT).contains(&n) => Ok(n),
            Ok(n) if n > MAX_COUNT => Ok(MAX_COUNT),
            _ => Err(ApiError::bad_request(format!("_count の値 {v:?} は 0 以上の整数でなければなりません"))),
        },
    }
}

pub(crate) fn offset_param(params: &[(String, String)]) -> Result<i64, ApiError> {
    match params.iter().rev().find(|(k, _)| k == "_offset") {
        None => Ok(0),
        Some((_, v)) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(ApiError::bad_request(format!("_offset の値 {v:?} は 0 以上の整数でなければなりません"))),
        },
    }
}

/// Everything but the unreserved characters of RFC 3986 is escaped in links.
const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY).to_string()
}

/// self / first / previous / next / last links for offset paging.
pub(crate) fn page_links(path: &str, params: &[(String, String)], offset: i64, count: i64, total: i64) -> Vec<Link> {
    let base: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "_offset" && k != "_count")
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let url = |off: i64| {
        let mut q = base.clone();
        q.push(format!("_count={count}"));
        q.push(format!("_offset={off}"));
        format!("{path}?{}", q.join("&"))
    };
    let mut links = vec![Link { relation: "self", url: url(offset) }];
    if count > 0 {
        links.push(Link { relation: "first", url: url(0) });
        if offset > 0 {
            links.push(Link { relation: "previous", url: url(offset.saturating_sub(count).max(0)) });
        }
        // `_offset` is any non-negative integer the client sent: no overflow near i64::MAX.
        if offset.saturating_add(count) < total {
            links.push(Link { relation: "next", url: url(offset.saturating_add(count)) });
        }
        let last = if total == 0 { 0 } else { ((total - 1) / count) * count };
        links.push(Link { relation: "last", url: url(last) });
    }
    links
}

#[derive(Serialize)]
pub(crate) struct BundleMeta {
    #[serde(rename = "lastUpdated")]
    pub last_updated: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn paging_links() {
        let l = page_links("http://x/fhir/Observation", &p(&[("patient", "p1"), ("_count", "2")]), 2, 2, 5);
        let rel: Vec<_> = l.iter().map(|x| x.relation).collect();
        assert_eq!(rel, vec!["self", "first", "previous", "next", "last"]);
        assert!(l[3].url.ends_with("patient=p1&_count=2&_offset=4"));
        assert!(l[4].url.ends_with("_offset=4"));
    }

    #[test]
    fn extreme_offsets_do_not_overflow() {
        let l = page_links("http://x/fhir/Observation", &[], i64::MAX, 1000, 5);
        assert_eq!(l.iter().map(|x| x.relation).collect::<Vec<_>>(), vec!["self", "first", "previous", "last"]);
    }
}
