//! Entity tags and conditional GETs (RFC 9110 §8.8.3 and §13.1.2).
//!
//! `If-None-Match` uses the weak comparison: two tags match when their opaque parts are equal,
//! whether or not either carries `W/`. A 304 repeats the ETag, `Cache-Control` and `Vary` of
//! the 200 it stands for.

use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, ETAG, IF_NONE_MATCH, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use crate::checkpoint::Checkpoint;

/// `Cache-Control` of a private read: only the asker's own cache may store it, and it must
/// revalidate, since the read model can change at any moment.
pub const PRIVATE_CACHE_CONTROL: &str = "private, no-cache";

/// `Cache-Control` of a public read asked anonymously: browsers and CDNs may serve it for a few
/// seconds, which absorbs a crowd refreshing the status page during an incident.
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=5, stale-while-revalidate=30";

/// `Vary` of every read: an answer to a request with credentials or a consistency token is not
/// the answer to one without.
pub const VARY_VALUE: &str = "Authorization, X-Consistency-Token";

/// Who may store a read's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The asker's cache only ([`PRIVATE_CACHE_CONTROL`]).
    Private,
    /// Shared caches too ([`PUBLIC_CACHE_CONTROL`]).
    Public,
}

impl Audience {
    /// Public only for a `public` resource asked with neither `Authorization` nor
    /// `X-Consistency-Token`: a shared cache must not hand an answer meant for one client (or
    /// one that waited for one client's write) to everyone, nor serve a stale copy to a client
    /// that asked to read its own write.
    pub fn of(public: bool, headers: &HeaderMap) -> Self {
        let personal =
            headers.contains_key(AUTHORIZATION) || headers.contains_key(crate::consistency::HEADER);
        if public && !personal {
            Self::Public
        } else {
            Self::Private
        }
    }

    /// Sets `Cache-Control` and `Vary` on `response`.
    pub fn apply(self, mut response: Response) -> Response {
        let value = match self {
            Self::Private => PRIVATE_CACHE_CONTROL,
            Self::Public => PUBLIC_CACHE_CONTROL,
        };
        let headers = response.headers_mut();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
        headers.insert(VARY, HeaderValue::from_static(VARY_VALUE));
        response
    }
}

/// An entity tag: an opaque string, strong or weak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ETag {
    opaque: String,
    weak: bool,
}

impl ETag {
    /// A strong tag; `value` must not contain `"` (callers pass digits and hex).
    pub fn strong(value: impl std::fmt::Display) -> Self {
        Self {
            opaque: value.to_string(),
            weak: false,
        }
    }

    /// A weak tag (`W/"..."`); `value` must not contain `"`.
    pub fn weak(value: impl std::fmt::Display) -> Self {
        Self {
            opaque: value.to_string(),
            weak: true,
        }
    }

    /// The header form: `"7"` or `W/"7"`.
    pub fn header_value(&self) -> HeaderValue {
        let text = if self.weak {
            format!("W/\"{}\"", self.opaque)
        } else {
            format!("\"{}\"", self.opaque)
        };
        // Only our own tags (digits, hex and dashes) get here; the fallback is unreachable
        // in practice but keeps this path free of panics.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }

    /// Whether the request's `If-None-Match` matches this tag: `*`, or any listed tag with the
    /// same opaque part. Several header lines are read as one list; unparsable members are
    /// skipped, so a garbled header never turns into a 304.
    pub fn matches_if_none_match(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|list| {
                list_members(list).any(|member| match member {
                    Member::Any => true,
                    Member::Tag(opaque) => opaque == self.opaque,
                })
            })
    }

    /// Whether the request's `If-None-Match` lists this tag itself (`*` does not count).
    pub fn listed_in_if_none_match(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|list| list_members(list).any(|member| member == Member::Tag(&self.opaque)))
    }

    /// Sets `ETag`, and `Cache-Control` and `Vary` for `audience`, on `response`.
    pub fn decorate(&self, audience: Audience, mut response: Response) -> Response {
        response.headers_mut().insert(ETAG, self.header_value());
        audience.apply(response)
    }

    /// The 304 answer for this tag: empty body, the headers of the 200 it stands for.
    pub fn not_modified(&self, audience: Audience) -> Response {
        self.decorate(audience, StatusCode::NOT_MODIFIED.into_response())
    }
}

