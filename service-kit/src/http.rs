//! HTTP plumbing every service mounts: request ids, access metrics, panics and unknown routes
//! as problem+json, health and metrics routes, a bound on requests in flight, and serving with
//! graceful shutdown.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt as _;
use hashbrown::Equivalent;
use metrics::{Counter, Histogram};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::caller::Authenticator;
use crate::metric_names;
use crate::problem::Problem;
use crate::series::Series;
use crate::shed::{Admission, AdmissionSettings};
use crate::shutdown::Shutdown;
use crate::telemetry::{metrics_handle, record_pool};

/// `X-Request-ID`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware, the plumbing's one layer: stamps the request's arrival
/// ([`crate::deadline::Arrival`]), bounds the requests in flight ([`crate::shed::admitted`],
/// when `plumbing.admission` is set), then observes it (`observe`: id, span, metrics, problem
/// rendering, deadline, the token check when `plumbing.authentication` is set, and panics).
/// One layer for all of it, since each layer of a route boxes its future and clones the
/// services below it on every request.
pub async fn plumb(State(plumbing): State<Plumbing>, mut request: Request, next: Next) -> Response {
    crate::deadline::stamp(&mut request);
    match &plumbing.admission {
        Some(admission) => {
            crate::shed::admitted(admission, request, |request| {
                observe(&plumbing, request, next)
            })
            .await
        }
        None => observe(&plumbing, request, next).await,
    }
}

