//! Telemetry end to end: the real OTLP/HTTP exporter's batch reaches a receiver, a request's
//! spans carry the caller's trace with export off (the id layers, no SDK), and log lines
//! written while serving a request carry its ids.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message as _;
use service_kit::otel;
use service_kit::telemetry::{LogFormat, id_layers, log_layer, trace_layers};
use tower::ServiceExt as _;
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// A target of ours: the span layers leave out other crates' spans, this test's included.
const OURS: &str = "service_kit::tests";

fn traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// The shared plumbing around `routes`, on a pool that never connects.
fn app(routes: Router) -> Router {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    service_kit::http::with_plumbing("command-api", routes, pool)
}

#[tokio::test]
async fn the_otlp_http_exporter_delivers_a_request_span_to_a_receiver() {
    // The receiver: decodes each OTLP/HTTP protobuf body it is sent.
    let received = Arc::new(Mutex::new(Vec::<ExportTraceServiceRequest>::new()));
    let sink = Arc::clone(&received);
    let receiver = Router::new().route(
        "/v1/traces",
        post(move |body: bytes::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(request) => {
                        sink.lock().unwrap().push(request);
                        (
                            StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            Vec::new(),
                        )
                    }
                    Err(_) => (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        Vec::new(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, receiver).await });

    let provider =
        service_kit::otel::exporting_provider(Some(&format!("http://{addr}/v1/traces"))).unwrap();
    let subscriber = tracing_subscriber::registry().with(trace_layers(&provider));
    let routes = Router::new().route("/things/{id}", get(|| async { "ok" }));
    let request = Request::get("/things/7")
        .header("traceparent", traceparent())
        .body(Body::empty())
        .unwrap();
    // This thread's subscriber: the test runtime runs the request on this thread.
    let guard = tracing::subscriber::set_default(subscriber);
    let response = app(routes).oneshot(request).await.unwrap();
    drop(guard);
    assert_eq!(response.status(), StatusCode::OK);
    // Shutting down flushes the batch; it blocks on the HTTP call (which this runtime's
    // receiver answers), so off the runtime.
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();

    let requests = received.lock().unwrap().clone();
    let spans: Vec<_> = requests
        .iter()
        .flat_map(|request| &request.resource_spans)
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .collect();
    let server_span = spans
        .iter()
        .find(|span| span.name == "GET /things/{id}")
        .unwrap_or_else(|| panic!("no server span in {requests:#?}"));
    assert_eq!(hex(&server_span.trace_id), CALLER_TRACE);
    assert_eq!(hex(&server_span.parent_span_id), CALLER_SPAN);
    // SPAN_KIND_SERVER
    assert_eq!(server_span.kind, 2);
    let service_name = requests[0].resource_spans[0]
        .resource
        .as_ref()
        .and_then(|resource| {
            resource
                .attributes
                .iter()
                .find(|attribute| attribute.key == "service.name")
        })
        .and_then(|attribute| attribute.value.clone());
    assert!(service_name.is_some(), "{requests:#?}");
    server.abort();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A writer keeping every line written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Serves one request with a handler that logs a line, under `format`, with the layers of an
/// exporting service or (`exported` false) of one that does not export (the id layers); returns
/// the captured lines and the (trace id, span id) the handler ran in.
async fn log_during_request(format: LogFormat, exported: bool) -> (String, (String, String)) {
    let captured = Captured::default();
    let provider = SdkTracerProvider::builder().build();
    let traces = if exported {
        trace_layers(&provider).boxed()
    } else {
        id_layers().boxed()
    };
    let subscriber = tracing_subscriber::registry()
        .with(log_layer(format, captured.clone()))
        .with(traces);
    let seen = Arc::new(Mutex::new(None));
    let seen_in_handler = Arc::clone(&seen);
    let routes = Router::new().route(
        "/things/{id}",
        get(move || {
            let seen = Arc::clone(&seen_in_handler);
            async move {
                *seen.lock().unwrap() = service_kit::otel::current_ids();
                tracing::info!(thing = 7, "looked the thing up");
                "ok"
            }
        }),
    );
    let request = Request::get("/things/7")
        .header("traceparent", traceparent())
        .header("x-request-id", "log-test-1")
        .body(Body::empty())
        .unwrap();
    let guard = tracing::subscriber::set_default(subscriber);
    let response = app(routes).oneshot(request).await.unwrap();
    drop(guard);
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let ids = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the handler ran in a span");
    (text, ids)
}

#[tokio::test]
async fn a_json_log_line_written_while_serving_carries_request_trace_and_span_ids() {
    for exported in [true, false] {
        let (text, (trace_id, span_id)) = log_during_request(LogFormat::Json, exported).await;
        assert_eq!(trace_id, CALLER_TRACE);
        assert_ne!(
            span_id, CALLER_SPAN,
            "the server's own span, not the caller's"
        );
        let line: serde_json::Value = text
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|line| line["message"] == "looked the thing up")
            .unwrap_or_else(|| panic!("no such line in {text}"));
        assert_eq!(line["request_id"], "log-test-1", "{line}");
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
        assert_eq!(line["span_id"], span_id.as_str(), "{line}");
        assert_eq!(line["thing"], 7, "{line}");
    }
}

#[tokio::test]
async fn a_text_log_line_written_while_serving_carries_request_trace_and_span_ids() {
    for exported in [true, false] {
        let (text, (trace_id, span_id)) = log_during_request(LogFormat::Text, exported).await;
        let line = text
            .lines()
            .find(|line| line.contains("looked the thing up"))
            .unwrap_or_else(|| panic!("no such line in {text}"));
        for pair in [
            "request_id=log-test-1".to_owned(),
            format!("trace_id={trace_id}"),
            format!("span_id={span_id}"),
        ] {
            assert!(line.contains(&pair), "{pair} missing from {line}");
        }
    }
}

/// What a handler saw of its trace context: the server span's `traceparent`, and that of a span
/// of ours opened inside it (as the command span is).
#[derive(Debug, Clone, Default)]
struct Seen {
    server: Option<String>,
    inner: Option<String>,
    inner_ids: Option<(String, String)>,
}

/// Serves `GET /things/7` (with `traceparent` when given) under the id layers alone, with a
/// handler recording what it saw.
async fn seen_by_handler(traceparent: Option<&str>) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen_in_handler = Arc::clone(&seen);
    let routes = Router::new().route(
        "/things/{id}",
        get(move || {
            let seen = Arc::clone(&seen_in_handler);
            async move {
                let server = otel::current_traceparent();
                let inner = tracing::info_span!(target: OURS, "command");
                let (traceparent, ids) =
                    inner.in_scope(|| (otel::current_traceparent(), otel::current_ids()));
                *seen.lock().unwrap() = Seen {
                    server,
                    inner: traceparent,
                    inner_ids: ids,
                };
                "ok"
            }
        }),
    );
    let mut request = Request::get("/things/7");
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let subscriber = tracing_subscriber::registry().with(id_layers());
    let guard = tracing::subscriber::set_default(subscriber);
    let response = app(routes)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    drop(guard);
    assert_eq!(response.status(), StatusCode::OK);
    seen.lock().unwrap().clone()
}

