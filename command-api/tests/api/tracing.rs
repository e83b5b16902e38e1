//! OpenTelemetry: a command's span tree, and the trace context its events carry.

use std::collections::HashMap;

use axum::http::StatusCode;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sqlx::PgPool;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::helpers::{Call, app};

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|pair| pair.key.as_str() == key)
        .map(|pair| &pair.value)
}

/// The `traceparent` in the metadata of the one project event.
async fn stored_traceparent(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM events WHERE aggregate_type = 'Project'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Whether `ancestor` is `span`'s parent, grandparent, ...
fn descends_from(spans: &HashMap<SpanId, &SpanData>, span: &SpanData, ancestor: SpanId) -> bool {
    let mut parent = span.parent_span_id;
    while parent != SpanId::INVALID {
        if parent == ancestor {
            return true;
        }
        parent = spans
            .get(&parent)
            .map_or(SpanId::INVALID, |up| up.parent_span_id);
    }
    false
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_post_with_a_traceparent_gives_one_trace_from_the_server_span_through_sql_to_the_append(
    pool: PgPool,
) {
    let app = app(&pool);
    // This thread's own subscriber (the test runtime is single-threaded), sampling every
    // span into memory: the global one of the other tests exports nothing.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(service_kit::telemetry::trace_layers(&provider));
    let guard = tracing::subscriber::set_default(subscriber);

    let answer = Call::post("/api/v1/projects")
        .header(
            "traceparent",
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        )
        .header("idempotency-key", "traced-create-1")
        .json(&serde_json::json!({ "name": "Traced" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    drop(guard);
    provider.force_flush().unwrap();
    let finished = exporter.get_finished_spans().unwrap();
    let by_id: HashMap<SpanId, &SpanData> = finished
        .iter()
        .map(|span| (span.span_context.span_id(), span))
        .collect();

    // One trace, the caller's.
    assert!(
        finished
            .iter()
            .all(|span| span.span_context.trace_id().to_string() == CALLER_TRACE),
        "{finished:#?}"
    );

    // The server span continues the caller's span (a remote parent).
    let servers: Vec<&SpanData> = finished
        .iter()
        .filter(|span| span.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(servers.len(), 1, "{finished:#?}");
    let server = servers[0];
    assert_eq!(server.name, "POST /api/v1/projects");
    assert_eq!(server.parent_span_id.to_string(), CALLER_SPAN);
    assert!(server.parent_span_is_remote);
    assert_eq!(
        attribute(server, "http.route")
            .map(Value::as_str)
            .as_deref(),
        Some("/api/v1/projects")
    );
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(&Value::I64(201))
    );
    assert!(attribute(server, "request_id").is_some());

    // The command span under it, with its aggregate and outcome.
    let command = finished
        .iter()
        .find(|span| span.name == "command")
        .expect("a command span");
    assert!(descends_from(
        &by_id,
        command,
        server.span_context.span_id()
    ));
    assert_eq!(
        attribute(command, "aggregate.type")
            .map(Value::as_str)
            .as_deref(),
        Some("Project")
    );
    assert_eq!(
        attribute(command, "outcome").map(Value::as_str).as_deref(),
        Some("ok")
    );

    // No claim before the command: the append's statement records the key (decision 0017).
    assert!(
        finished.iter().all(|span| span.name != "idempotency.claim"),
        "{finished:#?}"
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys \
          WHERE key = 'traced-create-1' AND completed_at IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 1);

    // The append under the command, and the INSERT under the append, with the rows it wrote.
    let append = finished
        .iter()
        .find(|span| span.name == "append")
        .expect("an append span");
    assert_eq!(append.parent_span_id, command.span_context.span_id());
    let statements: Vec<&SpanData> = finished
        .iter()
        .filter(|span| span.span_kind == SpanKind::Client)
        .collect();
    assert!(
        statements.iter().all(|span| {
            attribute(span, "db.system.name") == Some(&Value::from("postgresql"))
                && attribute(span, "db.operation.name").is_some()
                && span.end_time > span.start_time
        }),
        "{statements:#?}"
    );
    let insert = statements
        .iter()
        .find(|span| span.parent_span_id == append.span_context.span_id())
        .expect("a statement span under the append");
    assert!(
        matches!(attribute(insert, "db.response.affected_rows"), Some(Value::I64(rows)) if *rows >= 1)
            || matches!(attribute(insert, "db.response.returned_rows"), Some(Value::I64(rows)) if *rows >= 1),
        "{insert:#?}"
    );
    // The event's metadata carries the command span's context, not the caller's header.
    let stored = stored_traceparent(&pool).await;
    assert_eq!(
        stored,
        format!("00-{CALLER_TRACE}-{}-01", command.span_context.span_id())
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_message_consumed_from_rabbitmq_carries_a_traceparent_in_the_commands_trace(
    pool: PgPool,
) {
    use futures::StreamExt as _;
    use lapin::types::AMQPValue;
    use projector::relay::{BrokerUrl, DEFAULT_RABBITMQ_URL, RelaySettings};

    // The command, with the caller's trace (the test binary's subscriber: export off).
    let app = app(&pool);
    let answer = Call::post("/api/v1/projects")
        .header(
            "traceparent",
            &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        )
        .json(&serde_json::json!({ "name": "Relayed" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    let stored = stored_traceparent(&pool).await;

    // A queue of our own on an exchange of our own, declared as the relay declares it.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let exchange = format!("chronicle.test.{tag}");
    let queue = format!("chronicle.test.{tag}.all");
    let (connection, mut consumer) =
        test_support::broker::subscribe(&exchange, &queue, "Project.#", true).await;

    let settings = RelaySettings {
        enabled: true,
        url: BrokerUrl::new(DEFAULT_RABBITMQ_URL),
        exchange: exchange.clone(),
        batch_size: 25,
        max_bytes: event_store::log::DEFAULT_MAX_BYTES,
        poll_interval: std::time::Duration::from_millis(50),
        connection_name: format!("chronicle-relay-test-{tag}"),
    };
    let shutdown = service_kit::shutdown::Shutdown::new();
    let (wake, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let relay = tokio::spawn(projector::relay::run_relay(
        pool.clone(),
        pool.clone(),
        settings,
        wake,
        shutdown.clone(),
    ));

    let delivery = tokio::time::timeout(std::time::Duration::from_secs(20), consumer.next())
        .await
        .expect("the relay published within 20 s")
        .unwrap()
        .unwrap();
    let traceparent = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("traceparent").cloned())
        .and_then(|value| match value {
            AMQPValue::LongString(text) => Some(text.to_string()),
            _ => None,
        })
        .expect("a traceparent header");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], CALLER_TRACE, "the command's trace: {traceparent}");
    assert_ne!(parts[2], CALLER_SPAN, "{traceparent}");
    assert!(
        !stored.contains(parts[2]),
        "the producer span's own id, not the command span's ({stored}): {traceparent}"
    );

    shutdown.trigger();
    relay.await.unwrap();
    listener.abort();
    connection.close(0, "done".into()).await.unwrap();
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn with_the_sdk_disabled_a_post_is_served_its_statements_timed_and_the_callers_trace_passed_on(
    pool: PgPool,
) {
    let app = app(&pool);
    // This thread's subscriber (the test runtime is single-threaded): what `init_tracing`
    // installs with OTEL_SDK_DISABLED=true. The statement histograms are recorded through
    // handles kept for the process's recorder (`service_kit::series`), which a thread-local
    // recorder would not see, so the count is read from the process's, before and after: other
    // tests may add to it, never take from it.
    let subscriber = tracing_subscriber::registry().with(service_kit::telemetry::untraced_layers());
    let tracing_guard = tracing::subscriber::set_default(subscriber);
    let timed = || {
        test_support::exposition::value(
            &service_kit::telemetry::metrics_handle().render(),
            "chronicle_db_query_duration_seconds_count",
            &[("service", "command-api"), ("operation", "OTHER")],
        )
        .unwrap_or(0.0)
    };
    let before = timed();

    let sent = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let answer = Call::post("/api/v1/projects")
        .header("traceparent", &sent)
        .header("idempotency-key", "untraced-create-1")
        .json(&serde_json::json!({ "name": "Untraced" }))
        .send(&app)
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.value());
    // No OpenTelemetry layer: no span of ours has a context.
    assert_eq!(service_kit::otel::current_traceparent(), None);
    drop(tracing_guard);

    // The keyed append is the request's one statement; it starts with WITH (the key's record),
    // so it is classed OTHER (decision 0017).
    let after = timed();
    assert!(after - before >= 1.0, "{before} -> {after}");
    // The caller's context passes through unchanged, as the API without an SDK propagates it.
    let stored = stored_traceparent(&pool).await;
    assert_eq!(stored, sent);
}
