//! The RabbitMQ relay against the real broker: every event reaches a bound queue with the
//! contract's properties, in per-stream order, and a connection lost mid-stream loses nothing.
//!
//! Each test declares its own exchange and queue and names its relay connection uniquely, so
//! tests run in parallel and the forced disconnect touches only its own relay.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::append::append;
use futures::StreamExt as _;
use lapin::options::BasicAckOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, Consumer};
use projector::relay::{BrokerUrl, DEFAULT_RABBITMQ_URL, RELAY_CHECKPOINT, RelaySettings};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::broker;
use uuid::Uuid;

use crate::helpers::{created, project_event, renamed};

/// One message as a consumer saw it.
#[derive(Debug, Clone)]
struct Received {
    routing_key: String,
    message_id: String,
    content_type: String,
    delivery_mode: u8,
    timestamp: u64,
    headers: FieldTable,
    body: serde_json::Value,
}

/// Relay settings on a fresh exchange, with a connection name only this test uses.
pub fn relay_settings(tag: &str) -> RelaySettings {
    RelaySettings {
        enabled: true,
        url: BrokerUrl::new(DEFAULT_RABBITMQ_URL),
        exchange: format!("chronicle.test.{tag}"),
        batch_size: 25,
        max_bytes: event_store::log::DEFAULT_MAX_BYTES,
        poll_interval: Duration::from_millis(50),
        connection_name: format!("chronicle-relay-test-{tag}"),
    }
}

/// A queue of this test's own bound to every routing key of `exchange`.
pub async fn bind_queue(exchange: &str, tag: &str) -> (Connection, Consumer) {
    broker::subscribe(exchange, &format!("chronicle.test.{tag}.all"), "#", false).await
}

/// Consumes until `expected` distinct message ids arrived (bounded), returning every delivery
/// in arrival order, duplicates included.
async fn consume(consumer: &mut Consumer, expected: usize, within: Duration) -> Vec<Received> {
    let deadline = Instant::now() + within;
    let mut received = Vec::new();
    let mut distinct = HashSet::new();
    while distinct.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {expected} events arrived",
            distinct.len()
        );
        let Ok(Some(delivery)) = tokio::time::timeout(left, consumer.next()).await else {
            continue;
        };
        let delivery = delivery.unwrap();
        let properties = &delivery.properties;
        let message = Received {
            routing_key: delivery.routing_key.to_string(),
            message_id: properties.message_id().clone().unwrap().to_string(),
            content_type: properties.content_type().clone().unwrap().to_string(),
            delivery_mode: properties.delivery_mode().unwrap(),
            timestamp: properties.timestamp().unwrap(),
            headers: properties.headers().clone().unwrap(),
            body: serde_json::from_slice(&delivery.data).unwrap(),
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        distinct.insert(message.message_id.clone());
        received.push(message);
    }
    received
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        other => panic!("header {key} is {other:?}"),
    }
}

/// Keeps the first delivery of each message id, in arrival order.
fn first_deliveries(received: &[Received]) -> Vec<&Received> {
    let mut seen = HashSet::new();
    received
        .iter()
        .filter(|message| seen.insert(message.message_id.clone()))
        .collect()
}

/// Asserts that, per stream, first deliveries come in version order with no gap.
fn assert_per_stream_order(deliveries: &[&Received]) {
    let mut last: HashMap<String, i64> = HashMap::new();
    for message in deliveries {
        let stream = message.body["aggregate_id"].as_str().unwrap().to_owned();
        let version = message.body["version"].as_i64().unwrap();
        let previous = last.insert(stream.clone(), version).unwrap_or(0);
        assert_eq!(
            version,
            previous + 1,
            "stream {stream}: version {version} after {previous}"
        );
    }
}

