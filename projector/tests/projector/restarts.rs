//! A projector killed at arbitrary moments, even with two copies racing, resumes to exactly
//! the model a fresh rebuild produces.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use event_store::append::{NewEvent, append, append_in};
use event_store::wake::{AppendNotifier, EVENTS_CHANNEL};
use events::project::ProjectEvent;
use projector::projections::ProjectsProjection;
use projector::{LoopSettings, Projection};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{
    Lcg, checkpoint, created, event_count, project_event, project_rows, settle, wipe_projects_model,
};

const WRITERS: u64 = 4;
const PROJECTS_PER_WRITER: usize = 6;
const OPERATIONS_PER_WRITER: usize = 60;

/// What a writer believes a project looks like after its own appends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    name: String,
    description: String,
    archived: bool,
    version: i64,
}

/// Appends a pseudo-random history for its own projects (so writers never conflict), some in
/// transactions that stay open a while, and returns the state it expects.
async fn writer(pool: PgPool, notifier: AppendNotifier, seed: u64) -> HashMap<Uuid, Expected> {
    let mut rng = Lcg::new(seed);
    let ids: Vec<Uuid> = (0..PROJECTS_PER_WRITER).map(|_| Uuid::now_v7()).collect();
    let mut model: HashMap<Uuid, Expected> = HashMap::new();
    for op in 0..OPERATIONS_PER_WRITER {
        let id = ids[usize::try_from(rng.below(ids.len() as u64)).unwrap()];
        let mut batch: Vec<NewEvent> = Vec::new();
        let mut state = model.get(&id).cloned();
        let steps = 1 + rng.below(2);
        for _ in 0..steps {
            let event = match &state {
                None => ProjectEvent::ProjectCreated {
                    name: format!("p{seed}-{op}"),
                    description: format!("made by writer {seed}"),
                    owner_id: None,
                    created_by: "tester".to_owned(),
                },
                Some(current) if current.archived => ProjectEvent::ProjectRestored {},
                Some(_) => match rng.below(4) {
                    0 => ProjectEvent::ProjectArchived {},
                    1 => ProjectEvent::ProjectUpdated {
                        name: None,
                        description: Some(format!("described at {op}")),
                    },
                    _ => ProjectEvent::ProjectUpdated {
                        name: Some(format!("renamed {seed}-{op}")),
                        description: None,
                    },
                },
            };
            let version = state.as_ref().map_or(1, |current| current.version + 1);
            batch.push(project_event(id, version, &event));
            state = Some(evolve(state, &event, version));
        }
        if rng.below(4) == 0 {
            // Takes its positions now, commits after others that take later ones.
            let mut tx = pool.begin().await.unwrap();
            append_in(&mut tx, &batch).await.unwrap();
            tokio::time::sleep(Duration::from_millis(rng.below(15))).await;
            tx.commit().await.unwrap();
        } else {
            append(&pool, &batch, None).await.unwrap();
        }
        notifier.notify();
        if let Some(state) = state {
            model.insert(id, state);
        }
        tokio::time::sleep(Duration::from_millis(rng.below(4))).await;
    }
    model
}

