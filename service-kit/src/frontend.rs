//! What browsers need of both APIs (FRONTEND.md, "Backoff and caching"): CORS for the
//! configured origins, compression of larger JSON answers, and `Cache-Control: no-store` on
//! every problem. [`layers`] mounts all three, outermost, so a refusal of the plumbing (a shed
//! 503, an unknown route) is readable by a browser and never cached either.
//!
//! Configuration (environment variables):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CORS_ALLOWED_ORIGINS` | empty (no cross-origin caller) | comma-separated origins (`https://app.example.com`) whose browser pages may call the API, with credentials (the refresh cookie); the dev runner defaults to [`DEV_ORIGINS`] |

use std::time::Duration;

use axum::Router;
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

use crate::env::EnvError;
use crate::problem::PROBLEM_JSON;

/// The origins the dev runner allows when `CORS_ALLOWED_ORIGINS` is unset: Vite's dev server
/// and a static server for the built PWA.
pub const DEV_ORIGINS: &[&str] = &["http://localhost:5173", "http://localhost:8000"];

/// Answers smaller than this are sent as they are: compressing them saves less than it costs.
pub const COMPRESS_ABOVE_BYTES: u64 = 1024;

/// The request headers a browser may send (the preflight allows them).
pub const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "x-consistency-token",
];

/// The response headers a page's script may read.
pub const EXPOSED_HEADERS: &[&str] = &[
    "etag",
    "location",
    "link",
    "retry-after",
    "x-request-id",
    "x-consistency-token",
    "idempotent-replayed",
];

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Which browser origins may call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSettings {
    /// Exact origins (`scheme://host[:port]`); none means no cross-origin caller.
    pub allowed_origins: Vec<HeaderValue>,
}

impl CorsSettings {
    /// `CORS_ALLOWED_ORIGINS`, or no origin when unset.
    ///
    /// # Errors
    ///
    /// An entry is not an origin.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_env_or(&[])
    }

    /// `CORS_ALLOWED_ORIGINS`, or `default` when unset or empty (the dev runner's
    /// [`DEV_ORIGINS`]).
    ///
    /// # Errors
    ///
    /// An entry is not an origin.
    pub fn from_env_or(default: &[&str]) -> Result<Self, EnvError> {
        let value = std::env::var("CORS_ALLOWED_ORIGINS")
            .ok()
            .filter(|value| !value.trim().is_empty())
            .unwrap_or_else(|| default.join(","));
        Self::parse(&value).map_err(|reason| EnvError {
            name: "CORS_ALLOWED_ORIGINS".to_owned(),
            value,
            reason,
        })
    }

    /// Comma-separated origins.
    ///
    /// # Errors
    ///
    /// An entry is not `http(s)://host[:port]` without a path.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed_origins = Vec::new();
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| format!("{origin:?} does not start with http:// or https://"))?;
            if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
                return Err(format!(
                    "{origin:?} is not an origin (scheme://host[:port])"
                ));
            }
            let value = HeaderValue::from_str(origin)
                .map_err(|_| format!("{origin:?} is not a valid header value"))?;
            allowed_origins.push(value);
        }
        Ok(Self { allowed_origins })
    }

    /// The CORS layer: the configured origins only, with credentials, the methods and request
    /// headers of the API, the response headers a client reads; `Vary: Origin` (and the
    /// preflight's request headers) on every answer.
    pub fn layer(&self) -> CorsLayer {
        let names = |names: &'static [&'static str]| -> Vec<HeaderName> {
            names
                .iter()
                .map(|name| HeaderName::from_static(name))
                .collect()
        };
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.allowed_origins.clone()))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(names(ALLOWED_HEADERS))
            .expose_headers(names(EXPOSED_HEADERS))
            // Said only to allowed origins: the header means nothing without a matching
            // `Access-Control-Allow-Origin`, but another origin learns nothing from it either.
            .allow_credentials(AllowCredentials::predicate({
                let allowed = self.allowed_origins.clone();
                move |origin, _| allowed.contains(origin)
            }))
            .max_age(PREFLIGHT_MAX_AGE)
    }
}

/// Whether an answer is JSON (an API answer or a problem): only those are compressed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with(PROBLEM_JSON)
        })
}

/// What is compressed: JSON over [`COMPRESS_ABOVE_BYTES`], not compressed already. Such an
/// answer varies by `Accept-Encoding`, whether or not this request's answer is compressed.
#[derive(Debug, Clone, Copy)]
pub struct Compressible;

