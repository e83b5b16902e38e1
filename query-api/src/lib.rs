//! The query side of Chronicle: serves the read models the projector builds, paginated,
//! filtered and ETagged, and reports how far behind each projection is.
//!
//! The crate is a library so that tests and the one-process dev runner start exactly the code
//! `main.rs` runs: build [`Settings`], make an [`AppState`] with [`app_state`], and either
//! mount [`router`] or call [`run`].
//!
//! Configuration (environment variables):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `QUERY_API_ADDR` | `0.0.0.0:8081` | address to listen on |
//! | `CONSISTENCY_WAIT_MS` | `5000` | longest wait for a projection to reach an `X-Consistency-Token` |
//! | `REQUEST_TIMEOUT_MS` | `15000` | a read not answered this long after its arrival gets 503 ([`service_kit::deadline`]) |
//! | `QUERY_LEARN_VERSIONS` | `true` | item reads feed the version map that answers `If-None-Match` without a query ([`announced`]; off on a replica) |
//! | `QUERY_TOTALS_CACHE` | `4096` | list totals kept per filter while the checkpoint stands still ([`read::totals`]); `0` turns it off |
//!
//! The database is configured by [`service_kit::db::DatabaseSettings`]; `QUERY_DATABASE_URL`
//! (default: unset) points the query API at another server instead, such as a streaming
//! replica ([`read_database_settings`]).

pub mod announced;
pub mod checkpoint;
pub mod consistency;
pub mod error;
pub mod etag;
pub mod openapi;
pub mod pagination;
pub mod read;
pub mod routes;
pub mod settings;
pub mod state;

use anyhow::Context as _;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use settings::{
    DEFAULT_ADDR, DEFAULT_CONSISTENCY_WAIT_MS, SERVICE, Settings, read_database_settings,
};
pub use state::{AppState, StateError, app_state, app_state_with_primary};

/// The whole application: the `/api/v1` routes, the OpenAPI document, and the shared plumbing
/// (`/healthz`, `/readyz`, `/metrics`, request ids, the bearer-token check, problem+json
/// fallbacks, panic catching).
pub fn router(state: AppState) -> axum::Router {
    let pool = state.pool().clone();
    let admission = state.settings().admission;
    let cors = state.settings().cors.clone();
    // A bad token is a 401 before anything else is looked at.
    let authentication = service_kit::http::Authentication::new(state.authenticator().clone());
    let app = service_kit::http::with_plumbing_bounded(
        SERVICE,
        routes::router(state),
        pool,
        &admission,
        Some(authentication),
    );
    // Outside the plumbing, so its own problems (unknown route, 405, a caught panic, a shed
    // 503) are never stored and are readable by a browser too.
    service_kit::frontend::layers(app, &cors, &[])
}

/// Serves the query API on `settings.addr` until `shutdown` fires.
///
/// # Errors
///
/// The address cannot be bound, or the server fails.
pub async fn run(settings: Settings, pool: PgPool, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding {}", settings.addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %local, "query-api listening");
    // Revocations are read from the primary even when reads come from a replica.
    let state = match read_database_settings()? {
        Some(_) => {
            let primary = service_kit::db::DatabaseSettings::from_env()?
                .connect()
                .await
                .context("connecting to the primary for revocations")?;
            app_state_with_primary(pool, primary, settings).await?
        }
        None => app_state(pool, settings).await?,
    };
    service_kit::http::serve(listener, router(state), shutdown)
        .await
        .context("serving the query API")
}

/// The complete OpenAPI document, without a database or running server (for generating client
/// types).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = routes::api().into_openapi();
    service_kit::caller::document_bearer_auth(&mut document, routes::PUBLIC_OPERATIONS);
    document
}
