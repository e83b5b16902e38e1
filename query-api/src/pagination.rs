//! Page-number pagination: parsing `page` and `page_size`, counting pages, and the RFC 8288
//! `Link` header.

use crate::error::ApiError;

/// `page_size` when the request names none.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The largest `page_size` accepted.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A validated page request: `page >= 1`, `1 <= page_size <= 100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The 1-based page number.
    pub page: i64,
    /// Items per page.
    pub page_size: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl PageRequest {
    /// Parses the raw `page` and `page_size` parameters; absent means the default.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] naming the parameter that is empty, not an integer or out of
    /// range.
    pub fn parse(page: Option<&str>, page_size: Option<&str>) -> Result<Self, ApiError> {
        let page = match given("page", page)? {
            None => 1,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if n >= 1 => n,
                _ => return Err(ApiError::bad_parameter("page", "must be an integer >= 1")),
            },
        };
        let page_size = match given("page_size", page_size)? {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => match raw.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_parameter(
                        "page_size",
                        format!("must be an integer from 1 to {MAX_PAGE_SIZE}"),
                    ));
                }
            },
        };
        Ok(Self { page, page_size })
    }

    /// Rows to skip. Saturates: a page far past the end simply reads nothing.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// How many pages `total` items fill (0 when there are none).
    pub fn pages(&self, total: i64) -> i64 {
        total.div_euclid(self.page_size) + i64::from(total.rem_euclid(self.page_size) != 0)
    }
}

/// The value of parameter `name` as sent: an empty one (`?sort=`) is a 400 naming it, as the
/// document gives every parameter at least one character (none is a value of any).
///
/// # Errors
///
/// [`ApiError::BadParameter`] naming `name` when the value is empty.
pub fn given<'a>(name: &'static str, raw: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match raw {
        Some("") => Err(ApiError::bad_parameter(name, "must not be empty")),
        other => Ok(other),
    }
}

/// Builds the `Link` header value for page `page` of `pages`: `first` and `last` always
/// (`last` is page 1 when there are no items), `prev` when `page > 1`, `next` when
/// `page < pages`. `url_for(n)` gives the URL of page `n`.
///
/// A page past the end links `prev` to the last page rather than `page - 1`, which would be
/// past the end too: following `prev` should lead back to items.
pub fn link_header(page: i64, pages: i64, url_for: impl Fn(i64) -> String) -> String {
    let last = pages.max(1);
    let mut links = vec![format!("<{}>; rel=\"first\"", url_for(1))];
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url_for((page - 1).min(last))));
    }
    if page < pages {
        links.push(format!("<{}>; rel=\"next\"", url_for(page + 1)));
    }
    links.push(format!("<{}>; rel=\"last\"", url_for(last)));
    links.join(", ")
}

/// Percent-encodes a query-string component: everything but RFC 3986 unreserved characters.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_parameters_take_the_defaults() {
        assert_eq!(
            PageRequest::parse(None, None).ok(),
            Some(PageRequest::default())
        );
    }

    #[test]
    fn out_of_range_values_name_their_parameter() {
        for (page, size, name) in [
            (Some("0"), None, "page"),
            (Some("-1"), None, "page"),
            (Some("x"), None, "page"),
            (None, Some("0"), "page_size"),
            (None, Some("101"), "page_size"),
            (None, Some("abc"), "page_size"),
            (Some(""), None, "page"),
            (None, Some(""), "page_size"),
        ] {
            match PageRequest::parse(page, size) {
                Err(ApiError::BadParameter { name: got, .. }) => assert_eq!(got, name),
                other => panic!("{page:?} {size:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn pages_round_up_and_offsets_saturate() {
        let request = PageRequest {
            page: 3,
            page_size: 20,
        };
        assert_eq!(request.pages(0), 0);
        assert_eq!(request.pages(40), 2);
        assert_eq!(request.pages(41), 3);
        assert_eq!(request.offset(), 40);
        let huge = PageRequest {
            page: i64::MAX,
            page_size: 100,
        };
        assert_eq!(huge.offset(), i64::MAX);
    }

    #[test]
    fn links_name_first_prev_next_and_last() {
        let url = |n: i64| format!("/p?page={n}");
        assert_eq!(
            link_header(2, 3, url),
            "</p?page=1>; rel=\"first\", </p?page=1>; rel=\"prev\", \
             </p?page=3>; rel=\"next\", </p?page=3>; rel=\"last\""
        );
        assert_eq!(
            link_header(1, 0, url),
            "</p?page=1>; rel=\"first\", </p?page=1>; rel=\"last\""
        );
        assert_eq!(
            link_header(9, 3, url),
            "</p?page=1>; rel=\"first\", </p?page=3>; rel=\"prev\", </p?page=3>; rel=\"last\""
        );
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("a b&c=%_~é"), "a%20b%26c%3D%25_~%C3%A9");
    }
}