async fn relay_checkpoint(pool: &PgPool) -> (i64, String) {
    sqlx::query_as("SELECT position, state FROM projection_checkpoints WHERE name = $1")
        .bind(RELAY_CHECKPOINT)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or((0, String::new()))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn every_event_reaches_a_bound_queue_with_the_contract_properties_in_stream_order(
    pool: PgPool,
) {
    // The telemetry layers, as every binary installs them: the producer spans need them.
    test_support::init_logging();
    let tag = Uuid::new_v4().simple().to_string();
    let settings = relay_settings(&tag);
    let (_consumer_connection, mut consumer) = bind_queue(&settings.exchange, &tag).await;

    // Streams interleaved across transactions, so log order differs from stream order.
    let streams: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let mut expected = Vec::new();
    for round in 0..5_i64 {
        for (n, id) in streams.iter().enumerate() {
            let event = if round == 0 {
                created(&format!("p{n}"))
            } else {
                renamed(&format!("p{n} r{round}"))
            };
            let mut new = project_event(*id, round + 1, &event);
            new.metadata["traceparent"] =
                serde_json::json!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
            expected.push(new.event_id);
            append(&pool, &[new], None).await.unwrap();
        }
    }

    let shutdown = Shutdown::new();
    let (wake, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let relay = tokio::spawn(projector::relay::run_relay(
        pool.clone(),
        pool.clone(),
        settings.clone(),
        Arc::clone(&wake),
        shutdown.clone(),
    ));

    let received = consume(&mut consumer, expected.len(), Duration::from_secs(20)).await;
    let firsts = first_deliveries(&received);
    assert_eq!(firsts.len(), expected.len());
    assert_per_stream_order(&firsts);

    let stored = event_store::log::read_after(
        &pool,
        events::LogPosition::START,
        1000,
        &event_store::LogFilter::default(),
    )
    .await
    .unwrap();
    let by_id: HashMap<String, &events::RecordedEvent> = stored
        .iter()
        .map(|event| (event.event_id.to_string(), event))
        .collect();
    for message in &firsts {
        let event = by_id[&message.message_id];
        assert_eq!(message.routing_key, format!("Project.{}", event.event_type));
        assert_eq!(message.content_type, "application/json");
        assert_eq!(message.delivery_mode, 2, "persistent");
        assert_eq!(
            message.timestamp,
            u64::try_from(event.recorded_at.timestamp()).unwrap()
        );
        assert_eq!(message.body, serde_json::to_value(event).unwrap());
        for field in [
            "position",
            "event_id",
            "aggregate_type",
            "aggregate_id",
            "version",
            "event_type",
            "event_version",
            "payload",
            "metadata",
            "recorded_at",
        ] {
            assert!(message.body.get(field).is_some(), "envelope lacks {field}");
        }
        assert_eq!(
            message.headers.inner().get("position"),
            Some(&AMQPValue::LongLongInt(event.position))
        );
        assert_eq!(
            header_text(&message.headers, "correlation_id").as_deref(),
            Some("corr")
        );
        assert_eq!(
            header_text(&message.headers, "causation_id").as_deref(),
            Some("cause")
        );
        // The producer span's context: the trace of the command that wrote the event, one
        // span further down.
        let traceparent = header_text(&message.headers, "traceparent").unwrap();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(
            parts[1], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{traceparent}"
        );
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "a span of its own: {traceparent}"
        );
        assert_eq!(
            parts[3], "01",
            "the command's trace was sampled: {traceparent}"
        );
    }

    // The checkpoint moves only after the confirms, so it ends at the last event.
    let last = stored.last().unwrap().position;
    test_support::eventually(
        Duration::from_secs(5),
        "the relay checkpoint is at the end",
        || {
            let pool = pool.clone();
            async move { relay_checkpoint(&pool).await == (last, "running".to_owned()) }
        },
    )
    .await;

    shutdown.trigger();
    relay.await.unwrap();
    listener.abort();
}

/// Force-closes the relay connection named `name` (and only it) on the broker; returns
/// whether one was found.
fn close_connection(name: &str) -> bool {
    let listing = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--quiet"])
        .output()
        .expect("rabbitmqctl runs");
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut closed = false;
    for line in text.lines().filter(|line| line.contains(name)) {
        let Some(pid) = line.split_whitespace().next() else {
            continue;
        };
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test: connection lost"])
            .status()
            .expect("rabbitmqctl runs");
        closed |= status.success();
    }
    closed
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_broker_connection_lost_during_appends_loses_no_event(pool: PgPool) {
    let tag = Uuid::new_v4().simple().to_string();
    let settings = relay_settings(&tag);
    let (_consumer_connection, mut consumer) = bind_queue(&settings.exchange, &tag).await;

    let shutdown = Shutdown::new();
    let (wake, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let notifier =
        event_store::wake::AppendNotifier::spawn(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let relay = tokio::spawn(projector::relay::run_relay(
        pool.clone(),
        pool.clone(),
        settings.clone(),
        Arc::clone(&wake),
        shutdown.clone(),
    ));

    // Appends keep coming while the connection is cut, three times.
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..60 {
                let id = Uuid::now_v7();
                let batch = vec![
                    project_event(id, 1, &created(&format!("p{n}"))),
                    project_event(id, 2, &renamed(&format!("p{n}'"))),
                ];
                ids.extend(batch.iter().map(|event| event.event_id));
                append(&pool, &batch, None).await.unwrap();
                notifier.notify();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            ids
        })
    };
    let mut cuts = 0;
    let started = Instant::now();
    while cuts < 3 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if close_connection(&settings.connection_name) {
            cuts += 1;
        }
    }
    assert_eq!(
        cuts, 3,
        "the relay connection was found and cut three times"
    );
    let expected = writer.await.unwrap();

    let received = consume(&mut consumer, expected.len(), Duration::from_secs(30)).await;
    let firsts = first_deliveries(&received);
    let ids: HashSet<String> = firsts.iter().map(|m| m.message_id.clone()).collect();
    for id in &expected {
        assert!(ids.contains(&id.to_string()), "event {id} never arrived");
    }
    assert_eq!(ids.len(), expected.len(), "no stray messages");
    assert_per_stream_order(&firsts);

    shutdown.trigger();
    relay.await.unwrap();
    listener.abort();
}
