//! Revalidating an item from the versions the projector announced (`CheckpointMoved`): a 304
//! without a query for an exact, current match, and never a 304 for a version the read model
//! has moved past once the announcement of that move has been received.

use axum::http::StatusCode;
use event_store::wake::{CheckpointMoved, Delivery};
use events::{ConsistencyToken, LogPosition};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    announce, app_and_state, get_with, insert_project, project, set_checkpoint, until_announced,
};

fn at(n: i64) -> LogPosition {
    LogPosition {
        tx_id: 100 + n,
        position: n,
    }
}

fn moved(n: i64, generation: i64, changed: &[(Uuid, i64)], complete: bool) -> CheckpointMoved {
    CheckpointMoved {
        projection: "projects".to_owned(),
        checkpoint: at(n),
        generation,
        changed: changed
            .iter()
            .map(|(id, version)| (id.to_string(), *version))
            .collect(),
        complete,
    }
}

async fn set_version(pool: &PgPool, id: Uuid, version: i64) {
    sqlx::query("UPDATE projects SET version = $2 WHERE id = $1")
        .bind(id)
        .bind(version)
        .execute(pool)
        .await
        .expect("version set");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_announced_version_answers_304_only_while_it_is_current(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let (app, state) = app_and_state(&pool, query_api::Settings::default()).await;
    let uri = format!("/api/v1/projects/{}", row.id);
    let revalidate = async |tag: &str| get_with(&app, &uri, &[("if-none-match", tag)]).await;

    announce(&pool, &moved(1, 0, &[(row.id, 1)], true)).await;
    until_announced(&state, "projects", at(1)).await;
    // Answered from the announcement: the row could as well be gone from the table.
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(row.id)
        .execute(&pool)
        .await
        .expect("deleted");
    let cached = revalidate("\"1\"").await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.header("etag").expect("etag header"), "\"1\"");
    // `*` is not vouched for by a version: the table answers, and the row is gone.
    assert_eq!(revalidate("*").await.status, StatusCode::NOT_FOUND);
    insert_project(&pool, &row).await;

    // The projector moves the row to version 2 and announces it: "1" is never 304 again.
    set_version(&pool, row.id, 2).await;
    announce(&pool, &moved(2, 0, &[(row.id, 2)], true)).await;
    until_announced(&state, "projects", at(2)).await;
    let moved_on = revalidate("\"1\"").await;
    assert_eq!(moved_on.status, StatusCode::OK);
    assert_eq!(moved_on.header("etag").expect("etag header"), "\"2\"");
    assert_eq!(revalidate("\"2\"").await.status, StatusCode::NOT_MODIFIED);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn whatever_may_hide_a_move_sends_revalidation_back_to_the_table(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let (app, state) = app_and_state(&pool, query_api::Settings::default()).await;
    let uri = format!("/api/v1/projects/{}", row.id);
    let revalidate = async |tag: &str| get_with(&app, &uri, &[("if-none-match", tag)]).await;

    // Each case: the map learns version 1, the row then moves to 2 in the table, and what
    // follows may have hidden the announcement of that move. The table must answer.
    let mut n = 0;
    for case in ["incomplete", "generation", "gap", "lagged", "bare name"] {
        n += 1;
        set_version(&pool, row.id, 1).await;
        announce(&pool, &moved(10 * n, 0, &[(row.id, 1)], true)).await;
        until_announced(&state, "projects", at(10 * n)).await;
        assert_eq!(
            revalidate("\"1\"").await.status,
            StatusCode::NOT_MODIFIED,
            "{case}"
        );

        set_version(&pool, row.id, 2).await;
        match case {
            "incomplete" => {
                announce(&pool, &moved(10 * n + 1, 0, &[], false)).await;
                until_announced(&state, "projects", at(10 * n + 1)).await;
            }
            "generation" => {
                announce(&pool, &moved(10 * n + 1, 1, &[], true)).await;
                until_announced(&state, "projects", at(10 * n + 1)).await;
                // Back to generation 0 for the next case (a second swap).
                announce(&pool, &moved(10 * n + 2, 0, &[], true)).await;
                until_announced(&state, "projects", at(10 * n + 2)).await;
            }
            "gap" => state.announced().apply(&Delivery::Gap),
            "lagged" => state.announced().lagged(),
            _ => {
                let before = state.announced().plain_wakes();
                crate::helpers::notify_checkpoint(&pool, "projects").await;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while state.announced().plain_wakes() == before {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "bare name not received"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            }
        }
        let answer = revalidate("\"1\"").await;
        assert_eq!(answer.status, StatusCode::OK, "{case}");
        assert_eq!(
            answer.header("etag").expect("etag header"),
            "\"2\"",
            "{case}"
        );
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_token_uses_the_announcements_only_once_they_reach_it(pool: PgPool) {
    let row = project("Apollo");
    insert_project(&pool, &row).await;
    let (app, state) = app_and_state(&pool, query_api::Settings::default()).await;
    let uri = format!("/api/v1/projects/{}", row.id);

    announce(&pool, &moved(1, 0, &[(row.id, 1)], true)).await;
    until_announced(&state, "projects", at(1)).await;
    // The table is at checkpoint 2 with version 2, whose announcement has not arrived: a
    // request with a token at 2 waits (the table has it) and must not trust the map at 1.
    set_version(&pool, row.id, 2).await;
    set_checkpoint(&pool, "projects", at(2)).await;
    let token = ConsistencyToken::at(at(2)).encode();
    let answer = get_with(
        &app,
        &uri,
        &[("if-none-match", "\"1\""), ("x-consistency-token", &token)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"2\"");

    // Once the announcement has arrived, the map answers for the token.
    announce(&pool, &moved(2, 0, &[(row.id, 2)], true)).await;
    until_announced(&state, "projects", at(2)).await;
    sqlx::query("DELETE FROM projects WHERE id = $1")
        .bind(row.id)
        .execute(&pool)
        .await
        .expect("deleted");
    let answer = get_with(
        &app,
        &uri,
        &[("if-none-match", "\"2\""), ("x-consistency-token", &token)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_MODIFIED);
}