fn evolve(state: Option<Expected>, event: &ProjectEvent, version: i64) -> Expected {
    match (state, event) {
        (
            _,
            ProjectEvent::ProjectCreated {
                name, description, ..
            },
        ) => Expected {
            name: name.clone(),
            description: description.clone(),
            archived: false,
            version,
        },
        (Some(mut current), ProjectEvent::ProjectUpdated { name, description }) => {
            if let Some(name) = name {
                current.name.clone_from(name);
            }
            if let Some(description) = description {
                current.description.clone_from(description);
            }
            current.version = version;
            current
        }
        (Some(mut current), ProjectEvent::ProjectArchived {}) => {
            current.archived = true;
            current.version = version;
            current
        }
        (Some(mut current), ProjectEvent::ProjectRestored {}) => {
            current.archived = false;
            current.version = version;
            current
        }
        (None, other) => panic!("{other:?} before the project exists"),
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_projector_killed_at_random_moments_ends_equal_to_a_fresh_rebuild(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = options
        .max_connections(12)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let notifier = AppendNotifier::spawn(pool.clone(), EVENTS_CHANNEL);
    let (wake, listener) = event_store::wake::listen_with_handle(pool.clone(), EVENTS_CHANNEL);
    let writers: Vec<_> = (1..=WRITERS)
        .map(|seed| tokio::spawn(writer(pool.clone(), notifier.clone(), seed)))
        .collect();

    let mut rng = Lcg::new(42);
    let projection: Arc<dyn Projection> = Arc::new(ProjectsProjection);
    let (mut rounds, mut kills) = (0, 0);
    while rounds < 25 || !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        rounds += 1;
        let shutdown = Shutdown::new();
        // Now and then two copies run at once, as two misconfigured processes would.
        let copies = if rng.below(3) == 0 { 2 } else { 1 };
        // The round's projector process: its connections are its own, and go when it is
        // killed, as a killed process's do. Sharing the writers' pool would not model a kill:
        // a copy aborted inside `pool.begin()` hands the writers a connection still inside
        // a transaction, which swallows their next append (see the test below).
        let process = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(connect.clone())
            .await
            .unwrap();
        let loops: Vec<_> = (0..copies)
            .map(|_| {
                let settings = LoopSettings {
                    batch_size: 1 + i64::try_from(rng.below(20)).unwrap(),
                    poll_interval: Duration::from_millis(20),
                    max_bytes: event_store::log::DEFAULT_MAX_BYTES,
                    skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
                };
                tokio::spawn(projector::run_projection(
                    process.clone(),
                    Arc::clone(&projection),
                    settings,
                    Arc::clone(&wake),
                    shutdown.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        if rng.below(3) == 0 {
            shutdown.trigger();
            for running in loops {
                running
                    .await
                    .expect("the loop does not panic")
                    .expect("the loop stops cleanly");
            }
        } else {
            // Killed wherever it is, possibly in the middle of a batch transaction.
            kills += 1;
            for running in &loops {
                running.abort();
            }
            for running in loops {
                let _ = running.await;
            }
        }
        // Closing ends the sessions, so the server rolls back whatever they left open.
        process.close().await;
    }
    assert!(
        kills > 5,
        "the test killed the projector only {kills} times"
    );

    let mut expected: HashMap<Uuid, Expected> = HashMap::new();
    for handle in writers {
        expected.extend(handle.await.expect("writers succeed"));
    }
    listener.abort();
    assert_eq!(
        idle_in_transaction(&pool).await,
        0,
        "no session is left inside a transaction"
    );
    settle(&pool, 7).await;

    let total = event_count(&pool).await;
    assert!(total >= i64::try_from(WRITERS as usize * OPERATIONS_PER_WRITER).unwrap());
    let live_checkpoint = checkpoint(&pool).await;
    assert_eq!(
        live_checkpoint.events_applied, total,
        "every event applied exactly once"
    );
    assert_eq!(live_checkpoint.state, "running");
    let live = project_rows(&pool).await;
    assert_eq!(live.len(), expected.len());
    for row in &live {
        let want = &expected[&row.id];
        let got = Expected {
            name: row.name.clone(),
            description: row.description.clone(),
            archived: row.archived,
            version: row.version,
        };
        assert_eq!(&got, want, "project {}", row.id);
    }

    // Rebuild from scratch and compare every column.
    wipe_projects_model(&pool).await;
    let rebuilt_count = settle(&pool, 500).await;
    assert_eq!(i64::try_from(rebuilt_count).unwrap(), total);
    let rebuilt_checkpoint = checkpoint(&pool).await;
    assert_eq!(rebuilt_checkpoint, live_checkpoint);
    assert_eq!(project_rows(&pool).await, live);
}

/// How many sessions of this test's database sit inside a transaction between statements.
async fn idle_in_transaction(observer: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
          WHERE datname = current_database() AND pid <> pg_backend_pid() \
            AND state LIKE 'idle in transaction%'",
    )
    .fetch_one(observer)
    .await
    .unwrap()
}

/// Starts `pool.begin()` and drops it once the server has run its `BEGIN` but before the
/// client read the answer: what aborting a task at that await does. sqlx 0.8.6 raises its
/// transaction depth only after the answer, so its rollback guard queues nothing, and the
/// connection goes back to the pool inside a transaction no one will end
/// (transact-rs/sqlx#4393).
async fn cancel_begin_in_flight(pool: &PgPool, observer: &PgPool) {
    for _ in 0..50 {
        let mut begin = Box::pin(pool.begin());
        for _ in 0..200 {
            let polled = std::future::poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx))).await;
            if let Poll::Ready(answered) = polled {
                // The answer came first: no window this time.
                drop(answered);
                break;
            }
            if idle_in_transaction(observer).await > 0 {
                drop(begin);
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no BEGIN could be cancelled in flight");
}

/// The harness's kill: the projector's pool is closed, so a transaction abandoned by a
/// cancelled `BEGIN` ends with its session, and appends on the writers' pool stay.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn closing_a_killed_projectors_pool_ends_the_transaction_its_begin_left(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let writers = options
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let process = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let observer = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await
        .unwrap();
    cancel_begin_in_flight(&process, &observer).await;
    process.close().await;
    // The client has closed the socket; the server's backend exits (and leaves
    // pg_stat_activity) a moment later, on its own time.
    test_support::eventually(
        Duration::from_secs(10),
        "the abandoned transaction ends with its closed session",
        || async { idle_in_transaction(&observer).await == 0 },
    )
    .await;

    let id = Uuid::now_v7();
    append(&writers, &[project_event(id, 1, &created("kept"))], None)
        .await
        .unwrap();
    writers.begin().await.unwrap().rollback().await.unwrap();
    assert_eq!(event_count(&observer).await, 1);
}

/// Why a projector "killed" by aborting its task must not share a pool with the writers.
/// A task aborted inside `pool.begin()` leaves its pooled connection inside a transaction;
/// the next borrower's statements run in it: an append that returned `Ok` is rolled back by
/// the next rollback on that connection (a projector batch that finds its checkpoint moved),
/// and the writer's next revision lands on top of the gap. That is the flake's wrong row: the
/// right version, an older field, and `events_applied` equal to the (shorter) log.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_append_on_a_pool_whose_begin_was_cancelled_can_vanish(
    options: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let shared = options
        .max_connections(1)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let observer = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect)
        .await
        .unwrap();
    cancel_begin_in_flight(&shared, &observer).await;

    let id = Uuid::now_v7();
    append(&shared, &[project_event(id, 1, &created("lost"))], None)
        .await
        .expect("the append reports success");
    // Any later rollback on that connection, as a batch whose checkpoint moved does.
    shared.begin().await.unwrap().rollback().await.unwrap();

    assert_eq!(
        event_count(&observer).await,
        0,
        "the append ran inside the abandoned transaction and was rolled back with it; if \
         sqlx now rolls back a cancelled BEGIN, this hazard is gone upstream"
    );
}
