//! Scenario 2: PostgreSQL (the suite's own cluster) stops and starts again during a command
//! load. Every command answered 2xx has its events; retrying any request with its
//! `Idempotency-Key` adds nothing to an acknowledged one; during the outage the answers are 503
//! with `Retry-After`, never a hang past the request deadline; the services recover without
//! being restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use faults::{
    Bin, Http, Instances, Outcome, Service, TestDb, create_project, eventually, quantile, sh,
    status_histogram,
};
use http::Method;
use uuid::Uuid;

const REQUEST_TIMEOUT_MS: u64 = 1000;
const WORKERS: usize = 4;

/// One command of the load: its id and key, and what came back.
struct Sent {
    id: Uuid,
    key: String,
    outcome: Outcome,
}

async fn events_of(db: &TestDb, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
        .bind(id.to_string())
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/faults.sh"]
async fn a_postgres_restart_under_load_loses_no_acknowledged_command_and_answers_503_meanwhile() {
    restart_under_load().await;
}

async fn restart_under_load() {
    let instances = Instances::from_env();
    let db = TestDb::create(&instances.pg_url).await;
    let http = Http::new();
    let timeout = REQUEST_TIMEOUT_MS.to_string();
    let env = [
        ("REQUEST_TIMEOUT_MS", timeout.as_str()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "500"),
        ("DATABASE_MAX_CONNECTIONS", "8"),
        ("CONSISTENCY_WAIT_MS", "1000"),
    ];
    let mut command = Service::start(Bin::CommandApi, &db.url, &env);
    let mut query = Service::start(Bin::QueryApi, &db.url, &env);
    let mut projector = Service::start(Bin::Projector, &db.url, &env);
    command.wait_ready(&http).await;
    query.wait_ready(&http).await;
    let pids = (command.pid(), query.pid(), projector.pid());

    // A hang is an answer later than the request deadline plus a second.
    let deadline = Duration::from_millis(REQUEST_TIMEOUT_MS) + Duration::from_secs(1);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (http, base, stop) = (http.clone(), command.base(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = Uuid::now_v7();
                    let key = format!("pg-{worker}-{n}");
                    n += 1;
                    let (outcome, _) =
                        Outcome::of(started, create_project(&http, &base, id, &key, deadline))
                            .await;
                    let failed = !outcome.is_success();
                    sent.push(Sent { id, key, outcome });
                    if failed {
                        // A client backing off a little, as Retry-After asks.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                sent
            })
        })
        .collect();
    let reader = {
        let (http, base, stop) = (http.clone(), query.base(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{base}/api/v1/projects?page_size=10");
                let (outcome, _) =
                    Outcome::of(started, http.send(Method::GET, &url, &[], None, deadline)).await;
                outcomes.push(outcome);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut restore = faults::RestoreOnDrop::new(&instances.pg_start);
    let stop_took = sh(&instances.pg_stop).await;
    let down_at = started.elapsed();
    // The outage lasts a fixed 3 s of load; that is the fault, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start_at = started.elapsed();
    let start_took = sh(&instances.pg_start).await;
    restore.disarm();
    let up_at = started.elapsed();
    let recovered = eventually(
        Duration::from_secs(30),
        "a command succeeds again after PostgreSQL is back",
        || async {
            let id = Uuid::now_v7();
            create_project(&http, &command.base(), id, &id.to_string(), deadline)
                .await
                .is_ok_and(|answer| answer.status.is_success())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent: Vec<Sent> = Vec::new();
    for writer in writers {
        sent.extend(writer.await.unwrap());
    }
    let reads = reader.await.unwrap();

    let outcomes: Vec<Outcome> = sent.iter().map(|s| s.outcome.clone()).collect();
    let during: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| o.sent_at >= down_at && o.sent_at + o.latency < start_at)
        .cloned()
        .collect();
    let latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    let outage_latencies: Vec<Duration> = during.iter().map(|o| o.latency).collect();
    eprintln!(
        "pg stop took {} ms (down at {} ms), start issued at {} ms took {} ms (up at {} ms); \
         commands succeed again {} ms after the start returned",
        stop_took.as_millis(),
        down_at.as_millis(),
        start_at.as_millis(),
        start_took.as_millis(),
        up_at.as_millis(),
        recovered.as_millis()
    );
    eprintln!(
        "commands: {} ({}); sent and answered while it was down: {} ({}); latency p50 {} ms, p99 {} ms, max \
         {} ms; during the outage max {} ms",
        outcomes.len(),
        status_histogram(&outcomes),
        during.len(),
        status_histogram(&during),
        quantile(&latencies, 0.5).as_millis(),
        quantile(&latencies, 0.99).as_millis(),
        quantile(&latencies, 1.0).as_millis(),
        quantile(&outage_latencies, 1.0).as_millis(),
    );
    eprintln!("reads: {} ({})", reads.len(), status_histogram(&reads));

    // Every acknowledged command has its event.
    let mut acknowledged = 0;
    for s in sent.iter().filter(|s| s.outcome.is_success()) {
        acknowledged += 1;
        assert_eq!(
            events_of(&db, s.id).await,
            1,
            "acknowledged {} has its event",
            s.key
        );
    }
    // Retrying every request with its key: acknowledged ones replay and add nothing; the others
    // now succeed, at most once each, at the first retry: a key is recorded only by the append
    // that commits, so an outage leaves no claim behind to answer 409 (decision 0017).
    let mut replayed = 0;
    let retries_started = Instant::now();
    for s in &sent {
        let answer = create_project(&http, &command.base(), s.id, &s.key, deadline)
            .await
            .unwrap();
        assert!(
            answer.status.is_success(),
            "retry of {}: {} {}",
            s.key,
            answer.status,
            answer.snippet()
        );
        if s.outcome.is_success() {
            assert_eq!(
                answer.header("idempotent-replayed"),
                Some("true"),
                "the retry of acknowledged {} is a replay",
                s.key
            );
            replayed += 1;
        }
        assert_eq!(events_of(&db, s.id).await, 1, "{} appended once", s.key);
    }
    let total = db.event_count().await;
    eprintln!(
        "acknowledged {acknowledged}, each with its event; {replayed} retries replayed; \
         all retried in {} ms; \
         events after retrying all {}: {total}",
        retries_started.elapsed().as_millis(),
        sent.len()
    );

    // The services are the same processes, and the read side catches up.
    assert!(command.is_running() && query.is_running() && projector.is_running());
    assert_eq!(pids, (command.pid(), query.pid(), projector.pid()));
    let caught_up = eventually(
        Duration::from_secs(30),
        "the projector applies every event after the restart",
        || async {
            db.checkpoint("projects")
                .await
                .is_some_and(|c| c.0 >= total)
        },
    )
    .await;
    let last = sent.last().unwrap().id;
    let read = http
        .send(
            Method::GET,
            &format!("{}/api/v1/projects/{last}", query.base()),
            &[],
            None,
            deadline,
        )
        .await
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.snippet());
    eprintln!(
        "projector caught up {} ms after the retries",
        caught_up.as_millis()
    );

    // The contract during the outage: 503 with Retry-After, never past the deadline.
    for outcome in outcomes.iter().chain(&reads) {
        match outcome.status {
            Ok(200..=299) => {}
            Ok(503) => assert!(
                outcome.retry_after,
                "a 503 without Retry-After equal to its body's retry_after"
            ),
            ref other => panic!(
                "an answer other than 2xx or 503 (sent at {:?}): {other:?}; all: {}",
                outcome.sent_at,
                status_histogram(&outcomes)
            ),
        }
        assert!(
            outcome.latency <= deadline,
            "answered after {:?}",
            outcome.latency
        );
    }
    assert!(!during.is_empty(), "no command was sent during the outage");
    assert!(
        during.iter().all(|o| !o.is_success()),
        "a command sent and answered while PostgreSQL was down succeeded: {}",
        status_histogram(&during)
    );
    drop((command, query, projector));
    db.drop_database().await;
}