/// Takes a client's `X-Request-ID` when it is 1-128 safe characters, else makes one; runs the
/// request in its server span; counts and times it by service, route, method and status;
/// echoes the id on the response and puts it into problem bodies, marked never to be stored
/// (`Cache-Control: no-store`); with `plumbing.request_timeout`, cuts off with 503 a request of
/// the service's own routes not answered that long after its arrival
/// ([`crate::deadline::within`]).
async fn observe(plumbing: &Plumbing, mut request: Request, next: Next) -> Response {
    let service = plumbing.service;
    let started = Instant::now();
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_safe_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = server_span(&request, &id);
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let deadline = plumbing
        .request_timeout
        .filter(|_| {
            route
                .as_ref()
                .is_some_and(|route| !OPS_ROUTES.contains(&route.as_str()))
        })
        .map(|timeout| {
            (
                crate::deadline::stamp_deadline(&mut request, timeout),
                timeout,
            )
        });
    let authenticator = plumbing
        .authentication
        .as_ref()
        .filter(|authentication| {
            route
                .as_ref()
                .is_some_and(|route| authentication.covers(route.as_str()))
        })
        .map(|authentication| &authentication.authenticator);
    // A panic is answered, counted and rendered as a problem like any other 500: caught here
    // rather than by a layer of its own, which would clone the route's services per request.
    let handled = async move {
        let answer = match authenticator {
            Some(authenticator) => {
                let authenticated = crate::caller::authenticated(authenticator, request, next);
                AssertUnwindSafe(authenticated).catch_unwind().await
            }
            None => AssertUnwindSafe(next.run(request)).catch_unwind().await,
        };
        answer.unwrap_or_else(panic_to_problem)
    };
    // The handler's statements are timed under this service (sql_metrics). Boxed: the
    // wrappers below each hold the future by value and are moved as they are built.
    let handled = crate::sql_metrics::in_service(service, Box::pin(handled));
    let handled = tracing::Instrument::instrument(handled, span.clone());
    let mut response = match (deadline, &route) {
        (Some((deadline, timeout)), Some(route)) => {
            crate::deadline::within(deadline, timeout, &method, route.as_str(), handled).await
        }
        _ => handled.await,
    };
    let status = response.status();
    count_request(
        RequestLabelsRef {
            service,
            method: &method,
            route: route.as_ref().map_or("unmatched", MatchedPath::as_str),
            status: status.as_u16(),
        },
        started.elapsed(),
    );
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<Problem>().is_none()
    {
        // Every error is problem+json: layers such as the timeout answer with a bare status,
        // and axum's own rejections (an undecodable path, say) with plain text, which becomes
        // the problem's detail.
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let problem = match content_type {
            None => Some(Problem::from_status(status)),
            Some(kind) if kind.starts_with("text/plain") => {
                let (parts, body) = response.into_parts();
                let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
                response = Response::from_parts(parts, axum::body::Body::empty());
                Some(Problem::from_status(status).detail(String::from_utf8_lossy(&text)))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            response.extensions_mut().insert(problem);
        }
    }
    if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
        let extensions = std::mem::take(response.extensions_mut());
        let headers = std::mem::take(response.headers_mut());
        // A `Retry-After` a layer set on a bare status becomes the problem's, so the body's
        // `retry_after` says the same.
        if let Some(seconds) = headers
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
        {
            problem = problem.retry_after(seconds);
        }
        response = problem.render(Some(&id));
        // Keep headers the handler set (ETag, ...); the body and its `Retry-After` are new.
        for (name, value) in &headers {
            if name != axum::http::header::CONTENT_LENGTH
                && name != axum::http::header::CONTENT_TYPE
                && name != axum::http::header::RETRY_AFTER
            {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        *response.extensions_mut() = extensions;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    // Last, so that no header a handler set on a problem makes it storable.
    crate::frontend::no_store_if_problem(&mut response);
    response
}

/// What [`plumb`] is given.
#[derive(Debug, Clone)]
pub struct Plumbing {
    /// `command-api`, `query-api`, `projector`: the `service` label of its metrics.
    pub service: &'static str,
    /// The bound on requests in flight, if any.
    pub admission: Option<Admission>,
    /// See [`AdmissionSettings::request_timeout`].
    pub request_timeout: Option<Duration>,
    /// The bearer-token check of the service's routes, if it has one.
    pub authentication: Option<Authentication>,
}

/// The bearer-token check the plumbing makes before a service's own routes (not the
/// [`OPS_ROUTES`], not an unmatched request): [`crate::caller::authenticated`].
#[derive(Debug, Clone)]
pub struct Authentication {
    /// Verifies the tokens.
    pub authenticator: Authenticator,
    /// Routes (as matched, e.g. `/api/v1/auth/logout`) that authenticate themselves and are
    /// reached whatever token comes with the request.
    pub exempt: &'static [&'static str],
}

impl Authentication {
    /// Every route but the exempt ones, checked with `authenticator`.
    pub fn new(authenticator: Authenticator) -> Self {
        Self {
            authenticator,
            exempt: &[],
        }
    }

    /// Whether a request of `route` is checked.
    fn covers(&self, route: &str) -> bool {
        !OPS_ROUTES.contains(&route) && !self.exempt.contains(&route)
    }
}

/// The labels of `chronicle_http_requests_total` and `chronicle_http_request_duration_seconds`.
#[derive(Debug, Hash, PartialEq, Eq)]
struct RequestLabels {
    service: &'static str,
    method: Method,
    route: Box<str>,
    status: u16,
}

/// [`RequestLabels`] borrowed from a request, hashing as they do.
#[derive(Debug, Hash)]
struct RequestLabelsRef<'a> {
    service: &'static str,
    method: &'a Method,
    route: &'a str,
    status: u16,
}

impl Equivalent<RequestLabels> for RequestLabelsRef<'_> {
    fn equivalent(&self, key: &RequestLabels) -> bool {
        self.status == key.status
            && self.service == key.service
            && *self.method == key.method
            && self.route == &*key.route
    }
}

