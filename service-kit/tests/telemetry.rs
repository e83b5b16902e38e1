//! Telemetry end to end: the real OTLP/HTTP exporter's batch reaches a receiver, and log lines
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
use service_kit::telemetry::{LogFormat, log_layer, trace_layers, unexported_trace_layers};
use tower::ServiceExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

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
/// exporting service or (`exported` false) of one that does not export; returns the captured
/// lines and the (trace id, span id) the handler ran in.
async fn log_during_request(format: LogFormat, exported: bool) -> (String, (String, String)) {
    let captured = Captured::default();
    let provider = SdkTracerProvider::builder().build();
    let traces = if exported {
        trace_layers(&provider).boxed()
    } else {
        unexported_trace_layers(&provider).boxed()
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
