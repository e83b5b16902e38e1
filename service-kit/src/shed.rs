//! Admission control: a bound on the requests a service works on at once. A request that finds
//! the bound reached waits at most a few milliseconds for a place, then is refused with 503
//! `/problems/unavailable` and `Retry-After: 1` without touching the database, so that under
//! overload refusals are fast, memory stays bounded and the requests admitted still get the
//! database connections they need within their deadline.
//!
//! [`crate::http::with_plumbing_bounded`] puts the bound outside every other layer, so a refusal
//! costs as little as can be, and around a service's own routes only: `/healthz`, `/readyz`,
//! `/metrics` and the problem pages stay answerable under overload.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::env::{EnvError, string_or, var_or};
use crate::metric_names::{HTTP_REQUESTS_IN_FLIGHT, HTTP_REQUESTS_SHED_TOTAL, HTTP_REQUESTS_TOTAL};
use crate::problem::Problem;

/// Requests in flight per pooled connection when `MAX_IN_FLIGHT` is unset.
pub const IN_FLIGHT_PER_CONNECTION: usize = 2;

/// `ADMISSION_WAIT_MS` when unset.
pub const DEFAULT_QUEUE_WAIT_MS: u64 = 0;

/// The `Retry-After` of a refused request, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// How many requests a service admits at once, from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// `MAX_IN_FLIGHT`: requests worked on at once; `None` (unset) for
    /// [`IN_FLIGHT_PER_CONNECTION`] × the pool's maximum connections, `Some(0)` for no bound.
    pub max_in_flight: Option<usize>,
    /// `ADMISSION_WAIT_MS` (default 0): how long a request that finds the bound reached waits
    /// for a place before it is refused.
    pub queue_wait: Duration,
    /// `REQUEST_TIMEOUT_MS` (default 15000; 0 for none): the deadline of a request from its
    /// arrival, after which [`crate::deadline::within`] answers 503 in its place. `None`
    /// where the handlers keep their own deadline (the command API's appends).
    pub request_timeout: Option<Duration>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self {
            max_in_flight: None,
            queue_wait: Duration::from_millis(DEFAULT_QUEUE_WAIT_MS),
            request_timeout: Some(Duration::from_millis(
                crate::deadline::DEFAULT_REQUEST_TIMEOUT_MS,
            )),
        }
    }
}

impl AdmissionSettings {
    /// No bound (`MAX_IN_FLIGHT=0`): for in-process tests that fire more requests at once than
    /// their small pools would admit.
    pub fn unbounded() -> Self {
        Self {
            max_in_flight: Some(0),
            ..Self::default()
        }
    }

    /// Reads `MAX_IN_FLIGHT`, `ADMISSION_WAIT_MS` and `REQUEST_TIMEOUT_MS`; unset or empty
    /// variables take their defaults.
    ///
    /// # Errors
    ///
    /// A variable that is set but does not parse.
    pub fn from_env() -> Result<Self, EnvError> {
        let max_in_flight = if string_or("MAX_IN_FLIGHT", "").is_empty() {
            None
        } else {
            Some(var_or("MAX_IN_FLIGHT", 0)?)
        };
        let request_timeout = var_or(
            "REQUEST_TIMEOUT_MS",
            crate::deadline::DEFAULT_REQUEST_TIMEOUT_MS,
        )?;
        Ok(Self {
            max_in_flight,
            queue_wait: Duration::from_millis(var_or("ADMISSION_WAIT_MS", DEFAULT_QUEUE_WAIT_MS)?),
            request_timeout: (request_timeout > 0).then(|| Duration::from_millis(request_timeout)),
        })
    }

    /// The bound for a service whose pool opens at most `pool_size` connections; `None` for
    /// no bound.
    pub fn limit(&self, pool_size: u32) -> Option<usize> {
        match self.max_in_flight {
            Some(0) => None,
            Some(limit) => Some(limit),
            None => {
                let pool_size = usize::try_from(pool_size.max(1)).unwrap_or(usize::MAX);
                Some(pool_size.saturating_mul(IN_FLIGHT_PER_CONNECTION))
            }
        }
    }
}

/// The places of one service ([`admitted`]).
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    queue_wait: Duration,
    service: &'static str,
    /// `chronicle_http_requests_in_flight{service}`, registered at the first admitted request.
    in_flight: Arc<OnceLock<metrics::Gauge>>,
}