/// The weak ETag of a list answer: the projection's checkpoint `at` (position and
/// generation) plus a hash of the request's canonical query string.
///
/// Sound without running the list query because a read-model table is written only by its
/// projector, in the same transaction that moves the projection's checkpoint: while the
/// checkpoint stands still every row, page and total is exactly as it was, and any change
/// moves it, or, for a rebuild swap that lands on the same position, bumps its generation. The hash gives different filters, sorts and pages different tags. Weak, since
/// it vouches for the content, not the bytes. Callers must read the checkpoint *before* the
/// rows, so a tag can only undersell its body, never vouch for rows older than itself.
pub fn list_etag(at: Checkpoint, canonical_request: &str) -> ETag {
    let digest = Sha256::digest(canonical_request.as_bytes());
    let mut hash = String::with_capacity(16);
    for byte in &digest[..8] {
        hash.push_str(&format!("{byte:02x}"));
    }
    ETag::weak(format!(
        "{}-{}-{}-{hash}",
        at.position.position, at.position.tx_id, at.generation
    ))
}

/// One member of an `If-None-Match` list.
#[derive(Debug, PartialEq, Eq)]
enum Member<'a> {
    /// `*`
    Any,
    /// The opaque part of a tag, without quotes or `W/`.
    Tag(&'a str),
}

/// Splits `"a", W/"b", *` into members. Quotes are honoured, so a tag containing a comma
/// (allowed by the grammar) stays whole.
fn list_members(list: &str) -> impl Iterator<Item = Member<'_>> {
    let mut rest = list;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
            if rest.is_empty() {
                return None;
            }
            if let Some(after) = rest.strip_prefix('*') {
                rest = after;
                return Some(Member::Any);
            }
            let unprefixed = rest.strip_prefix("W/").unwrap_or(rest);
            if let Some(quoted) = unprefixed.strip_prefix('"')
                && let Some(end) = quoted.find('"')
            {
                rest = &quoted[end + 1..];
                return Some(Member::Tag(&quoted[..end]));
            }
            // Not a tag: skip to the next comma and keep going.
            match rest.find(',') {
                Some(comma) => rest = &rest[comma + 1..],
                None => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IF_NONE_MATCH, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_list_splits_into_tags_and_stars() {
        let members: Vec<_> = list_members(r#" "1", W/"2" ,*, junk, "a,b""#).collect();
        assert_eq!(
            members,
            vec![
                Member::Tag("1"),
                Member::Tag("2"),
                Member::Any,
                Member::Tag("a,b")
            ]
        );
    }

    #[test]
    fn weak_and_strong_tags_match_by_their_opaque_part() {
        assert!(ETag::strong(7).matches_if_none_match(&headers(&["W/\"7\""])));
        assert!(ETag::weak("7").matches_if_none_match(&headers(&["\"7\""])));
        assert!(!ETag::strong(7).matches_if_none_match(&headers(&["\"8\""])));
    }

    #[test]
    fn any_member_of_any_header_line_can_match() {
        let tag = ETag::strong(2);
        assert!(tag.matches_if_none_match(&headers(&["\"1\", \"2\""])));
        assert!(tag.matches_if_none_match(&headers(&["\"1\"", "\"2\""])));
        assert!(tag.matches_if_none_match(&headers(&["*"])));
        assert!(!tag.matches_if_none_match(&headers(&[])));
        assert!(!tag.matches_if_none_match(&headers(&["2"])));
    }

    #[test]
    fn header_values_are_quoted() {
        assert_eq!(ETag::strong(7).header_value(), "\"7\"");
        assert_eq!(ETag::weak("1-2-ab").header_value(), "W/\"1-2-ab\"");
    }
}
