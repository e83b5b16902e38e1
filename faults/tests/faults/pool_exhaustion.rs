//! Scenario 4: every pooled connection of a service is held (`DATABASE_MAX_CONNECTIONS=2`, and
//! requests blocked behind a table lock the test holds); further requests are answered 503 with
//! `Retry-After` within the acquire timeout, and the service recovers as soon as the
//! connections come back.

use std::time::{Duration, Instant};

use faults::{
    Bin, Http, HttpError, Outcome, Service, TestDb, create_project, eventually, status_histogram,
};
use http::Method;
use sqlx::Connection as _;
use uuid::Uuid;

const ACQUIRE_TIMEOUT_MS: u64 = 500;
const PROBES: usize = 6;

async fn starve(bin: Bin) {
    let db = TestDb::create(&faults::pg_server()).await;
    let http = Http::new();
    let acquire = ACQUIRE_TIMEOUT_MS.to_string();
    let env = [
        ("DATABASE_MAX_CONNECTIONS", "2"),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", acquire.as_str()),
        ("REQUEST_TIMEOUT_MS", "20000"),
    ];
    let mut command = Service::start(Bin::CommandApi, &db.url, &[]);
    command.wait_ready(&http).await;
    let id = Uuid::now_v7();
    let created = create_project(&http, &command.base(), id, "seed", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.snippet());
    drop(command);
    let mut service = Service::start(bin, &db.url, &env);
    service.wait_ready(&http).await;
    let name = bin.name();
    let target = ProbeTarget {
        bin,
        base: service.base(),
    };

    // Hold the tables the service reads; two requests then hold its pooled connections (the
    // query API's LISTEN session takes one of its two).
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE events, projects IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (http, probe) = (
                http.clone(),
                ProbeTarget {
                    bin,
                    base: service.base(),
                },
            );
            tokio::spawn(async move { probe.send(&http, id).await })
        })
        .collect();
    let sessions_blocked = if bin == Bin::CommandApi { 2 } else { 1 };
    eventually(
        Duration::from_secs(10),
        &format!("{sessions_blocked} {name} session(s) wait on the test's lock (pool exhausted)"),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            waiting >= sessions_blocked
        },
    )
    .await;

    // Every further request waits for a connection at most the acquire timeout, then 503.
    let started = Instant::now();
    let mut starved = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..PROBES {
        let (outcome, answer) = Outcome::of(started, target.send(&http, id)).await;
        bodies.push(answer.map(|a| a.snippet()).unwrap_or_default());
        starved.push(outcome);
    }
    let contract = Duration::from_millis(ACQUIRE_TIMEOUT_MS) + Duration::from_secs(1);
    let slowest = starved.iter().map(|o| o.latency).max().unwrap();
    eprintln!(
        "{name} starved: {} (acquire timeout {ACQUIRE_TIMEOUT_MS} ms, slowest answer {} ms, \
         Retry-After on {} of {PROBES}); first body: {}",
        status_histogram(&starved),
        slowest.as_millis(),
        starved.iter().filter(|o| o.retry_after).count(),
        bodies[0]
    );

    // Give the connections back: the held requests finish, new ones succeed at once.
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let released = Instant::now();
    for request in held {
        let answer = request.await.unwrap().expect("a held request is answered");
        // The second held read of the query API waited for a connection, not for the lock.
        assert!(
            answer.status.is_success() || answer.status == 503,
            "a held request: {} {}",
            answer.status,
            answer.snippet()
        );
    }
    let recovered = eventually(
        Duration::from_secs(10),
        &format!("{name} answers 2xx again"),
        || async {
            target
                .send(&http, id)
                .await
                .is_ok_and(|a| a.status.is_success())
        },
    )
    .await;
    eprintln!(
        "{name} recovered {} ms after the held requests were answered ({} ms after the lock \
         was released)",
        recovered.as_millis(),
        released.elapsed().as_millis()
    );
    assert!(service.is_running());

    for (outcome, body) in starved.iter().zip(&bodies) {
        assert_eq!(
            outcome.status,
            Ok(503),
            "{name}: a request on an exhausted pool is 503: {body}"
        );
        assert!(
            outcome.retry_after,
            "{name}: the 503 carries Retry-After, equal to its body's retry_after"
        );
        assert!(
            outcome.latency <= contract,
            "{name}: answered after {:?}, past the acquire timeout + 1 s",
            outcome.latency
        );
    }
    drop(service);
    db.drop_database().await;
}

/// The request a service is starved with: a change of the seeded project on the command API, a
/// list read on the query API.
struct ProbeTarget {
    bin: Bin,
    base: String,
}

impl ProbeTarget {
    async fn send(&self, http: &Http, id: Uuid) -> Result<faults::Answer, HttpError> {
        let (method, url, body) = match self.bin {
            Bin::CommandApi => (
                Method::PATCH,
                format!("{}/api/v1/projects/{id}", self.base),
                Some(serde_json::json!({"description": "changed while held"})),
            ),
            _ => (
                Method::GET,
                format!("{}/api/v1/projects?page_size=5", self.base),
                None,
            ),
        };
        http.send(method, &url, &[], body, Duration::from_secs(30))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_api_on_an_exhausted_pool_answers_503_within_the_acquire_timeout_then_recovers() {
    starve(Bin::QueryApi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_api_on_an_exhausted_pool_answers_503_within_the_acquire_timeout_then_recovers()
{
    starve(Bin::CommandApi).await;
}
