//! The accounts' settings, from the environment (ACCOUNTS.md).
//!
//! - `AUTH_SIGNING_KEYS_FILE` or `AUTH_SIGNING_KEYS` (PEM text): one or more Ed25519 private
//!   keys in PKCS#8 PEM; the first signs, all verify. Required.
//! - `AUTH_SECRET_KEY_FILE` or `AUTH_SECRET_KEY`: 32 bytes, base64. Required.
//! - `AUTH_ISSUER` (default `chronicle`): the access tokens' `iss`.
//! - `AUTH_PUBLIC_URL` (default `http://localhost:8080`): where mailed links point.
//! - `AUTH_HASH_CONCURRENCY` (default: CPU count): password hashes run at once; a request
//!   waiting longer than 2 s for one gets 503.
//! - `AUTH_REFRESH_GRACE_SECS` (default 10): how long the predecessor of a session's current
//!   refresh token answers 409 `refresh-raced` instead of counting as reuse.
//! - `AUTH_REFRESH_TTL_SECS` (default 14 days), `AUTH_SESSION_TTL_SECS` (default 30 days),
//!   `AUTH_VERIFY_TTL_SECS` (default 24 hours), `AUTH_RESET_TTL_SECS` (default 30 minutes):
//!   lifetimes, settable so tests can shorten them.
//! - `AUTH_MFA_TTL_SECS` (default 300): how long an `mfa_token` works; it also dies after
//!   5 wrong codes.
//! - `AUTH_TOTP_SETUP_TTL_SECS` (default 600): how long a pending TOTP secret can be enabled.
//! - `AUTH_MAX_SESSIONS` (default 50): live sessions per account; a login beyond it revokes
//!   the least recently used.
//! - `AUTH_BOOTSTRAP_ADMIN_EMAIL`, `AUTH_BOOTSTRAP_ADMIN_PASSWORD` (or `_FILE`): the first
//!   admin, created at start-up when no account has that address.
//! - `AUTH_WEBAUTHN_RP_ID` (default `localhost`), `AUTH_WEBAUTHN_ORIGINS` (comma-separated,
//!   default `http://localhost:8080,http://localhost:8000`), `AUTH_WEBAUTHN_RP_NAME` (default
//!   `Chronicle`), `AUTH_WEBAUTHN_CEREMONY_TTL_SECS` (default 300): passkeys' relying party
//!   and how long a ceremony begun by `options` can be finished.
//! - `RATE_LIMIT_<NAME>` (`count/seconds`), names as in [`RateLimits`].

use std::fmt;
use std::time::Duration;

use service_kit::env::{EnvError, string_or, var_or};

/// One rate limit: `count` hits per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Hits allowed per window.
    pub count: u32,
    /// The window's length.
    pub window: Duration,
}

impl Limit {
    /// `count` per `seconds`.
    pub const fn per(count: u32, seconds: u64) -> Self {
        Self {
            count,
            window: Duration::from_secs(seconds),
        }
    }

    /// Parses `count/seconds`.
    fn parse(raw: &str) -> Result<Self, String> {
        let (count, seconds) = raw
            .split_once('/')
            .ok_or_else(|| "must be count/seconds, e.g. 5/900".to_owned())?;
        let count = count.trim().parse().map_err(|_| "bad count".to_owned())?;
        let seconds: u64 = seconds
            .trim()
            .parse()
            .map_err(|_| "bad seconds".to_owned())?;
        if seconds == 0 {
            return Err("the window must be at least 1 second".to_owned());
        }
        Ok(Self::per(count, seconds))
    }

    fn from_env(name: &str, default: Self) -> Result<Self, EnvError> {
        let variable = format!("RATE_LIMIT_{name}");
        match std::env::var(&variable) {
            Ok(raw) if !raw.trim().is_empty() => Self::parse(&raw).map_err(|reason| EnvError {
                name: variable,
                value: raw,
                reason,
            }),
            _ => Ok(default),
        }
    }
}

/// The rate limits of the accounts' routes (ACCOUNTS.md, "Rate limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_LIMIT_LOGIN_ADDRESS_IP` (5/900): failed logins per address and client IP.
    pub login_address_ip: Limit,
    /// `RATE_LIMIT_LOGIN_ADDRESS` (20/3600): failed logins per address.
    pub login_address: Limit,
    /// `RATE_LIMIT_MAIL_ADDRESS_IP` (5/900): register, resend and forgot per address and IP.
    pub mail_address_ip: Limit,
    /// `RATE_LIMIT_MAIL_ADDRESS` (10/3600): register, resend and forgot per address.
    pub mail_address: Limit,
    /// `RATE_LIMIT_AUTH_IP` (1000/600): anonymous auth requests per client IP.
    pub auth_ip: Limit,
    /// `RATE_LIMIT_REFRESH_IP` (1000/600): refreshes per client IP.
    pub refresh_ip: Limit,
    /// `RATE_LIMIT_CSP_REPORTS` (120/60): CSP report requests per client IP.
    pub csp_reports: Limit,
    /// `RATE_LIMIT_TICKETS_IP` (30/3600): tickets opened anonymously per client IP.
    pub tickets_ip: Limit,
    /// `RATE_LIMIT_ANALYTICS_IP` (600/60): analytics batches per client IP; a count of `0`
    /// turns it off.
    pub analytics_ip: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login_address_ip: Limit::per(5, 900),
            login_address: Limit::per(20, 3600),
            mail_address_ip: Limit::per(5, 900),
            mail_address: Limit::per(10, 3600),
            auth_ip: Limit::per(1000, 600),
            refresh_ip: Limit::per(1000, 600),
            csp_reports: Limit::per(120, 60),
            tickets_ip: Limit::per(30, 3600),
            analytics_ip: Limit::per(600, 60),
        }
    }
}

