//! Scenario 3: the broker (the suite's own RabbitMQ node) stops and starts again while
//! commands append. Commands are unaffected; the relay catches up; an outside consumer with a
//! queue bound to the relay's exchange sees every event id.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faults::{
    Bin, Http, Instances, Outcome, Service, TestDb, create_project, eventually, quantile, sh,
    status_histogram,
};
use futures::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use test_support::broker;
use uuid::Uuid;

const RELAY: &str = "rabbitmq-relay";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/faults.sh"]
async fn a_broker_restart_leaves_commands_alone_and_the_relay_delivers_every_event() {
    let instances = Instances::from_env();
    let db = TestDb::create(&instances.pg_url).await;
    let http = Http::new();
    let tag = Uuid::new_v4().simple().to_string();
    let exchange = format!("faults.{tag}");
    let queue = format!("faults.{tag}.all");
    // Durable, so that it and its persistent messages outlive the broker's stop.
    let (setup, _) = broker::bind(
        &instances.rabbit_url,
        &exchange,
        &queue,
        "#",
        broker::Lifetime::Durable,
    )
    .await;
    let _ = setup.close(200, "bound".into()).await;

    let mut command = Service::start(Bin::CommandApi, &db.url, &[]);
    let projector = Service::start(
        Bin::Projector,
        &db.url,
        &[
            ("RELAY_ENABLED", "true"),
            ("RABBITMQ_URL", instances.rabbit_url.as_str()),
            ("RELAY_EXCHANGE", exchange.as_str()),
            ("PROJECTOR_BATCH_SIZE", "20"),
        ],
    );
    command.wait_ready(&http).await;

    // Appends all along: two writers, each create awaited before the next.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|worker| {
            let (http, base, stop) = (http.clone(), command.base(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = Uuid::now_v7();
                    let key = format!("b-{worker}-{n}");
                    n += 1;
                    let (outcome, _) = Outcome::of(
                        started,
                        create_project(&http, &base, id, &key, Duration::from_secs(10)),
                    )
                    .await;
                    outcomes.push(outcome);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            })
        })
        .collect();

    eventually(
        Duration::from_secs(20),
        "the relay publishes some events before the broker stops",
        || async { db.checkpoint(RELAY).await.is_some_and(|c| c.0 > 20) },
    )
    .await;
    let mut restore = faults::RestoreOnDrop::new(&instances.rabbit_start);
    let stop_took = sh(&instances.rabbit_stop).await;
    let down_at = started.elapsed();
    let noticed = eventually(
        Duration::from_secs(30),
        "the relay records waiting_for_broker",
        || async {
            db.checkpoint(RELAY)
                .await
                .is_some_and(|c| c.1 == "waiting_for_broker")
        },
    )
    .await;
    let relayed_at_stop = db.checkpoint(RELAY).await.unwrap().0;
    // Commands go on against a broker that is away for a fixed 3 s (the fault itself; its
    // start takes several seconds more).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during_outage = db.event_count().await;
    let start_at = started.elapsed();
    let start_took = sh(&instances.rabbit_start).await;
    restore.disarm();
    let up = Instant::now();
    let backlog_cleared = eventually(
        Duration::from_secs(30),
        "the relay publishes the events appended while the broker was away",
        || async {
            db.checkpoint(RELAY)
                .await
                .is_some_and(|c| c.0 >= during_outage)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for writer in writers {
        outcomes.extend(writer.await.unwrap());
    }
    let total = db.event_count().await;
    let caught_up = eventually(
        Duration::from_secs(60),
        "the relay publishes every event after the broker is back",
        || async { db.checkpoint(RELAY).await.is_some_and(|c| c.0 >= total) },
    )
    .await;
    let relay_recovery = up.elapsed();

    // The outside consumer sees every event id (at least once).
    let ids: HashSet<String> = sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM events")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let connection = Connection::connect(&instances.rabbit_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            format!("faults-{tag}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut deliveries: HashMap<String, usize> = HashMap::new();
    let consume_deadline = Instant::now() + Duration::from_secs(30);
    while !ids.iter().all(|id| deliveries.contains_key(id)) {
        let left = consume_deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for every event id on the queue: {} of {} seen",
            ids.iter().filter(|id| deliveries.contains_key(*id)).count(),
            ids.len()
        );
        let Ok(Some(delivery)) = tokio::time::timeout(left, consumer.next()).await else {
            continue;
        };
        let delivery = delivery.unwrap();
        let id = delivery
            .properties
            .message_id()
            .clone()
            .map(|id| id.to_string())
            .unwrap_or_default();
        *deliveries.entry(id).or_default() += 1;
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    channel
        .exchange_delete(
            exchange.as_str().into(),
            lapin::options::ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;

    let latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    let while_down: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.sent_at >= down_at && o.sent_at < start_at)
        .cloned()
        .collect();
    eprintln!(
        "broker node stop took {} ms; relay noticed after {} ms (checkpoint {relayed_at_stop}); \
         events at the end of the outage {during_outage}; node start took {} ms; the relay \
         published the outage's backlog {} ms after the start returned, and everything {} ms \
         after (the appends went on 1 s more, caught up {} ms after they stopped)",
        stop_took.as_millis(),
        noticed.as_millis(),
        start_took.as_millis(),
        backlog_cleared.as_millis(),
        relay_recovery.as_millis(),
        caught_up.as_millis()
    );
    eprintln!(
        "commands: {} ({}); while the broker was down: {} ({}); latency p50 {} ms, p99 {} ms, \
         max {} ms",
        outcomes.len(),
        status_histogram(&outcomes),
        while_down.len(),
        status_histogram(&while_down),
        quantile(&latencies, 0.5).as_millis(),
        quantile(&latencies, 0.99).as_millis(),
        quantile(&latencies, 1.0).as_millis()
    );
    eprintln!(
        "consumer: {} event ids, {} deliveries, {duplicates} duplicates",
        ids.len(),
        deliveries.values().sum::<usize>()
    );

    assert!(
        outcomes.iter().all(Outcome::is_success),
        "commands are unaffected by the broker: {}",
        status_histogram(&outcomes)
    );
    assert!(
        !while_down.is_empty(),
        "no command was sent while the broker was down"
    );
    assert!(
        quantile(&latencies, 1.0) < Duration::from_secs(5),
        "a command waited on the broker"
    );
    assert_eq!(db.checkpoint(RELAY).await.unwrap().1, "running");
    drop((command, projector));
    db.drop_database().await;
}
