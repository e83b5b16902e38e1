//! Scenario 1: the projector (its own process) is killed with SIGKILL in the middle of a batch
//! transaction while a burst of commands goes on; restarted, it ends at exactly the model a
//! rebuild produces, having applied no event twice.

use std::time::{Duration, Instant};

use faults::{Bin, Http, Service, TestDb, create_project, eventually};
use http::Method;
use uuid::Uuid;

const WORKERS: usize = 6;
const PROJECTS_PER_WORKER: usize = 30;
const KILLS: usize = 4;

/// Whether one of the projector's own database sessions has an open transaction that has
/// written something (a batch under way), matched by the TCP ports of the process.
async fn projector_in_write_transaction(db: &TestDb, projector: &Service) -> bool {
    let ports: Vec<i32> = projector
        .tcp_local_ports()
        .into_iter()
        .map(i32::from)
        .collect();
    if ports.is_empty() {
        return false;
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
          WHERE datname = current_database() AND client_port = ANY($1) \
            AND backend_xid IS NOT NULL AND xact_start IS NOT NULL)",
    )
    .bind(&ports)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_resumes_to_a_rebuild_and_applies_no_event_twice() {
    let db = TestDb::create(&faults::pg_server()).await;
    let http = Http::new();
    let mut api = Service::start(Bin::CommandApi, &db.url, &[]);
    api.wait_ready(&http).await;
    let projector_env = [("PROJECTOR_BATCH_SIZE", "25"), ("PROJECTOR_POLL_MS", "20")];
    let mut projector = Service::start(Bin::Projector, &db.url, &projector_env);

    // The burst: each worker creates its projects and renames each twice.
    let base = api.base();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..PROJECTS_PER_WORKER {
                    let id = Uuid::now_v7();
                    let key = format!("w{worker}-{n}");
                    let created =
                        create_project(&http, &base, id, &key, Duration::from_secs(10)).await;
                    statuses.push(created.map(|a| a.status.as_u16()));
                    for rename in 0..2 {
                        let renamed = http
                            .send(
                                Method::PATCH,
                                &format!("{base}/api/v1/projects/{id}"),
                                &[],
                                Some(serde_json::json!({"name": format!("p{n} r{rename}")})),
                                Duration::from_secs(10),
                            )
                            .await;
                        statuses.push(renamed.map(|a| a.status.as_u16()));
                    }
                }
                statuses
            })
        })
        .collect();

    // Kill the projector each time one of its batch transactions is open, then restart it.
    let started = Instant::now();
    let (mut mid_transaction, mut caught_open) = (0, Vec::new());
    let mut applied_before = 0;
    for _ in 0..KILLS {
        // Each kill lands after the (re)started projector has committed a batch of its own.
        let progress = applied_before;
        eventually(
            Duration::from_secs(20),
            "the projector commits a batch after its (re)start",
            || async {
                db.checkpoint("projects")
                    .await
                    .is_some_and(|c| c.0 > progress)
            },
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut caught = false;
        while Instant::now() < deadline {
            if projector_in_write_transaction(&db, &projector).await {
                caught = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        projector.kill_9();
        if caught {
            mid_transaction += 1;
        }
        caught_open.push(caught);
        let applied = db.checkpoint("projects").await.map_or(0, |c| c.0);
        applied_before = applied;
        eprintln!(
            "kill -9 at {:?}: batch transaction open: {caught}; projects applied so far {applied}",
            started.elapsed()
        );
        projector = projector.restart();
    }

    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.unwrap());
    }
    let total = db.event_count().await;
    eprintln!(
        "commands: {} ({}), events: {total}",
        statuses.len(),
        faults::histogram_of(&statuses)
    );
    assert!(
        statuses
            .iter()
            .all(|status| matches!(status, Ok(200..=299))),
        "every command of the burst succeeds: {}",
        faults::histogram_of(&statuses)
    );
    assert_eq!(
        total,
        i64::try_from(WORKERS * PROJECTS_PER_WORKER * 3).unwrap()
    );

    let caught_up = eventually(
        Duration::from_secs(30),
        "the restarted projector applies every event to projects",
        || async {
            db.checkpoint("projects")
                .await
                .is_some_and(|c| c.0 >= total)
        },
    )
    .await;
    let (applied, state) = db.checkpoint("projects").await.unwrap();
    eprintln!(
        "kills: {KILLS} ({mid_transaction} inside an open batch transaction); caught up \
         {caught_up:?} after the burst; events_applied {applied} of {total}; state {state}"
    );
    assert_eq!(applied, total, "every event applied exactly once");
    assert_eq!(state, "running");
    assert!(
        mid_transaction >= 1,
        "no kill landed inside a batch transaction: {caught_open:?}"
    );

    // Each row is at the version of its stream's last event.
    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id, max(sequence) AS version FROM events \
          WHERE aggregate_type = 'Project' GROUP BY aggregate_id) s \
          FULL JOIN projects p ON p.id::text = s.aggregate_id \
          WHERE p.version IS DISTINCT FROM s.version",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stale, 0, "rows whose version is not their stream's");

    // `projector verify projects`: the live model equals a rebuild.
    drop(projector);
    let verify = std::process::Command::new(faults::binary("projector"))
        .args(["verify", "projects"])
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    eprintln!(
        "projector verify projects: {} {}",
        verify.status,
        stdout.trim()
    );
    assert!(
        verify.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    drop(api);
    db.drop_database().await;
}
