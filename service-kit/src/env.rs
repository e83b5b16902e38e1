//! Typed reads of environment variables, with the variable named in every error.

use std::str::FromStr;

/// A variable that is set but does not parse.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct EnvError {
    /// The variable.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Why it does not parse.
    pub reason: String,
}

/// Reads `name`, or returns `default` when it is unset or empty.
pub fn var_or<T>(name: &str, default: T) -> Result<T, EnvError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|error: T::Err| EnvError {
                name: name.to_owned(),
                value,
                reason: error.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// Reads `name` as a string, or `default`.
pub fn string_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}
