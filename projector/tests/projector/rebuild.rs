//! Rebuilding a read model while it is read, and verifying a live model against a rebuild.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use event_store::append::{NewEvent, append};
use projector::projections::ProjectsProjection;
use projector::{LoopSettings, Projection};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{checkpoint, created, project_event, renamed, settle};
use crate::processes::database_url;

/// Appends `count` projects, each created then renamed, in batches; returns their ids.
async fn seed(pool: &PgPool, count: usize) -> Vec<Uuid> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(200) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .enumerate()
            .flat_map(|(n, id)| {
                [
                    project_event(*id, 1, &created(&format!("p{n}"))),
                    project_event(*id, 2, &renamed(&format!("p{n} renamed"))),
                ]
            })
            .collect();
        append(pool, &batch, None).await.unwrap();
    }
    ids
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_rebuild_under_concurrent_reads_serves_no_errors_and_no_half_built_table(pool: PgPool) {
    const PROJECTS: i64 = 3000;
    seed(&pool, usize::try_from(PROJECTS).unwrap()).await;
    settle(&pool, 500).await;
    // Mark every live row, so a reader can tell the old table from the rebuilt one.
    sqlx::query("UPDATE projects SET description = 'old table'")
        .execute(&pool)
        .await
        .unwrap();

    // The live loop keeps running through the rebuild, as in production.
    let shutdown = Shutdown::new();
    let (wake, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::EVENTS_CHANNEL);
    let live = tokio::spawn(projector::run_projection(
        pool.clone(),
        Arc::new(ProjectsProjection),
        LoopSettings {
            batch_size: 100,
            poll_interval: Duration::from_millis(20),
            max_bytes: event_store::log::DEFAULT_MAX_BYTES,
            skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
        },
        wake,
        shutdown.clone(),
    ));

    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, done) = (pool.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                let (mut old, mut new) = (0_u32, 0_u32);
                while !done.load(Ordering::Relaxed) {
                    // The query API's kind of read: a page and the total, one statement.
                    let (total, marked): (i64, i64) = sqlx::query_as(
                        "SELECT count(*), count(*) FILTER (WHERE description = 'old table') \
                           FROM projects",
                    )
                    .fetch_one(&pool)
                    .await
                    .expect("reads never fail during a rebuild");
                    assert_eq!(total, PROJECTS, "a reader saw a half-built table");
                    match marked {
                        0 => new += 1,
                        m if m == PROJECTS => old += 1,
                        m => panic!("a reader saw {m} old rows mixed with new ones"),
                    }
                }
                (old, new)
            })
        })
        .collect();

    // Let readers see the old table first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let report = projector::rebuild::rebuild(&pool, &pool, &ProjectsProjection, 500, false)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    let (mut old, mut new) = (0, 0);
    for reader in readers {
        let (o, n) = reader.await.expect("no reader saw an error");
        old += o;
        new += n;
    }
    assert!(
        old > 0 && new > 0,
        "reads spanned the swap: {old} old, {new} new"
    );
    assert_eq!(report.events, 6000);

    let state = checkpoint(&pool).await;
    assert_eq!(state.events_applied, 6000);
    assert_eq!(state.state, "running");
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('shadow_projects', 'retired_projects')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leftovers, 0, "the shadow and the old tables are gone");
    // The swapped-in table has the live table's index names, so later migrations still apply.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'projects' \
          ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "projects_created_at_idx",
            "projects_name_idx",
            "projects_owner_idx",
            "projects_pkey",
            "projects_updated_at_idx"
        ]
    );

    // The live loop goes on against the new table.
    let id = Uuid::now_v7();
    append(
        &pool,
        &[project_event(id, 1, &created("after the swap"))],
        None,
    )
    .await
    .unwrap();
    test_support::eventually(Duration::from_secs(10), "the live loop applies", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1)")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    })
    .await;
    shutdown.trigger();
    live.await.unwrap().unwrap();
    listener.abort();
    let differences = projector::rebuild::verify(&pool, &pool, &ProjectsProjection, 500)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn verify_reports_nothing_on_a_healthy_model_and_every_corrupted_row(pool: PgPool) {
    let ids = seed(&pool, 50).await;
    settle(&pool, 500).await;
    let healthy = projector::rebuild::verify(&pool, &pool, &ProjectsProjection, 20)
        .await
        .unwrap();
    assert!(healthy.is_empty(), "{healthy:?}");

    sqlx::query("UPDATE projects SET name = 'tampered' WHERE id = $1")
        .bind(ids[3])
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(ids[7])
        .execute(&pool)
        .await
        .unwrap();
    let differences = projector::rebuild::verify(&pool, &pool, &ProjectsProjection, 20)
        .await
        .unwrap();
    assert_eq!(differences.len(), 2, "{differences:?}");
    let tampered = differences
        .iter()
        .find(|d| d.key["id"] == ids[3].to_string())
        .expect("the tampered row is reported");
    assert_eq!(tampered.table, "projects");
    assert_eq!(tampered.live.as_ref().unwrap()["name"], "tampered");
    assert_eq!(tampered.rebuilt.as_ref().unwrap()["name"], "p3 renamed");
    let missing = differences
        .iter()
        .find(|d| d.key["id"] == ids[7].to_string())
        .expect("the deleted row is reported");
    assert!(missing.live.is_none() && missing.rebuilt.is_some());
    // Verification changes nothing.
    let name: String = sqlx::query_scalar("SELECT name FROM projects WHERE id = $1")
        .bind(ids[3])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "tampered");

    // The command line says the same and exits non-zero.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .args(["verify", ProjectsProjection.name()])
        .env("DATABASE_URL", database_url(&pool))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&ids[3].to_string()), "{stdout}");
    assert!(stdout.contains("2 rows differ"), "{stdout}");

    // And a rebuild repairs the model.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .args(["rebuild", ProjectsProjection.name()])
        .env("DATABASE_URL", database_url(&pool))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let repaired = projector::rebuild::verify(&pool, &pool, &ProjectsProjection, 20)
        .await
        .unwrap();
    assert!(repaired.is_empty(), "{repaired:?}");
}
