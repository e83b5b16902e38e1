//! Request deadlines, measured from a request's arrival at the service: the plumbing stamps
//! [`Arrival`] outside every other layer (admission control included), and [`within`] answers
//! 503 `/problems/unavailable` with `Retry-After` when the routes behind it have not answered
//! by `REQUEST_TIMEOUT_MS` after that. So time a request spent waiting for a place, for a
//! connection or for the CPU counts against its deadline, and no admitted request is answered
//! long after its client has given up.
//!
//! Only for routes whose work may be dropped half-way: reads. The command API does not cut its
//! handlers off (an append already sent may still commit behind a 503); its commands check the
//! deadline themselves up to the append.

use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::problem::Problem;

/// `REQUEST_TIMEOUT_MS` when unset.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 15_000;

/// When the request arrived, in its extensions: set before admission control and every other
/// layer, so the deadline counts every wait inside the service.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// By when the request must be answered, in the extensions of a request run [`within`] it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Records now as the request's [`Arrival`]: for the outermost layer, whichever it is.
pub fn stamp(request: &mut Request) {
    request.extensions_mut().insert(Arrival(Instant::now()));
}

/// Sets the request's [`Deadline`]: its [`Arrival`] (now, when unstamped) plus `timeout`.
pub fn stamp_deadline(request: &mut Request, timeout: Duration) -> Instant {
    let arrived = request
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |arrival| arrival.0);
    let deadline = arrived + timeout;
    request.extensions_mut().insert(Deadline(deadline));
    deadline
}

/// Runs `work` (the request of `method` to `route`) until `deadline`, then drops it and
/// answers 503 with `Retry-After`, counted in
/// `chronicle_http_requests_timed_out_total{method, route}`; `timeout` is what the answer says
/// the deadline was. [`crate::http::plumb`] runs every request of a service's own routes in
/// it.
pub async fn within(
    deadline: Instant,
    timeout: Duration,
    method: &Method,
    route: &str,
    work: impl Future<Output = Response>,
) -> Response {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(response) => response,
        Err(_) => {
            let labels = [("method", method.to_string()), ("route", route.to_owned())];
            metrics::counter!(crate::metric_names::HTTP_REQUESTS_TIMED_OUT_TOTAL, &labels)
                .increment(1);
            Problem::deadline_exceeded(timeout).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[tokio::test]
    async fn work_past_its_deadline_is_cut_off_and_work_within_it_is_not() {
        let timeout = Duration::from_millis(50);
        let slow = within(
            Instant::now() + timeout,
            timeout,
            &Method::GET,
            "/slow",
            std::future::pending::<Response>(),
        )
        .await;
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(slow.headers()["retry-after"], "1");
        let fast = within(
            Instant::now() + timeout,
            timeout,
            &Method::GET,
            "/fast",
            async { "ok".into_response() },
        )
        .await;
        assert_eq!(fast.status(), StatusCode::OK);
    }
}