/// The (version, trace id, span id, flags) of a `traceparent`.
fn parts(traceparent: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[tokio::test]
async fn with_the_id_layers_a_server_span_continues_the_callers_trace_and_flags() {
    for flags in ["01", "00"] {
        let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}");
        let seen = seen_by_handler(Some(&sent)).await;
        let server = seen.server.expect("the server span has a context");
        let (version, trace_id, span_id, server_flags) = parts(&server);
        assert_eq!(version, "00");
        assert_eq!(trace_id, CALLER_TRACE, "{server}");
        assert_eq!(
            server_flags, flags,
            "the caller's sampling decision, {server}"
        );
        assert_ne!(span_id, CALLER_SPAN, "a span of its own, {server}");
        assert_ne!(span_id, "0000000000000000");
        assert_eq!(span_id.len(), 16);

        let inner = seen.inner.expect("the inner span has a context");
        let (_, inner_trace, inner_span, inner_flags) = parts(&inner);
        assert_eq!(inner_trace, CALLER_TRACE, "{inner}");
        assert_eq!(inner_flags, flags, "{inner}");
        assert_ne!(inner_span, span_id, "the inner span's own id");
        assert_ne!(inner_span, CALLER_SPAN);
        assert_eq!(seen.inner_ids, Some((inner_trace, inner_span)));
    }
}