impl RateLimits {
    fn from_env() -> Result<Self, EnvError> {
        let default = Self::default();
        Ok(Self {
            login_address_ip: Limit::from_env("LOGIN_ADDRESS_IP", default.login_address_ip)?,
            login_address: Limit::from_env("LOGIN_ADDRESS", default.login_address)?,
            mail_address_ip: Limit::from_env("MAIL_ADDRESS_IP", default.mail_address_ip)?,
            mail_address: Limit::from_env("MAIL_ADDRESS", default.mail_address)?,
            auth_ip: Limit::from_env("AUTH_IP", default.auth_ip)?,
            refresh_ip: Limit::from_env("REFRESH_IP", default.refresh_ip)?,
            csp_reports: Limit::from_env("CSP_REPORTS", default.csp_reports)?,
            tickets_ip: Limit::from_env("TICKETS_IP", default.tickets_ip)?,
            analytics_ip: Limit::from_env("ANALYTICS_IP", default.analytics_ip)?,
        })
    }
}

/// A secret setting: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The bootstrap admin's address and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapAdmin {
    /// `AUTH_BOOTSTRAP_ADMIN_EMAIL`.
    pub email: String,
    /// `AUTH_BOOTSTRAP_ADMIN_PASSWORD` or the file `AUTH_BOOTSTRAP_ADMIN_PASSWORD_FILE` names.
    pub password: Secret,
}

/// The accounts' settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The PKCS#8 PEM signing keys, first signs.
    pub signing_keys: Secret,
    /// The 32-byte secret key, base64.
    pub secret_key: Secret,
    /// `AUTH_ISSUER`.
    pub issuer: String,
    /// `AUTH_PUBLIC_URL`, without a trailing slash.
    pub public_url: String,
    /// `AUTH_HASH_CONCURRENCY`.
    pub hash_concurrency: usize,
    /// Longest wait for a hashing slot before 503.
    pub hash_max_wait: Duration,
    /// `AUTH_REFRESH_GRACE_SECS`.
    pub refresh_grace: Duration,
    /// `AUTH_REFRESH_TTL_SECS`.
    pub refresh_ttl: Duration,
    /// `AUTH_SESSION_TTL_SECS`.
    pub session_ttl: Duration,
    /// `AUTH_VERIFY_TTL_SECS`.
    pub verify_ttl: Duration,
    /// `AUTH_RESET_TTL_SECS`.
    pub reset_ttl: Duration,
    /// `AUTH_MFA_TTL_SECS`.
    pub mfa_ttl: Duration,
    /// `AUTH_TOTP_SETUP_TTL_SECS`.
    pub totp_setup_ttl: Duration,
    /// `AUTH_MAX_SESSIONS`.
    pub max_sessions: usize,
    /// The rate limits.
    pub rate_limits: RateLimits,
    /// The first admin, when configured.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// How often the background worker looks for queued requests another replica took in.
    pub worker_poll: Duration,
    /// Passkeys' relying party.
    pub webauthn: WebauthnSettings,
}

/// Passkeys' relying party (`AUTH_WEBAUTHN_*`).
#[derive(Debug, Clone)]
pub struct WebauthnSettings {
    /// `AUTH_WEBAUTHN_RP_ID`: the domain passkeys are bound to.
    pub rp_id: String,
    /// `AUTH_WEBAUTHN_RP_NAME`: the name authenticators show.
    pub rp_name: String,
    /// `AUTH_WEBAUTHN_ORIGINS`: the origins ceremonies may come from.
    pub origins: Vec<String>,
    /// `AUTH_WEBAUTHN_CEREMONY_TTL_SECS`: how long a ceremony can be finished.
    pub ceremony_ttl: Duration,
}

impl Default for WebauthnSettings {
    fn default() -> Self {
        Self {
            rp_id: "localhost".to_owned(),
            rp_name: "Chronicle".to_owned(),
            origins: vec![
                "http://localhost:8080".to_owned(),
                "http://localhost:8000".to_owned(),
            ],
            ceremony_ttl: Duration::from_secs(300),
        }
    }
}

impl WebauthnSettings {
    fn from_env() -> Result<Self, EnvError> {
        let default = Self::default();
        let origins = string_or("AUTH_WEBAUTHN_ORIGINS", &default.origins.join(","))
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            rp_id: string_or("AUTH_WEBAUTHN_RP_ID", &default.rp_id),
            rp_name: string_or("AUTH_WEBAUTHN_RP_NAME", &default.rp_name),
            origins,
            ceremony_ttl: Duration::from_secs(var_or(
                "AUTH_WEBAUTHN_CEREMONY_TTL_SECS",
                default.ceremony_ttl.as_secs(),
            )?),
        })
    }
}