impl Admission {
    /// `limit` places; a request waits at most `queue_wait` for one.
    pub fn new(limit: usize, queue_wait: Duration) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            queue_wait,
            service: "unnamed",
            in_flight: Arc::default(),
        }
    }

    /// Names the service whose requests it bounds, for the `service` label of its metrics.
    #[must_use]
    pub fn serving(mut self, service: &'static str) -> Self {
        self.service = service;
        self.in_flight = Arc::default();
        self
    }

    /// The gauge of this service's requests in flight.
    fn in_flight_gauge(&self) -> &metrics::Gauge {
        self.in_flight.get_or_init(|| {
            // A gauge registered before the recorder is installed would never record.
            let _ = crate::telemetry::metrics_handle();
            metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT, "service" => self.service)
        })
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests being worked on now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits().min(self.limit)
    }

    async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::NoPermits) if !self.queue_wait.is_zero() => {
                tokio::time::timeout(self.queue_wait, Arc::clone(&self.permits).acquire_owned())
                    .await
                    .ok()?
                    .ok()
            }
            Err(_) => None,
        }
    }
}

/// Runs `serve` on `request` when a place is free (or frees within the queue wait), else
/// answers 503 `/problems/unavailable` with `Retry-After: 1` at once, counted in
/// `chronicle_http_requests_shed_total{service, method, route}` (and in
/// `chronicle_http_requests_total`). Requests for [`crate::http::OPS_ROUTES`] and for no route
/// at all are not bounded. The plumbing's one layer ([`crate::http::plumb`]) calls it first,
/// so a refusal costs as little as can be.
pub async fn admitted<F: Future<Output = Response>>(
    admission: &Admission,
    request: Request,
    serve: impl FnOnce(Request) -> F,
) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) if !crate::http::OPS_ROUTES.contains(&path.as_str()) => path.as_str(),
        _ => return serve(request).await,
    };
    let Some(permit) = admission.enter().await else {
        return refuse(admission, &request, route.to_owned());
    };
    let seat = Seat {
        permits: Arc::clone(&admission.permits),
        held: Arc::new(std::sync::Mutex::new(Some(permit))),
    };
    let place = Place {
        in_flight: admission.in_flight_gauge().clone(),
    };
    place.in_flight.increment(1);
    let response = SEAT.scope(seat.clone(), serve(request)).await;
    seat.release();
    drop(place);
    response
}

/// An admitted request's place, counted in `chronicle_http_requests_in_flight` until the
/// request is answered or dropped (the client went away); its permit is its [`Seat`].
struct Place {
    in_flight: metrics::Gauge,
}

tokio::task_local! {
    /// The seat of the request the current task serves, set by [`admitted`].
    static SEAT: Seat;
}

/// An admitted request's permit, which the request may give back while it waits on something
/// that uses no database connection ([`without_place`]).
#[derive(Debug, Clone)]
struct Seat {
    permits: Arc<Semaphore>,
    held: Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>,
}

impl Seat {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        // Only ever holds an Option: a panic elsewhere cannot leave it half-written.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(&self) {
        drop(self.held().take());
    }

    async fn retake(&self) {
        if self.held().is_some() {
            return;
        }
        // Waits rather than refuses: the request was admitted, and what it does next (a query)
        // is what the bound exists for. Its deadline still cuts it off.
        if let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await {
            *self.held() = Some(permit);
        }
    }
}

/// Runs `wait` without holding the current request's admission place, and takes a place
/// again (waiting for one if need be) before returning. For waits that hold no database
/// connection, such as the query API's consistency-token wait: a request that only waits for
/// an announcement must not keep a request that needs the database out. Outside a request
/// admitted by [`admitted`], it only runs `wait`.
pub async fn without_place<F: std::future::Future>(wait: F) -> F::Output {
    let seat = SEAT.try_with(Seat::clone).ok();
    if let Some(seat) = &seat {
        seat.release();
    }
    let output = wait.await;
    if let Some(seat) = &seat {
        seat.retake().await;
    }
    output
}

impl Drop for Place {
    fn drop(&mut self) {
        self.in_flight.decrement(1);
    }
}

/// The refusal, rendered here since no other layer runs for it: problem+json with the request
/// id (the client's when safe, else a new one).
fn refuse(admission: &Admission, request: &Request, route: String) -> Response {
    let method = request.method().to_string();
    let labels = [
        ("service", admission.service.to_owned()),
        ("method", method),
        ("route", route),
    ];
    metrics::counter!(HTTP_REQUESTS_SHED_TOTAL, &labels).increment(1);
    let [service, method, route] = labels;
    let labels = [service, method, route, ("status", "503".to_owned())];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    let id = request
        .headers()
        .get(&crate::http::X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| crate::http::is_safe_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let mut response = refusal(admission.limit).render(Some(&id));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(crate::http::X_REQUEST_ID.clone(), value);
    }
    response
}

/// The answer to a request refused for want of a place.
pub fn refusal(limit: usize) -> Problem {
    Problem::unavailable(
        format!("the service is working on as many requests as it admits ({limit}); retry later"),
        RETRY_AFTER_SECS,
    )
}

