//! The query API's settings, read from the environment (see the crate documentation for the
//! variables and their defaults).

use std::net::SocketAddr;
use std::time::Duration;

use service_kit::env::{EnvError, var_or};

/// The query API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `QUERY_API_ADDR` (default `0.0.0.0:8081`): where to listen.
    pub addr: SocketAddr,
    /// `CONSISTENCY_WAIT_MS` (default 5000): how long a request carrying an
    /// `X-Consistency-Token` waits for the projection before answering 503.
    pub consistency_wait: Duration,
    /// `MAX_IN_FLIGHT`, `ADMISSION_WAIT_MS`: the bound on requests worked on at once.
    pub admission: service_kit::shed::AdmissionSettings,
    /// `AUTH_SIGNING_KEYS_FILE` or `AUTH_SIGNING_KEYS`, `AUTH_ISSUER`, `AUTH_AUDIENCE`: how
    /// access tokens are verified. The service refuses to start without keys.
    pub auth: service_kit::caller::AuthSettings,
    /// `CORS_ALLOWED_ORIGINS` (default none): the browser origins that may call the API.
    pub cors: service_kit::frontend::CorsSettings,
    /// `QUERY_LEARN_VERSIONS` (default `true`): whether item reads feed the in-process version
    /// map that answers `If-None-Match` without a query ([`crate::announced`]); always off
    /// when reads go to a replica. `false` exists to measure what it saves.
    pub learn_versions: bool,
    /// `QUERY_TOTALS_CACHE` (default 4096): the most list totals kept, each valid while its
    /// projection's checkpoint stands still ([`crate::read::totals`]); `0` turns it off.
    pub totals_cache: usize,
}

/// `QUERY_API_ADDR` when unset: every interface, port 8081.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081);

/// `CONSISTENCY_WAIT_MS` when unset.
pub const DEFAULT_CONSISTENCY_WAIT_MS: u64 = 5000;

/// The service's name in metrics and logs.
pub const SERVICE: &str = "query-api";

/// `QUERY_TOTALS_CACHE` when unset.
pub const DEFAULT_TOTALS_CACHE: usize = 4096;

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR,
            consistency_wait: Duration::from_millis(DEFAULT_CONSISTENCY_WAIT_MS),
            admission: service_kit::shed::AdmissionSettings::default(),
            auth: service_kit::caller::AuthSettings::default(),
            cors: service_kit::frontend::CorsSettings::default(),
            learn_versions: true,
            totals_cache: DEFAULT_TOTALS_CACHE,
        }
    }
}

impl Settings {
    /// Reads the settings from the environment; unset or empty variables take their defaults.
    ///
    /// # Errors
    ///
    /// A variable that is set but does not parse.
    pub fn from_env() -> Result<Self, EnvError> {
        Ok(Self {
            addr: var_or("QUERY_API_ADDR", DEFAULT_ADDR)?,
            consistency_wait: Duration::from_millis(var_or(
                "CONSISTENCY_WAIT_MS",
                DEFAULT_CONSISTENCY_WAIT_MS,
            )?),
            admission: service_kit::shed::AdmissionSettings::from_env()?,
            auth: service_kit::caller::AuthSettings::from_env()?,
            cors: service_kit::frontend::CorsSettings::from_env()?,
            learn_versions: var_or("QUERY_LEARN_VERSIONS", true)?,
            totals_cache: var_or("QUERY_TOTALS_CACHE", DEFAULT_TOTALS_CACHE)?,
        })
    }
}

/// The database to serve reads from when `QUERY_DATABASE_URL` is set (a streaming replica of
/// the primary, say), with the pool settings of [`service_kit::db::DatabaseSettings`]; `None`
/// when unset, meaning `DATABASE_URL`.
///
/// Read-your-writes still holds on a lagging replica: a projection's checkpoint is committed
/// in the same transaction as its rows, so the replica never shows a checkpoint without the
/// rows it covers, and a consistency-token wait compares with the checkpoint as replicated.
///
/// # Errors
///
/// A database variable that is set but does not parse.
pub fn read_database_settings() -> Result<Option<service_kit::db::DatabaseSettings>, EnvError> {
    let url = service_kit::env::string_or("QUERY_DATABASE_URL", "");
    if url.is_empty() {
        return Ok(None);
    }
    Ok(Some(service_kit::db::DatabaseSettings {
        url: service_kit::db::DatabaseUrl::new(url),
        ..service_kit::db::DatabaseSettings::from_env()?
    }))
}