/// Why the accounts' settings cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AuthSettingsError {
    /// A variable does not parse.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A required secret is missing.
    #[error("{0} is not set: the service refuses to start without it (see ACCOUNTS.md, Keys)")]
    Missing(&'static str),
    /// A file named by a variable cannot be read.
    #[error("cannot read {variable} file {path}: {error}")]
    File {
        /// The variable.
        variable: &'static str,
        /// The path it names.
        path: String,
        /// Why.
        error: std::io::Error,
    },
}

/// `NAME`, or the contents of the file `NAME_FILE` names; `None` when neither is set.
fn value_or_file(
    name: &'static str,
    file_variable: &'static str,
) -> Result<Option<String>, AuthSettingsError> {
    let path = string_or(file_variable, "");
    if !path.is_empty() {
        return std::fs::read_to_string(&path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|error| AuthSettingsError::File {
                variable: file_variable,
                path,
                error,
            });
    }
    let value = string_or(name, "");
    Ok((!value.is_empty()).then_some(value))
}

impl AuthSettings {
    /// Reads the settings; the keys come from `signing_keys` and `secret_key` when given (the
    /// dev runner's generated ones), else from the environment.
    ///
    /// # Errors
    ///
    /// A variable does not parse, a file cannot be read, or a key is missing.
    pub fn from_env_with(
        signing_keys: Option<Secret>,
        secret_key: Option<Secret>,
    ) -> Result<Self, AuthSettingsError> {
        let signing_keys = match signing_keys {
            Some(keys) => keys,
            None => value_or_file("AUTH_SIGNING_KEYS", "AUTH_SIGNING_KEYS_FILE")?
                .map(Secret::new)
                .ok_or(AuthSettingsError::Missing(
                    "AUTH_SIGNING_KEYS_FILE or AUTH_SIGNING_KEYS",
                ))?,
        };
        let secret_key = match secret_key {
            Some(key) => key,
            None => value_or_file("AUTH_SECRET_KEY", "AUTH_SECRET_KEY_FILE")?
                .map(Secret::new)
                .ok_or(AuthSettingsError::Missing(
                    "AUTH_SECRET_KEY_FILE or AUTH_SECRET_KEY",
                ))?,
        };
        let bootstrap_admin = match (
            Some(string_or("AUTH_BOOTSTRAP_ADMIN_EMAIL", "")).filter(|email| !email.is_empty()),
            value_or_file(
                "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
                "AUTH_BOOTSTRAP_ADMIN_PASSWORD_FILE",
            )?,
        ) {
            (Some(email), Some(password)) => Some(BootstrapAdmin {
                email,
                password: Secret::new(password),
            }),
            _ => None,
        };
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let secs = |name: &str, default: u64| -> Result<Duration, EnvError> {
            Ok(Duration::from_secs(var_or(name, default)?))
        };
        Ok(Self {
            signing_keys,
            secret_key,
            issuer: string_or("AUTH_ISSUER", "chronicle"),
            public_url: string_or("AUTH_PUBLIC_URL", "http://localhost:8080")
                .trim_end_matches('/')
                .to_owned(),
            hash_concurrency: var_or("AUTH_HASH_CONCURRENCY", cpus)?.max(1),
            hash_max_wait: Duration::from_secs(2),
            refresh_grace: secs("AUTH_REFRESH_GRACE_SECS", 10)?,
            refresh_ttl: secs("AUTH_REFRESH_TTL_SECS", 14 * 24 * 3600)?,
            session_ttl: secs("AUTH_SESSION_TTL_SECS", 30 * 24 * 3600)?,
            verify_ttl: secs("AUTH_VERIFY_TTL_SECS", 24 * 3600)?,
            reset_ttl: secs("AUTH_RESET_TTL_SECS", 30 * 60)?,
            mfa_ttl: secs("AUTH_MFA_TTL_SECS", 300)?,
            totp_setup_ttl: secs("AUTH_TOTP_SETUP_TTL_SECS", 600)?,
            max_sessions: var_or("AUTH_MAX_SESSIONS", 50usize)?.max(1),
            rate_limits: RateLimits::from_env()?,
            bootstrap_admin,
            worker_poll: Duration::from_secs(1),
            webauthn: WebauthnSettings::from_env()?,
        })
    }

    /// Reads the settings, keys included, from the environment.
    ///
    /// # Errors
    ///
    /// As [`Self::from_env_with`].
    pub fn from_env() -> Result<Self, AuthSettingsError> {
        Self::from_env_with(None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_reads_count_per_seconds() {
        assert_eq!(Limit::parse("5/900"), Ok(Limit::per(5, 900)));
        assert!(Limit::parse("5").is_err());
        assert!(Limit::parse("5/0").is_err());
    }

    #[test]
    fn a_secret_never_prints() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }
}