/// Counts and times one answered request.
fn count_request(labels: RequestLabelsRef<'_>, took: Duration) {
    static SERIES: LazyLock<Series<RequestLabels, (Counter, Histogram)>> =
        LazyLock::new(Series::new);
    SERIES.with(
        &labels,
        || {
            let owned = [
                ("service", labels.service.to_owned()),
                ("method", labels.method.to_string()),
                ("route", labels.route.to_owned()),
                ("status", labels.status.to_string()),
            ];
            let handles = (
                metrics::counter!(metric_names::HTTP_REQUESTS_TOTAL, &owned),
                metrics::histogram!(metric_names::HTTP_REQUEST_DURATION_SECONDS, &owned),
            );
            let key = RequestLabels {
                service: labels.service,
                method: labels.method.clone(),
                route: labels.route.into(),
                status: labels.status,
            };
            (key, handles)
        },
        |(total, duration)| {
            total.increment(1);
            duration.record(took.as_secs_f64());
        },
    );
}

/// The request's server span, `"{METHOD} {route}"` with the OTel HTTP conventions'
/// attributes, continuing the caller's trace when the request carries `traceparent`.
fn server_span(request: &Request, id: &str) -> tracing::Span {
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    // Displayed, not made a string: nothing formats it unless a log line shows the span.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| tracing::field::display(info.0.ip()));
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        request_id = %id,
        http.request.method = %method,
        http.route = %route,
        url.path = %request.uri().path(),
        client.address = client,
        http.response.status_code = tracing::field::Empty,
    );
    crate::otel::continue_from_headers(&span, request.headers());
    span
}

/// Whether a client-supplied request id may be logged and stored as it is.
pub fn is_safe_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
        })
}

/// The client's address as the socket saw it, when the server recorded it.
pub fn client_ip(request_extensions: &axum::http::Extensions) -> Option<String> {
    request_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
}

async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::method_not_allowed()
}

fn panic_to_problem(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    Problem::internal(&"handler panicked").into_response()
}

/// Wraps a service's routes with the shared layers and adds `/healthz`, `/readyz` and
/// `/metrics`, with no bound on requests in flight and no token check (see
/// [`with_plumbing_bounded`] for both). `service` (`command-api`, `query-api`, `projector`) is
/// the `service` label of the request and pool metrics.
pub fn with_plumbing(service: &'static str, routes: Router, pool: PgPool) -> Router {
    with_plumbing_bounded(service, routes, pool, &AdmissionSettings::unbounded(), None)
}

/// [`with_plumbing`], with `admission` bounding the requests `routes` work on at once (by
/// default two per connection of `pool`): a request over the bound is refused at once with 503
/// and `Retry-After` (see [`crate::shed`]); and, with `admission.request_timeout`, cutting off
/// with 503 a request of `routes` not answered that long after it arrived
/// ([`crate::deadline`]). Health, readiness, metrics and problem pages are outside both, so
/// they answer under overload. With `authentication`, a request of `routes` is authenticated
/// first: a bad token is a 401 before anything else is looked at.
pub fn with_plumbing_bounded(
    service: &'static str,
    routes: Router,
    pool: PgPool,
    admission: &AdmissionSettings,
    authentication: Option<Authentication>,
) -> Router {
    // Install the recorder before the first request records anything.
    let _ = metrics_handle();
    let pool_size = pool.options().get_max_connections();
    let ops = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(move |State(pool): State<PgPool>| async move {
                record_pool(service, &pool);
                metrics_handle().render()
            }),
        )
        .route("/problems/{name}", get(problem_page))
        .with_state(pool);
    let plumbing = Plumbing {
        service,
        admission: admission
            .limit(pool_size)
            .map(|limit| Admission::new(limit, admission.queue_wait).serving(service)),
        request_timeout: admission.request_timeout,
        authentication,
    };
    routes
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(plumbing, plumb))
}

/// The routes [`with_plumbing`] adds, which answer whatever the load: never refused by the
/// bound on requests in flight.
pub const OPS_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics", "/problems/{name}"];

