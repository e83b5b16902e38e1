//! Projector replicas: each projection runs in exactly one process, and when that process is
//! killed with SIGKILL another one takes over within seconds, ending at the model a rebuild
//! produces.

use std::time::{Duration, Instant};

use event_store::append::append;
use projector::projections::ProjectsProjection;
use sqlx::PgPool;
use test_support::eventually;
use uuid::Uuid;

use crate::helpers::{checkpoint, created, event_count, project_event, renamed};
use crate::processes::{Projector, leader_of, maybe_checkpoint};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_replica_takes_over_within_seconds_when_the_active_projector_is_killed(pool: PgPool) {
    let mut replicas = [
        Projector::start(&pool, &[("PROJECTOR_BATCH_SIZE", "10")]),
        Projector::start(&pool, &[("PROJECTOR_BATCH_SIZE", "10")]),
    ];
    let pids = [replicas[0].pid(), replicas[1].pid()];

    // A burst of appends that goes on across the kill.
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for n in 0..150 {
                let id = Uuid::now_v7();
                append(
                    &pool,
                    &[
                        project_event(id, 1, &created(&format!("p{n}"))),
                        project_event(id, 2, &renamed(&format!("p{n} renamed"))),
                    ],
                    None,
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    eventually(
        Duration::from_secs(20),
        "one replica leads projects",
        || {
            let pool = pool.clone();
            async move { leader_of(&pool, ProjectsProjection::NAME).await.is_some() }
        },
    )
    .await;
    eventually(Duration::from_secs(10), "the leader applies events", || {
        let pool = pool.clone();
        async move {
            maybe_checkpoint(&pool)
                .await
                .is_some_and(|c| c.events_applied > 20)
        }
    })
    .await;
    let leader = leader_of(&pool, ProjectsProjection::NAME).await.unwrap();
    let killed = pids.iter().position(|pid| *pid == leader).unwrap();
    let survivor = pids[1 - killed];
    // Every projection lives in one process at a time; the other one stands by.
    for projection in projector::projections() {
        let led_by = leader_of(&pool, projection.name()).await;
        assert!(
            led_by.is_some_and(|pid| pids.contains(&pid)),
            "{} is led by {led_by:?}",
            projection.name()
        );
    }

    replicas[killed].kill_9();
    let killed_at = Instant::now();
    eventually(Duration::from_secs(10), "the survivor takes over", || {
        let pool = pool.clone();
        async move { leader_of(&pool, ProjectsProjection::NAME).await == Some(survivor) }
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("takeover after kill -9: {} ms", takeover.as_millis());
    assert!(takeover < Duration::from_secs(5), "took {takeover:?}");

    writer.await.unwrap();
    let total = event_count(&pool).await;
    eventually(
        Duration::from_secs(20),
        "the survivor applies every event",
        || {
            let pool = pool.clone();
            async move {
                maybe_checkpoint(&pool)
                    .await
                    .is_some_and(|c| c.events_applied == total)
            }
        },
    )
    .await;
    let state = checkpoint(&pool).await;
    assert_eq!(
        state.events_applied, 300,
        "every event applied exactly once"
    );
    assert_eq!(state.state, "running");

    let differences = projector::rebuild::verify(&pool, &pool, &ProjectsProjection, 100)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    drop(replicas);
}
