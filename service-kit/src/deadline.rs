//! Request deadlines, measured from a request's arrival at the service: the plumbing stamps
//! [`Arrival`] outside every other layer (admission control included), and [`cut_off`] answers
//! 503 `/problems/unavailable` with `Retry-After` when the routes behind it have not answered
//! by `REQUEST_TIMEOUT_MS` after that. So time a request spent waiting for a place, for a
//! connection or for the CPU counts against its deadline, and no admitted request is answered
//! long after its client has given up.
//!
//! Only for routes whose work may be dropped half-way: reads. The command API does not cut its
//! handlers off (an append already sent may still commit behind a 503); its commands check the
//! deadline themselves up to the append.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::problem::Problem;

/// `REQUEST_TIMEOUT_MS` when unset.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 15_000;

/// When the request arrived, in its extensions: set before admission control and every other
/// layer, so the deadline counts every wait inside the service.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// By when the request must be answered, in the extensions of requests behind [`cut_off`].
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Middleware, outermost: stamps the request's [`Arrival`] (where no admission layer, which
/// stamps it itself, is outermost).
pub async fn stamp_arrival(mut request: Request, next: Next) -> Response {
    stamp(&mut request);
    next.run(request).await
}

/// Records now as the request's [`Arrival`]: for the outermost layer, whichever it is.
pub fn stamp(request: &mut Request) {
    request.extensions_mut().insert(Arrival(Instant::now()));
}

/// Middleware with the timeout as state: runs the request until its [`Arrival`] (now, when
/// unstamped) plus the timeout, then drops it and answers 503 with `Retry-After`, counted in
/// `chronicle_http_requests_timed_out_total{method, route}`.
pub async fn cut_off(
    State(timeout): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    let arrived = request
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |arrival| arrival.0);
    let deadline = arrived + timeout;
    request.extensions_mut().insert(Deadline(deadline));
    let labels = [
        ("method", request.method().to_string()),
        (
            "route",
            request
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned()),
        ),
    ];
    match tokio::time::timeout_at(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!(crate::metric_names::HTTP_REQUESTS_TIMED_OUT_TOTAL, &labels)
                .increment(1);
            Problem::deadline_exceeded(timeout).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::middleware;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_request_past_its_deadline_is_cut_off_and_one_within_it_is_not() {
        let routes = Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .route("/fast", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(
                Duration::from_millis(50),
                cut_off,
            ));
        let slow = routes
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()["retry-after"], "1");
        let fast = routes
            .oneshot(Request::get("/fast").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        assert_eq!(fast.status(), StatusCode::OK);
    }
}