/// A problem type's documentation, so each `type` in an error answer resolves to its page.
async fn problem_page(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match crate::problem::page(&name) {
        Some(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/markdown; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        None => Problem::not_found("no such problem type").into_response(),
    }
}

async fn readyz(State(pool): State<PgPool>) -> Response {
    let check = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&pool),
    );
    match check.await {
        Ok(Ok(_)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            Problem::unavailable("database unreachable", 1).into_response()
        }
        Err(_) => Problem::unavailable("database did not answer in time", 1).into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains in-flight requests. At
/// most [`crate::shed::MAX_CONNECTIONS`] connections are open at once.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;

    // `tap_io` only so that axum gives the client's address (`ConnectInfo<SocketAddr>`) for
    // a listener of its own.
    let listener =
        crate::shed::CappedListener::new(listener, crate::shed::MAX_CONNECTIONS).tap_io(|_| {});
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.wait().await })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    fn app(routes: Router) -> Router {
        bounded_app(routes, &AdmissionSettings::unbounded())
    }

    /// The plumbing around `routes`, on a pool that never connects.
    fn bounded_app(routes: Router, admission: &AdmissionSettings) -> Router {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool never connects");
        with_plumbing_bounded("command-api", routes, pool, admission, None)
    }

    async fn call(app: Router, request: Request<Body>) -> (Response, serde_json::Value) {
        let response = app.oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (Response::from_parts(parts, Body::empty()), json)
    }

    /// `GET uri`.
    fn get_request(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    /// `GET uri` with the client's `X-Request-ID`.
    fn get_with_id(uri: &str, request_id: &str) -> Request<Body> {
        Request::get(uri)
            .header("x-request-id", request_id)
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn a_bare_error_status_becomes_problem_json_with_the_request_id() {
        let routes =
            Router::new().route("/slow", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
        let request = get_with_id("/slow", "abc-1");
        let (response, body) = call(app(routes), request).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()["content-type"],
            crate::problem::PROBLEM_JSON
        );
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(body["status"], 503);
        assert_eq!(body["request_id"], "abc-1");
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_counted_500_problem_with_the_request_id() {
        let routes = Router::new().route(
            "/panics-once",
            get(|| async {
                panic!("a handler bug");
                #[expect(unreachable_code, reason = "the handler's type needs a response")]
                StatusCode::OK
            }),
        );
        let request = get_with_id("/panics-once", "boom-1");
        let (response, body) = call(app(routes), request).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["status"], 500);
        assert_eq!(body["request_id"], "boom-1");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let metrics = crate::telemetry::metrics_handle().render();
        assert!(
            metrics
                .lines()
                .any(|line| line.starts_with(metric_names::HTTP_REQUESTS_TOTAL)
                    && line.contains("route=\"/panics-once\"")
                    && line.contains("status=\"500\"")),
            "{metrics}"
        );
    }

    /// A request of `uri` with `Authorization: Bearer {token}`.
    fn get_with_token(uri: &str, token: &str) -> Request<Body> {
        Request::get(uri)
            .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("a valid request")
    }

    #[tokio::test]
    async fn the_plumbing_authenticates_the_routes_but_not_the_exempt_the_ops_or_the_unmatched() {
        use crate::caller::Caller;

        let keys = auth::SigningKeys::from_pem(
            &auth::generate_signing_key_pem(),
            auth::TokenSettings::default(),
        )
        .expect("test setup");
        let now = chrono::Utc::now();
        let account = uuid::Uuid::now_v7();
        let issued = keys
            .issue(
                account,
                uuid::Uuid::now_v7(),
                &[auth::Role::User],
                &["pwd"],
                now,
                now,
            )
            .expect("test setup");
        // One authenticator for the plumbing and the routes' `Caller` extractor.
        let authenticator =
            Authenticator::new(keys.verifier(), crate::revocation::RevocationView::new());
        let routes = Router::new()
            .route(
                "/mine",
                get(async |caller: Caller| axum::Json(caller.actor())),
            )
            .route("/checked", get(async || "reached"))
            .route("/exempt", get(async || "reached"))
            .with_state(authenticator.clone());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool never connects");
        let authentication = Authentication {
            authenticator,
            exempt: &["/exempt"],
        };
        let app = with_plumbing_bounded(
            "command-api",
            routes,
            pool,
            &AdmissionSettings::unbounded(),
            Some(authentication),
        );

        // A route that reads no caller: only the plumbing can refuse its bad token.
        let (refused, body) = call(app.clone(), get_with_token("/checked", "not-a-token")).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(
            refused
                .headers()
                .contains_key(axum::http::header::WWW_AUTHENTICATE),
            "{:?}",
            refused.headers()
        );
        assert_eq!(body["status"], 401);
        assert!(body["request_id"].is_string(), "{body}");

        let (signed_in, body) = call(app.clone(), get_with_token("/mine", &issued.token)).await;
        assert_eq!(signed_in.status(), StatusCode::OK);
        assert_eq!(body, account.to_string());

        let (anonymous, body) = call(app.clone(), get_request("/mine")).await;
        assert_eq!(anonymous.status(), StatusCode::OK);
        assert_eq!(body, "anonymous");

        // An exempt route authenticates itself, if at all: a bad token still reaches it.
        for (uri, status) in [
            ("/exempt", StatusCode::OK),
            ("/healthz", StatusCode::OK),
            ("/no-such-route", StatusCode::NOT_FOUND),
        ] {
            let (response, _) = call(app.clone(), get_with_token(uri, "not-a-token")).await;
            assert_eq!(response.status(), status, "{uri}");
        }
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_problems() {
        let routes = Router::new().route("/thing", get(|| async { "ok" }));
        let (missing, body) = call(app(routes.clone()), get_request("/nowhere")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(body["type"], "/problems/not-found");
        let (wrong_method, body) = call(
            app(routes),
            Request::delete("/thing")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["type"], "/problems/method-not-allowed");
        assert!(
            wrong_method.headers()["x-request-id"]
                .to_str()
                .is_ok_and(|id| !id.is_empty())
        );
    }

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_problem_json_with_its_text_as_detail() {
        let routes = Router::new().route(
            "/things/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
        );
        let request = get_request("/things/%FF");
        let (response, body) = call(app(routes), request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()["content-type"],
            crate::problem::PROBLEM_JSON
        );
        assert_eq!(body["status"], 400);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }

    #[tokio::test]
    async fn every_problem_type_resolves_to_its_page() {
        let routes = Router::new();
        let request = get_request("/problems/validation");
        let response = app(routes.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .is_ok_and(|kind| kind.starts_with("text/markdown"))
        );
        let (missing, body) = call(app(routes), get_request("/problems/nonsense")).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(body["type"], "/problems/not-found");
    }

    /// A route that signals `entered` and holds its request until `gate` gets a permit.
    fn holding(entered: Arc<tokio::sync::Notify>, gate: Arc<tokio::sync::Semaphore>) -> Router {
        Router::new().route(
            "/hold/{n}",
            get(move || {
                let (entered, gate) = (Arc::clone(&entered), Arc::clone(&gate));
                async move {
                    entered.notify_one();
                    gate.acquire().await.expect("open").forget();
                    "done"
                }
            }),
        )
    }

    #[tokio::test]
    async fn over_the_bound_a_request_is_refused_at_once_but_health_and_metrics_answer() {
        let entered = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let admission = AdmissionSettings {
            max_in_flight: Some(2),
            queue_wait: Duration::from_millis(5),
            ..AdmissionSettings::default()
        };
        let app = bounded_app(holding(Arc::clone(&entered), Arc::clone(&gate)), &admission);

        // Two requests take both places and stay.
        let mut held = Vec::new();
        for n in 0..2 {
            held.push(tokio::spawn(
                app.clone().oneshot(get_request(&format!("/hold/{n}"))),
            ));
            entered.notified().await;
        }

        // The third is refused at once: 503, Retry-After, problem+json with retry_after.
        let started = Instant::now();
        let request = get_with_id("/hold/2", "shed-1");
        let (refused, body) = call(app.clone(), request).await;
        let waited = started.elapsed();
        assert_retry_after_agrees(&refused, &body);
        assert!(
            waited < Duration::from_millis(500),
            "refused after {waited:?}"
        );
        assert_eq!(refused.headers()["retry-after"], "1");
        assert_eq!(
            refused.headers()["content-type"],
            crate::problem::PROBLEM_JSON
        );
        assert_eq!(body["type"], "/problems/unavailable");
        assert_eq!(body["status"], 503);
        assert_eq!(body["retry_after"], 1);
        assert_eq!(body["request_id"], "shed-1");
        assert_eq!(
            refused.headers()["cache-control"],
            "no-store",
            "a refusal outside the plumbing is never stored either"
        );

        // Health and metrics are outside the bound; the refusal is counted by route.
        let (health, body) = call(app.clone(), get_request("/healthz")).await;
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(body["status"], "ok");
        let metrics = app
            .clone()
            .oneshot(get_request("/metrics"))
            .await
            .expect("infallible");
        assert_eq!(metrics.status(), StatusCode::OK);
        let text = metrics
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(
            text.lines().any(
                |line| line.starts_with("chronicle_http_requests_shed_total")
                    && line.contains("route=\"/hold/{n}\"")
            ),
            "{text}"
        );

        // Once the load is gone, requests are admitted again.
        gate.add_permits(2);
        for request in held {
            let response = request.await.expect("joins").expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
        }
        gate.add_permits(1);
        let (again, _) = call(app, get_request("/hold/3")).await;
        assert_eq!(again.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_waits_for_a_place_freed_within_the_queue_wait() {
        let entered = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let admission = AdmissionSettings {
            max_in_flight: Some(1),
            queue_wait: Duration::from_secs(5),
            ..AdmissionSettings::default()
        };
        let app = bounded_app(holding(Arc::clone(&entered), Arc::clone(&gate)), &admission);
        let first = tokio::spawn(app.clone().oneshot(get_request("/hold/1")));
        entered.notified().await;
        let second = tokio::spawn(app.clone().oneshot(get_request("/hold/2")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(2);
        for request in [first, second] {
            let response = request.await.expect("joins").expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    /// Asserts a 503 problem says when to retry, in the header and the body alike.
    fn assert_retry_after_agrees(response: &Response, body: &serde_json::Value) {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let header = response.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|value| value.parse::<u64>().ok());
        assert!(header.is_some(), "Retry-After in whole seconds");
        assert_eq!(body["retry_after"].as_u64(), header, "{body}");
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_answered_503_with_retry_after_in_header_and_body() {
        let routes = Router::new().route("/stuck", get(std::future::pending::<&'static str>));
        let admission = AdmissionSettings {
            request_timeout: Some(Duration::from_millis(50)),
            ..AdmissionSettings::default()
        };
        let request = get_with_id("/stuck", "late-1");
        let (response, body) = call(bounded_app(routes, &admission), request).await;
        assert_retry_after_agrees(&response, &body);
        assert_eq!(body["type"], "/problems/unavailable");
        assert_eq!(body["request_id"], "late-1");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_answered_503_with_retry_after_in_header_and_body() {
        // The plumbing's pool points at a port nothing listens on.
        let request = get_request("/readyz");
        let (response, body) = call(app(Router::new()), request).await;
        assert_retry_after_agrees(&response, &body);
        assert_eq!(body["type"], "/problems/unavailable");
    }

    #[tokio::test]
    async fn a_layer_retry_after_on_a_bare_503_is_the_bodys_too() {
        let routes = Router::new().route(
            "/busy",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "7")],
                )
            }),
        );
        let request = get_request("/busy");
        let (response, body) = call(app(routes), request).await;
        assert_retry_after_agrees(&response, &body);
        assert_eq!(body["retry_after"], 7);
    }

    #[test]
    fn only_safe_request_ids_are_kept() {
        assert!(is_safe_id("req-123_abc.def:1"));
        assert!(!is_safe_id(""));
        assert!(!is_safe_id("has space"));
        assert!(!is_safe_id(&"a".repeat(129)));
    }
}