impl Predicate for Compressible {
    fn should_compress<B: axum::body::HttpBody>(&self, response: &axum::http::Response<B>) -> bool {
        SizeAbove::new(COMPRESS_ABOVE_BYTES).should_compress(response)
            && is_json(response.headers())
    }
}

/// The compression layer: gzip or br, as the client accepts, for [`Compressible`] answers.
pub fn compression() -> CompressionLayer<Compressible> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        // The fastest levels: answers are small and latency counts more than bytes.
        .quality(CompressionLevel::Fastest)
        .compress_when(Compressible)
}

/// [`compression`] for requests that carry `Accept-Encoding`. One without it accepts identity
/// only, which is what tower-http would send it, and it gets the same headers: `Vary:
/// Accept-Encoding` on a [`Compressible`] answer. What it skips is the layer's body type,
/// 5.8 KiB (a brotli encoder's state, inline) that is moved several times per answer even when
/// nothing is compressed: some 2,400 instructions of a read's 100,000 (docs/PERFORMANCE.md,
/// stop 18).
#[derive(Clone)]
pub struct CompressWhenAsked<S> {
    compressed: tower_http::compression::Compression<S, Compressible>,
    inner: S,
}

impl<S> std::fmt::Debug for CompressWhenAsked<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressWhenAsked").finish_non_exhaustive()
    }
}

impl<S: Clone> CompressWhenAsked<S> {
    /// `inner`, compressed for requests that ask.
    pub fn new(inner: S) -> Self {
        use tower::Layer as _;

        Self {
            compressed: compression().layer(inner.clone()),
            inner,
        }
    }
}

/// A compressed answer, its body boxed as every answer's is.
type Compressed<F> = futures::future::MapOk<
    tower_http::compression::ResponseFuture<F, Compressible>,
    fn(
        axum::http::Response<tower_http::compression::CompressionBody<axum::body::Body>>,
    ) -> Response,
>;

impl<S> tower::Service<axum::extract::Request> for CompressWhenAsked<S>
where
    S: tower::Service<axum::extract::Request, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Either<Compressed<S::Future>, Varied<S::Future>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self.compressed.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.inner.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        use futures::TryFutureExt as _;

        if request.headers().contains_key(header::ACCEPT_ENCODING) {
            let boxed: fn(_) -> Response =
                |response: axum::http::Response<_>| response.map(axum::body::Body::new);
            futures::future::Either::Left(self.compressed.call(request).map_ok(boxed))
        } else {
            let vary: fn(Response) -> Response = vary_accept_encoding_if_compressible;
            futures::future::Either::Right(self.inner.call(request).map_ok(vary))
        }
    }
}