#[tokio::test]
async fn with_the_id_layers_a_request_without_a_valid_traceparent_starts_a_trace() {
    for sent in [
        None,
        Some("00-zz-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let seen = seen_by_handler(sent).await;
        let server = seen.server.expect("the server span has a context");
        let (_, trace_id, span_id, flags) = parts(&server);
        assert_ne!(trace_id, CALLER_TRACE);
        assert_ne!(trace_id, "00000000000000000000000000000000");
        assert_eq!(trace_id.len(), 32);
        assert!(
            trace_id.bytes().all(|byte| byte.is_ascii_hexdigit()),
            "{server}"
        );
        assert_ne!(span_id, "0000000000000000");
        assert_eq!(flags, "00", "not sampled: nothing records it, {server}");
        let inner = seen.inner.expect("the inner span has a context");
        assert_eq!(parts(&inner).1, trace_id, "one trace, {sent:?}");
    }
}

#[test]
fn with_the_id_layers_a_span_continued_from_a_stored_traceparent_carries_it_out() {
    let subscriber = tracing_subscriber::registry().with(id_layers());
    tracing::subscriber::with_default(subscriber, || {
        let stored = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
        let span = tracing::info_span!(target: OURS, parent: None, "publish");
        otel::continue_from(&span, &stored);
        let (_, trace_id, span_id, flags) = parts(&otel::traceparent_of(&span).unwrap());
        assert_eq!((trace_id.as_str(), flags.as_str()), (CALLER_TRACE, "01"));
        assert_ne!(span_id, CALLER_SPAN);
        let mut injected = Vec::new();
        otel::inject(&span, |key, value| injected.push((key.to_owned(), value)));
        assert_eq!(
            injected,
            vec![(
                "traceparent".to_owned(),
                otel::traceparent_of(&span).unwrap()
            )]
        );
        // A malformed one changes nothing; a batch span's links are not kept (nothing would
        // export them), which must not fail either.
        let other = tracing::info_span!(target: OURS, parent: None, "batch");
        let before = otel::traceparent_of(&other).unwrap();
        otel::continue_from(&other, "00-zz-01");
        otel::link_each(&other, [stored.as_str()]);
        assert_eq!(otel::traceparent_of(&other).unwrap(), before);
        // Outside any span there is no context.
        assert_eq!(otel::current_traceparent(), None);
        assert_eq!(otel::current_ids(), None);
    });
}

#[tokio::test]
async fn with_the_id_layers_a_statement_is_timed_for_the_service_it_ran_for() {
    // Behind the id layers' filter too, whose spans the statement events share it with.
    let subscriber = tracing_subscriber::registry().with(id_layers());
    let guard = tracing::subscriber::set_default(subscriber);
    let timed = |text: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with("chronicle_db_query_duration_seconds_count{"))
            .filter(|line| {
                line.contains(r#"service="projector""#) && line.contains(r#"operation="DELETE""#)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let before = timed(&service_kit::telemetry::metrics_handle().render());
    let span = tracing::info_span!(target: OURS, "work");
    service_kit::sql_metrics::in_service("projector", async {
        // What sqlx reports once a statement is done.
        tracing::debug!(
            target: "sqlx::query",
            summary = "DELETE FROM somewhere WHERE",
            elapsed_secs = 0.002_f64,
            rows_affected = 1_u64,
        );
    })
    .instrument(span)
    .await;
    drop(guard);
    let after = timed(&service_kit::telemetry::metrics_handle().render());
    assert_eq!(after - before, 1.0, "one statement timed");
}
