//! Field-by-field validation of a command's body, so one 422 names every invalid field.

use std::fmt::Display;

use service_kit::Problem;
use service_kit::problem::FieldError;

/// The invalid fields found so far in one request.
///
/// Invariant: [`Fields::check`] records a failure whenever it yields `None`, so a handler
/// missing a required value always has something to report.
#[derive(Debug, Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    /// Yields the parsed value, or records the parse failure under `name` and yields `None`.
    ///
    /// `name` is formatted only on failure, so a computed name costs nothing for valid fields.
    pub fn check<T, E: Display>(&mut self, name: impl Display, parsed: Result<T, E>) -> Option<T> {
        parsed
            .map_err(|error| {
                self.0
                    .push(FieldError::new(name.to_string(), error.to_string()));
            })
            .ok()
    }

    /// Records a failure that is no single value's parse (e.g. a missing choice of fields).
    pub fn refuse(&mut self, name: &str, message: &str) {
        self.0.push(FieldError::new(name, message));
    }

    /// The 422 naming every failure recorded; for a handler missing a required value.
    pub fn problem(self) -> Problem {
        Problem::validation(self.0)
    }

    /// `Ok` when nothing failed, else the 422 naming every failure.
    pub fn finish(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.problem())
        }
    }
}

/// Deserializes a field of a partial update that, when given, must hold a value: with
/// `#[serde(default, deserialize_with = "present")]` an absent field is `None` and `null` is
/// refused (422), so "leave it out" is the one way to keep a value, as the document says.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
