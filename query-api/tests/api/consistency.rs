//! `X-Consistency-Token`: waiting until the projection covers a command's events.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use events::{ConsistencyToken, LogPosition};
use sqlx::PgPool;

use event_store::wake::CheckpointMoved;

use crate::helpers::{
    ItemIds as _, announce, app_and_state, app_with, append_event, get_with, insert_project,
    notify_checkpoint, project, set_checkpoint, waiting,
};

fn token(position: LogPosition) -> String {
    ConsistencyToken::at(position).encode()
}

/// Sends `GET /api/v1/projects` with `token` in the background, to look at while it waits.
fn pending_list(
    app: &axum::Router,
    token: String,
) -> tokio::task::JoinHandle<crate::helpers::Answer> {
    let app = app.clone();
    tokio::spawn(async move {
        get_with(&app, "/api/v1/projects", &[("x-consistency-token", &token)]).await
    })
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_token_already_covered_is_answered_at_once(pool: PgPool) {
    let position = append_event(&pool, "Project", "p1", 1).await;
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    set_checkpoint(&pool, "projects", position).await;
    let app = app_with(&pool, waiting(Duration::from_secs(10))).await;
    let token = token(position);

    let started = Instant::now();
    let list = get_with(&app, "/api/v1/projects", &[("x-consistency-token", &token)]).await;
    let item = get_with(
        &app,
        &format!("/api/v1/projects/{}", row.id),
        &[("x-consistency-token", &token)],
    )
    .await;

    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(item.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_request_waits_until_the_projection_applies_the_token(pool: PgPool) {
    let before = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", before).await;
    let target = append_event(&pool, "Project", "p2", 1).await;
    let app = app_with(&pool, waiting(Duration::from_secs(10))).await;
    let started = Instant::now();
    let pending = pending_list(&app, token(target));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "the request must wait for the projection"
    );

    // The projector applies the event: its row and the checkpoint commit together, then it
    // announces the move.
    let row = project("Artemis");
    let mut tx = pool.begin().await.expect("begin");
    insert_project(&mut *tx, &row).await;
    set_checkpoint(&mut *tx, "projects", target).await;
    tx.commit().await.expect("commit");
    notify_checkpoint(&pool, "projects").await;

    let answer = pending.await.expect("request task");
    assert_eq!(answer.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(answer.item_ids(), vec![row.id]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_token_never_reached_times_out_with_503_and_retry_after(pool: PgPool) {
    let behind = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", behind).await;
    let ahead = LogPosition {
        tx_id: behind.tx_id + 1000,
        position: behind.position + 1000,
    };
    let app = app_with(&pool, waiting(Duration::from_millis(200))).await;
    let row = project("Apollo");
    insert_project(&pool, &row).await;

    for uri in [
        "/api/v1/projects".to_owned(),
        format!("/api/v1/projects/{}", row.id),
    ] {
        let started = Instant::now();
        let answer = get_with(&app, &uri, &[("x-consistency-token", &token(ahead))]).await;
        let waited = started.elapsed();

        let body = answer.problem(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["type"], "/problems/unavailable");
        assert_eq!(
            answer.header("retry-after").expect("retry-after header"),
            "1"
        );
        assert!(waited >= Duration::from_millis(200), "{uri}: {waited:?}");
        assert!(waited < Duration::from_secs(3), "{uri}: {waited:?}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_missing_checkpoint_counts_as_the_start_of_the_log(pool: PgPool) {
    let app = app_with(&pool, waiting(Duration::from_millis(100))).await;

    let start = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &token(LogPosition::START))],
    )
    .await;
    // A project event no checkpoint covers: the projection has not started, so it waits.
    let unapplied = append_event(&pool, "Project", "p1", 1).await;
    let later = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &token(unapplied))],
    )
    .await;

    assert_eq!(start.status, StatusCode::OK);
    later.problem(StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_malformed_token_is_400(pool: PgPool) {
    let app = app_with(&pool, waiting(Duration::from_secs(10))).await;

    for bad in ["garbage!", "", "LTEuMg"] {
        let answer = get_with(&app, "/api/v1/projects", &[("x-consistency-token", bad)]).await;
        let body = answer.problem(StatusCode::BAD_REQUEST);
        assert_eq!(body["header"], "X-Consistency-Token", "{bad:?}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_token_from_another_resource_does_not_wait_for_this_projection(pool: PgPool) {
    let applied = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", applied).await;
    // The client's latest command was on a ticket: the projects projection never reads it.
    let elsewhere = append_event(&pool, "SupportTicket", "t1", 1).await;
    let app = app_with(&pool, waiting(Duration::from_secs(30))).await;
    let started = std::time::Instant::now();
    let answer = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &token(elsewhere))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    // Far below the 30 s wait: answered because nothing is left to apply, not by timing out.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // A project event after the ticket is still waited for.
    let pending = append_event(&pool, "Project", "p2", 1).await;
    let short = app_with(&pool, waiting(Duration::from_millis(200))).await;
    let answer = get_with(
        &short,
        "/api/v1/projects",
        &[("x-consistency-token", &token(pending))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_far_future_token_costs_a_few_queries_not_one_every_25_ms(pool: PgPool) {
    let behind = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", behind).await;
    let far = LogPosition {
        tx_id: i64::MAX / 2,
        position: i64::MAX / 2,
    };
    let (app, state) = app_and_state(&pool, waiting(Duration::from_millis(2500))).await;
    // Announcements of other projections and of earlier checkpoints arrive meanwhile; each
    // wakes the waiter, none sends it to the database.
    let chatter = tokio::spawn({
        let pool = pool.clone();
        async move {
            for n in 1..=20 {
                announce(
                    &pool,
                    &CheckpointMoved {
                        projection: if n % 2 == 0 {
                            "projects"
                        } else {
                            "support_tickets"
                        }
                        .to_owned(),
                        checkpoint: behind,
                        generation: 0,
                        changed: Vec::new(),
                        complete: true,
                    },
                )
                .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let answer = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &token(far))],
    )
    .await;
    chatter.await.expect("chatter");

    answer.problem(StatusCode::SERVICE_UNAVAILABLE);
    // Checkpoint and horizon (two queries) up front, after the listener's start-up gap, at
    // each second of fallback and once more at the deadline: 2 * 5 = 10, with room for one
    // reconnect. Polling every 25 ms made it about 200.
    let queries = state.wait_queries();
    assert!(queries <= 12, "{queries} queries for one far-future token");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_announcement_that_reaches_the_token_ends_the_wait_without_a_query(pool: PgPool) {
    let before = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", before).await;
    let target = append_event(&pool, "Project", "p2", 1).await;
    let (app, state) = app_and_state(&pool, waiting(Duration::from_secs(10))).await;
    let pending = pending_list(&app, token(target));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queries_while_waiting = state.wait_queries();

    // The projector commits and announces; the waiter learns the checkpoint from the payload.
    set_checkpoint(&pool, "projects", target).await;
    announce(
        &pool,
        &CheckpointMoved {
            projection: "projects".to_owned(),
            checkpoint: target,
            generation: 0,
            changed: vec![("p2".to_owned(), 1)],
            complete: true,
        },
    )
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answered well before the fallback could matter")
        .expect("request task");

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(state.wait_queries(), queries_while_waiting);
}

/// A token naming the aggregate type of the event at `position`, as the command API issues.
fn typed(position: LogPosition, aggregate_type: &str) -> String {
    ConsistencyToken::after(position, aggregate_type).encode()
}

/// Announces that `projection` reached `checkpoint` and waits until the app has applied it,
/// so its announcements are live.
async fn announce_live(pool: &PgPool, state: &query_api::AppState, checkpoint: LogPosition) {
    announce(
        pool,
        &CheckpointMoved {
            projection: "projects".to_owned(),
            checkpoint,
            generation: 0,
            changed: Vec::new(),
            complete: true,
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while state
        .announced()
        .live("projects")
        .is_none_or(|live| live.position < checkpoint)
    {
        assert!(Instant::now() < deadline, "the announcement never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_token_of_a_type_the_projection_reads_waits_on_announcements_without_a_query(
    pool: PgPool,
) {
    let before = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", before).await;
    let (app, state) = app_and_state(&pool, waiting(Duration::from_secs(10))).await;
    announce_live(&pool, &state, before).await;
    let target = append_event(&pool, "Project", "p2", 1).await;
    let queries_before = state.wait_queries();
    let pending = pending_list(&app, typed(target, "Project"));
    // The waiter must not answer before the projection applies the token.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !pending.is_finished(),
        "answered before the projection moved"
    );

    set_checkpoint(&pool, "projects", target).await;
    announce_live(&pool, &state, target).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answered on the announcement")
        .expect("request task");

    assert_eq!(answer.status, StatusCode::OK);
    // No checkpoint read and no check of what is left to apply: the untyped token's wait
    // costs two or three.
    assert_eq!(state.wait_queries(), queries_before);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_typed_token_reads_only_the_checkpoint_when_announcements_are_not_live(pool: PgPool) {
    let behind = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", behind).await;
    let target = append_event(&pool, "Project", "p2", 1).await;
    // Nothing announced since start: the announcements cannot say where the checkpoint is.
    let (app, state) = app_and_state(&pool, waiting(Duration::from_millis(300))).await;
    assert_eq!(state.announced().live("projects"), None);

    let answer = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &typed(target, "Project"))],
    )
    .await;

    answer.problem(StatusCode::SERVICE_UNAVAILABLE);
    // The checkpoint up front and at the deadline, never what is left to apply (the event at
    // the token is the projection's own): an untyped token costs at least four.
    assert_eq!(state.wait_queries(), 2);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_announcement_the_projector_failed_to_send_costs_a_fresh_waiter_one_read(pool: PgPool) {
    let before = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", before).await;
    let (app, state) = app_and_state(&pool, waiting(Duration::from_secs(10))).await;
    announce_live(&pool, &state, before).await;
    // The projector applies the next event but its announcement is lost.
    let target = append_event(&pool, "Project", "p2", 1).await;
    set_checkpoint(&pool, "projects", target).await;
    let queries_before = state.wait_queries();

    let started = Instant::now();
    let answer = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &typed(target, "Project"))],
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(state.wait_queries(), queries_before + 1);
    // Found by the first read after `ANNOUNCED_ONLY_FOR`, long before the fallback that
    // bounds later re-checks.
    assert!(
        started.elapsed() < query_api::consistency::FALLBACK_RECHECK,
        "{:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_typed_token_of_a_type_the_projection_does_not_read_is_checked_as_before(pool: PgPool) {
    let applied = append_event(&pool, "Project", "p1", 1).await;
    set_checkpoint(&pool, "projects", applied).await;
    let (app, state) = app_and_state(&pool, waiting(Duration::from_secs(30))).await;
    announce_live(&pool, &state, applied).await;
    // The client's latest command was on a ticket, after a project it also changed: the
    // projects read must cover that project, so it cannot wait on announcements alone.
    let project = append_event(&pool, "Project", "p2", 1).await;
    let ticket = append_event(&pool, "SupportTicket", "t1", 1).await;
    let short = app_with(&pool, waiting(Duration::from_millis(300))).await;
    let answer = get_with(
        &short,
        "/api/v1/projects",
        &[("x-consistency-token", &typed(ticket, "SupportTicket"))],
    )
    .await;
    answer.problem(StatusCode::SERVICE_UNAVAILABLE);

    // Once the project is applied, nothing up to the ticket concerns the projection.
    set_checkpoint(&pool, "projects", project).await;
    let answer = get_with(
        &app,
        "/api/v1/projects",
        &[("x-consistency-token", &typed(ticket, "SupportTicket"))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}
