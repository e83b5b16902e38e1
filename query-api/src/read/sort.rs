//! The `sort` parameter and the free-text filters every list shares.

use crate::error::ApiError;
use crate::pagination::given;

/// Checks a free-text filter: no NUL (PostgreSQL refuses it) and at most `max` characters
/// (longer can match nothing, and bounds the work). Empty is refused, as for every parameter.
///
/// # Errors
///
/// [`ApiError::BadParameter`] naming `name`.
pub fn text_filter(
    name: &'static str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match given(name, raw)? {
        None => Ok(None),
        Some(value) if value.contains('\0') => Err(ApiError::bad_parameter(
            name,
            "must not contain NUL characters",
        )),
        Some(value) if value.chars().count() > max => Err(ApiError::bad_parameter(
            name,
            format!("must be at most {max} characters"),
        )),
        Some(value) => Ok(Some(value.to_owned())),
    }
}

/// A field a list can be sorted by: a closed set whose parameter names are its column names.
pub trait SortField: Copy + Eq + std::fmt::Debug + 'static {
    /// Every field; `sort` accepts exactly their names.
    const ALL: &'static [Self];
    /// The field of the default order (which is descending: newest first).
    const DEFAULT: Self;
    /// What the 400 says when `sort` names no field.
    const EXPECTED: &'static str;

    /// The parameter value and the column name. They coincide and come only from the
    /// implementing type, never from the request, so the column can be pushed into SQL as it
    /// is.
    fn column(self) -> &'static str;
}

/// A sort order: `field`, or `-field` for descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort<F> {
    /// The field sorted by.
    pub field: F,
    /// Descending when true.
    pub descending: bool,
}

impl<F: SortField> Default for Sort<F> {
    /// Newest first: `-` and the default field.
    fn default() -> Self {
        Self {
            field: F::DEFAULT,
            descending: true,
        }
    }
}

impl<F: SortField> Sort<F> {
    /// Parses `field` or `-field`; absent means the default.
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] for `sort` when it is empty or the field is unknown.
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let Some(raw) = given("sort", raw)? else {
            return Ok(Self::default());
        };
        let (descending, name) = match raw.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let field = F::ALL
            .iter()
            .copied()
            .find(|field| field.column() == name)
            .ok_or_else(|| ApiError::bad_parameter("sort", F::EXPECTED))?;
        Ok(Self { field, descending })
    }

    /// `ASC` or `DESC`.
    pub fn direction(self) -> &'static str {
        if self.descending { "DESC" } else { "ASC" }
    }

    /// The parameter form: `field` or `-field`.
    pub fn to_param(self) -> String {
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{}", self.field.column())
    }

    /// The `ORDER BY` terms. `id` breaks ties so that pages neither repeat nor skip rows with
    /// equal sort keys; it runs in the same direction so the (field, id) indexes serve either
    /// order.
    pub fn order_by(self) -> String {
        let direction = self.direction();
        format!("{} {direction}, id {direction}", self.field.column())
    }
}

/// The timestamp columns every aggregate read model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampField {
    /// `created_at`
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
}

impl SortField for TimestampField {
    const ALL: &'static [Self] = &[Self::CreatedAt, Self::UpdatedAt];
    const DEFAULT: Self = Self::CreatedAt;
    const EXPECTED: &'static str = "must be created_at or updated_at, optionally prefixed with `-`";

    fn column(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::UpdatedAt => "updated_at",
        }
    }
}

/// A sort over the timestamp columns only (`created_at`, `updated_at`).
pub type TimestampSort = Sort<TimestampField>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Field {
        CreatedAt,
        Name,
    }

    impl SortField for Field {
        const ALL: &'static [Self] = &[Self::CreatedAt, Self::Name];
        const DEFAULT: Self = Self::CreatedAt;
        const EXPECTED: &'static str = "must be created_at or name";

        fn column(self) -> &'static str {
            match self {
                Self::CreatedAt => "created_at",
                Self::Name => "name",
            }
        }
    }

    #[test]
    fn a_sort_is_a_known_field_either_way_and_defaults_to_newest_first() {
        assert_eq!(Sort::<Field>::parse(None).ok(), Some(Sort::default()));
        assert!(Sort::<Field>::parse(Some("")).is_err());
        let name = Sort::<Field>::parse(Some("-name")).ok();
        assert_eq!(name.map(Sort::to_param).as_deref(), Some("-name"));
        assert_eq!(
            name.map(Sort::order_by).as_deref(),
            Some("name DESC, id DESC")
        );
        match Sort::<Field>::parse(Some("email")) {
            Err(ApiError::BadParameter { name, message }) => {
                assert_eq!((name, message.as_str()), ("sort", Field::EXPECTED));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_filters_refuse_nul_and_overlong_values() {
        assert!(text_filter("a", Some(""), 3).is_err());
        assert_eq!(
            text_filter("a", Some("abc"), 3).ok(),
            Some(Some("abc".into()))
        );
        assert!(text_filter("a", Some("abcd"), 3).is_err());
        assert!(text_filter("a", Some("a\0"), 3).is_err());
    }
}