/// Connections a service holds open at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4096;

/// A listener holding at most a fixed number of connections open: past it, it accepts no more
/// until one closes. What a connection costs (buffers, a task) is so bounded whatever the
/// clients do; the bound is well above what [`admitted`] lets in, so it does not decide who is
/// served, only how much memory the waiting can take.
#[derive(Debug)]
pub struct CappedListener {
    listener: TcpListener,
    places: Arc<Semaphore>,
}

impl CappedListener {
    /// `listener`, holding at most `limit` connections open.
    pub fn new(listener: TcpListener, limit: usize) -> Self {
        Self {
            listener,
            places: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so this waits for a place and always gets one.
        let place = Arc::clone(&self.places).acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        // Answers are written whole: nothing to gain from Nagle's algorithm, only delay.
        let _ = stream.set_nodelay(true);
        (
            CappedStream {
                stream,
                _place: place,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection of a [`CappedListener`]; gives its place back when closed.
#[derive(Debug)]
pub struct CappedStream {
    stream: TcpStream,
    _place: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for CappedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bound_follows_the_pool_and_zero_means_none() {
        let default = AdmissionSettings::default();
        assert_eq!(default.limit(8), Some(16));
        assert_eq!(default.limit(0), Some(IN_FLIGHT_PER_CONNECTION));
        let fixed = AdmissionSettings {
            max_in_flight: Some(10),
            ..default
        };
        assert_eq!(fixed.limit(8), Some(10));
        assert_eq!(AdmissionSettings::unbounded().limit(8), None);
    }

    #[tokio::test]
    async fn a_place_freed_within_the_queue_wait_is_taken_and_none_after_it() {
        let admission = Admission::new(1, Duration::from_millis(500));
        let first = admission.enter().await.expect("a free place");
        assert_eq!(admission.in_flight(), 1);
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.enter().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(
            waiting.await.expect("joins"),
            "admitted once the place freed"
        );

        let hurried = Admission::new(1, Duration::ZERO);
        let _held = hurried.enter().await.expect("a free place");
        assert!(hurried.enter().await.is_none(), "no wait: refused at once");
    }

    #[tokio::test]
    async fn a_request_waiting_without_its_place_lets_another_in_and_takes_one_back() {
        let admission = Admission::new(1, Duration::ZERO);
        let entered = Arc::new(tokio::sync::Notify::new());
        let leave = Arc::new(tokio::sync::Notify::new());
        let router = axum::Router::new()
            .route(
                "/wait",
                axum::routing::get({
                    let (entered, leave) = (Arc::clone(&entered), Arc::clone(&leave));
                    move || async move {
                        without_place(async {
                            entered.notify_one();
                            leave.notified().await;
                        })
                        .await;
                    }
                }),
            )
            .route("/quick", axum::routing::get(|| async {}))
            .layer(axum::middleware::from_fn_with_state(
                admission.clone(),
                |axum::extract::State(admission): axum::extract::State<Admission>,
                 request: Request,
                 next: axum::middleware::Next| async move {
                    admitted(&admission, request, |request| next.run(request)).await
                },
            ));
        let call = |uri: &'static str| {
            let router = router.clone();
            async move {
                let request = Request::builder()
                    .uri(uri)
                    .body(axum::body::Body::empty())
                    .expect("a request");
                match tower::ServiceExt::oneshot(router, request).await {
                    Ok(response) => response.status(),
                    Err(never) => match never {},
                }
            }
        };
        let waiting = tokio::spawn(call("/wait"));
        entered.notified().await;
        // The waiter gave its only place back: another request is admitted meanwhile.
        assert_eq!(call("/quick").await, axum::http::StatusCode::OK);
        assert!(!waiting.is_finished());
        leave.notify_one();
        assert_eq!(waiting.await.expect("joins"), axum::http::StatusCode::OK);
        assert_eq!(admission.in_flight(), 0, "every place given back");
    }

    #[tokio::test]
    async fn a_capped_listener_accepts_no_more_connections_than_its_places() {
        use axum::serve::Listener as _;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let mut capped = CappedListener::new(listener, 1);
        let _first_client = TcpStream::connect(addr).await.expect("connects");
        let (first, _) = capped.accept().await;
        // The second client connects (the kernel queues it) but is not accepted while the
        // first connection is open.
        let _second_client = TcpStream::connect(addr).await.expect("connects");
        let mut second = Box::pin(capped.accept());
        assert!(
            futures_poll_once(second.as_mut()).await.is_none(),
            "accepted past the cap"
        );
        drop(first);
        let (_second, _) = second.await;
    }

    /// Polls `future` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| match Pin::new(&mut future).poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