/// What tower-http's compression adds to an answer it leaves as it is.
fn vary_accept_encoding_if_compressible(mut response: Response) -> Response {
    let varies = |response: &Response| {
        response
            .headers()
            .get_all(header::VARY)
            .iter()
            .any(|value| {
                value
                    .as_bytes()
                    .windows(b"accept-encoding".len())
                    .any(|name| name.eq_ignore_ascii_case(b"accept-encoding"))
            })
    };
    if Compressible.should_compress(&response)
        && !response.headers().contains_key(header::CONTENT_ENCODING)
        && !response.headers().contains_key(header::CONTENT_RANGE)
        && !varies(&response)
    {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}

/// Marks a problem answer `Cache-Control: no-store`: an error says something about one moment
/// (an outage, a wait that timed out, a conflict) that no cache should repeat. The plumbing
/// ([`crate::http::plumb`]) applies it to every answer, and [`crate::problem::Problem`]
/// renders with it, which covers the refusals answered outside the plumbing.
pub fn no_store_if_problem(response: &mut Response) {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Wraps an API (with its plumbing, which marks problems never to be stored) in what browsers
/// need: compression outermost, and inside it CORS for `cors`'s origins, except on the paths
/// of `own_cors`, whose routes carry a CORS policy of their own (CSP reports: any origin, no
/// credentials) that a service-wide layer would otherwise pre-empt by answering their
/// preflights first.
pub fn layers(router: Router, cors: &CorsSettings, own_cors: &[&str]) -> Router {
    use tower::{Layer as _, ServiceExt as _};

    // Around the whole router rather than through `Router::layer`, which wraps each route on
    // its own: a route's layers clone the services under them on every request, so each layer
    // added per route makes every other one dearer, where around the router a clone is of an
    // `Arc`. The outer router only holds this as its fallback.
    let with_cors = CorsWhenOriginLayer(cors.layer()).layer(router.clone());
    if own_cors.is_empty() {
        return Router::new().fallback_service(CompressWhenAsked::new(with_cors));
    }
    // Shared: the service below is cloned for every request.
    let own: std::sync::Arc<[String]> = own_cors.iter().map(|path| (*path).to_owned()).collect();
    let choose = tower::service_fn(move |request: axum::extract::Request| {
        if own.iter().any(|path| path == request.uri().path()) {
            futures::future::Either::Left(router.clone().oneshot(request))
        } else {
            futures::future::Either::Right(with_cors.clone().oneshot(request))
        }
    });
    Router::new().fallback_service(CompressWhenAsked::new(choose))
}

/// [`CorsLayer`] for requests that carry `Origin` only. A request without one is not a CORS
/// request (browsers send `Origin` on every cross-origin call and preflight), so it gets
/// nothing of CORS but `Vary: Origin`, which caches need to keep the two kinds of answer
/// apart; tower-http's layer would build and merge its headers for it all the same, which
/// costs a read as much as a query's row decoding.
#[derive(Debug, Clone)]
pub struct CorsWhenOriginLayer(pub CorsLayer);

impl<S: Clone> tower::Layer<S> for CorsWhenOriginLayer {
    type Service = CorsWhenOrigin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsWhenOrigin {
            cors: std::sync::Arc::new(self.0.layer(inner.clone())),
            inner,
        }
    }
}

/// See [`CorsWhenOriginLayer`].
#[derive(Debug, Clone)]
pub struct CorsWhenOrigin<S> {
    /// Shared: the service is cloned for every request, and tower-http's `Cors` holds its
    /// settings (lists of origins and headers) by value. Cloned out only for a CORS request.
    cors: std::sync::Arc<tower_http::cors::Cors<S>>,
    inner: S,
}

/// What a request without `Origin` is answered with: the inner service's answer, varied by
/// `Origin`.
type Varied<F> = futures::future::MapOk<F, fn(Response) -> Response>;

impl<S, B> tower::Service<axum::http::Request<B>> for CorsWhenOrigin<S>
where
    S: tower::Service<axum::http::Request<B>, Response = Response> + Clone,
    B: Default,
{
    type Response = Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        tower::util::Oneshot<tower_http::cors::Cors<S>, axum::http::Request<B>>,
        Varied<S::Future>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        use futures::TryFutureExt as _;
        use tower::ServiceExt as _;

        if request.headers().contains_key(header::ORIGIN) {
            futures::future::Either::Left(self.cors.as_ref().clone().oneshot(request))
        } else {
            let vary: fn(Response) -> Response = vary_origin;
            futures::future::Either::Right(self.inner.call(request).map_ok(vary))
        }
    }
}

fn vary_origin(mut response: Response) -> Response {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    response
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    /// `GET /` answered 200 through [`layers`] for `http://localhost:5173`.
    fn app() -> Router {
        let cors = CorsSettings::parse("http://localhost:5173").expect("an origin");
        layers(
            Router::new().route("/", axum::routing::get(|| async { "ok" })),
            &cors,
            &[],
        )
    }

    async fn send(request: axum::http::Request<axum::body::Body>) -> Response {
        match tower::ServiceExt::oneshot(app(), request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn a_request_without_origin_gets_vary_origin_and_nothing_else_of_cors() {
        let request = axum::http::Request::get("/")
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let vary: Vec<_> = response.headers().get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["origin"]);
        let cors_headers: Vec<_> = response
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors_headers.is_empty(), "{cors_headers:?}");
    }

    #[tokio::test]
    async fn a_request_with_an_allowed_origin_gets_its_cors_headers() {
        let request = axum::http::Request::get("/")
            .header(header::ORIGIN, "http://localhost:5173")
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:5173"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(
            headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .is_ok_and(|exposed| exposed.contains("x-consistency-token"))
        );
        assert!(
            headers
                .get_all(header::VARY)
                .iter()
                .any(|value| value.to_str().is_ok_and(|v| v.contains("origin")))
        );
        let other = axum::http::Request::get("/")
            .header(header::ORIGIN, "https://elsewhere.example")
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = send(other).await;
        assert!(
            response
                .headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
    }

    #[test]
    fn origins_are_parsed_and_anything_else_refused() {
        let settings = CorsSettings::parse(" http://localhost:5173, https://app.example.com ")
            .expect("two origins");
        assert_eq!(settings.allowed_origins.len(), 2);
        assert_eq!(settings.allowed_origins[0], "http://localhost:5173");
        for bad in [
            "localhost:5173",
            "https://app.example.com/",
            "*",
            "https://",
        ] {
            assert!(CorsSettings::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CorsSettings::parse("").expect("none"),
            CorsSettings::default()
        );
    }
}
