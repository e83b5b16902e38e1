//! The write side: HTTP commands validated into aggregates whose events are appended to the
//! event store, with optimistic concurrency, idempotency and audit metadata.

pub mod auth;
pub mod domain;
pub mod execute;
pub mod http;
pub mod idempotency;
pub mod state;

pub use state::{AppState, Hooks, Settings};

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tower_http::timeout::RequestBodyTimeoutLayer;
use utoipa::OpenApi as _;

/// The OpenAPI document's root.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Chronicle command API", version = "1"),
    components(schemas(
        http::openapi::ProblemDoc,
        http::openapi::FieldErrorDoc,
        http::openapi::PreconditionFailedDoc,
        http::openapi::ConflictCode,
    ))
)]
struct ApiDoc;

/// The commands anyone may send; a token they carry must still be valid. The accounts' own
/// anonymous routes are here too (logout takes the refresh cookie when the token has expired).
pub const PUBLIC_OPERATIONS: &[(&str, &str)] = &[
    ("post", "/api/v1/support/tickets"),
    ("post", "/api/v1/analytics/events"),
    ("post", "/api/v1/csp-reports"),
    ("post", "/api/v1/auth/register"),
    ("post", "/api/v1/auth/resend-verification"),
    ("post", "/api/v1/auth/verify-email"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/password/forgot"),
    ("post", "/api/v1/auth/password/reset"),
    ("post", "/api/v1/auth/login/mfa"),
    ("post", "/api/v1/auth/webauthn/login/options"),
    ("post", "/api/v1/auth/webauthn/login/finish"),
];

/// Every documented route, with its OpenAPI paths.
fn api() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(http::routes::router())
        .merge(auth::routes::router())
        .merge(auth::mfa::router())
        .merge(auth::passkeys::router())
        .merge(auth::sessions::router())
        .merge(auth::admin::router())
}

/// The command API's part of the OpenAPI document, without a database or running server;
/// `chronicle openapi` merges it with the query API's into the one document both serve.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = api().into_openapi();
    service_kit::caller::document_bearer_auth(&mut document, PUBLIC_OPERATIONS);
    document
}

/// The whole application: command routes, the OpenAPI document, plumbing.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    let routes = routes
        .route(
            service_kit::openapi::DOCUMENT_PATH,
            get(service_kit::openapi::serve_document),
        )
        .layer(DefaultBodyLimit::max(state.settings.body_limit))
        // No timeout around the handler: dropping it could abandon an append already sent,
        // which may still commit behind a 503. Commands check their deadline up to the
        // append (execute.rs); here only a client too slow to send its body is cut off.
        .layer(RequestBodyTimeoutLayer::new(state.settings.request_timeout))
        .layer(axum::middleware::from_fn(no_store_commands))
        .with_state(state.clone());
    let admission = service_kit::shed::AdmissionSettings {
        // Commands check their own deadline up to the append (see above): no cut-off.
        request_timeout: None,
        ..state.settings.admission
    };
    // A bad token is a 401 before anything else is looked at, except on logout, which
    // authenticates itself: its access token may have expired while the refresh cookie still
    // names the session (ACCOUNTS.md, "Sessions"), so a refused token must still reach it.
    let authentication = service_kit::http::Authentication {
        authenticator: state.authenticator.clone(),
        exempt: &[auth::routes::LOGOUT_PATH],
    };
    let app = service_kit::http::with_plumbing_bounded(
        "command-api",
        routes,
        state.pool,
        &admission,
        Some(authentication),
    );
    // Outside the plumbing, so its own problems (unknown route, 405, a shed 503) are never
    // stored and are readable by a browser too.
    service_kit::frontend::layers(app, &state.settings.cors, &[http::routes::csp::PATH])
}

/// Marks every answer to a command (any method but GET and HEAD) `Cache-Control: no-store`:
/// it reports one write, which no cache may repeat to another request.
async fn no_store_commands(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let command = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let mut response = next.run(request).await;
    if command {
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// Serves the command API on `settings.addr` until `shutdown` fires, with the accounts'
/// routes and their background worker; creates the bootstrap admin first when configured.
///
/// # Errors
///
/// The signing keys are unusable, the address cannot be bound, or the bootstrap admin
/// cannot be created.
pub async fn run(
    (settings, auth_settings): (Settings, auth::AuthSettings),
    pool: PgPool,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let auth = auth::AuthState::new(pool.clone(), auth_settings).context("loading signing keys")?;
    auth::ensure_bootstrap_admin(&auth)
        .await
        .context("creating the bootstrap admin")?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding command API to {}", settings.addr))?;
    tracing::info!(addr = %settings.addr, "command API listening");
    let ttl = settings.idempotency_ttl;
    idempotency::spawn_purger(
        pool.clone(),
        ttl,
        Duration::from_secs(3600),
        shutdown.clone(),
    );
    tokio::spawn(auth::worker::run(Arc::clone(&auth), shutdown.clone()));
    let app = router(AppState::new(pool, settings, Hooks::default())?.with_auth(auth));
    service_kit::http::serve(listener, app, shutdown).await?;
    Ok(())
}
