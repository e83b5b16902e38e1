//! `GET /api/v1/support/tickets` and `GET /api/v1/support/tickets/{id}`.

use axum::http::StatusCode;
use events::LogPosition;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{ItemIds as _, app, at, get, get_with, set_checkpoint};

/// Inserts a ticket row as the projector would, returning its id.
pub async fn insert_ticket(pool: &PgPool, email: &str, status: &str, minutes: i64) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO support_tickets \
             (id, email, subject, message, status, created_at, updated_at, version) \
         VALUES ($1, $2, 'Subject', 'Message', $3, $4, $5, 2)",
    )
    .bind(id)
    .bind(email)
    .bind(status)
    .bind(at(minutes))
    .bind(at(100 - minutes))
    .execute(pool)
    .await
    .expect("ticket inserted");
    id
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_ticket_is_served_with_its_version_as_etag_and_304_on_a_match(pool: PgPool) {
    let id = insert_ticket(&pool, "ada@example.com", "in_progress", 1).await;
    let app = app(&pool).await;
    let uri = format!("/api/v1/support/tickets/{id}");

    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("etag").expect("etag header"), "\"2\"");
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "id": id, "email": "ada@example.com", "subject": "Subject", "message": "Message",
            "status": "in_progress", "created_at": "2026-01-01T12:01:00Z",
            "updated_at": "2026-01-01T13:39:00Z", "version": 2, "submitter_id": null,
        })
    );
    let cached = get_with(&app, &uri, &[("if-none-match", "\"2\"")]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    let stale = get_with(&app, &uri, &[("if-none-match", "\"1\"")]).await;
    assert_eq!(stale.status, StatusCode::OK);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_unknown_ticket_is_404_and_a_malformed_id_is_422(pool: PgPool) {
    let app = app(&pool).await;
    get(&app, &format!("/api/v1/support/tickets/{}", Uuid::now_v7()))
        .await
        .problem(StatusCode::NOT_FOUND);
    let body = get(&app, "/api/v1/support/tickets/nope")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "id");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn tickets_are_filtered_by_status_and_email_and_sorted(pool: PgPool) {
    let a = insert_ticket(&pool, "ada@example.com", "open", 1).await;
    let b = insert_ticket(&pool, "bob@example.com", "open", 2).await;
    let c = insert_ticket(&pool, "Ada@Example.com", "closed", 3).await;
    let app = app(&pool).await;

    let all = get(&app, "/api/v1/support/tickets").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.item_ids(), vec![c, b, a], "newest first by default");
    assert_eq!(all.json()["total"], 3);

    let open = get(&app, "/api/v1/support/tickets?status=open&sort=created_at").await;
    assert_eq!(open.item_ids(), vec![a, b]);
    assert_eq!(open.json()["total"], 2);

    let ada = get(&app, "/api/v1/support/tickets?email=ADA%40example.com").await;
    assert_eq!(
        ada.item_ids(),
        vec![c, a],
        "email matches case-insensitively"
    );

    // updated_at runs opposite to created_at in these rows.
    let by_update = get(&app, "/api/v1/support/tickets?sort=-updated_at").await;
    assert_eq!(by_update.item_ids(), vec![a, b, c]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn ticket_pages_carry_links_and_a_list_etag_that_moves_with_the_checkpoint(pool: PgPool) {
    for n in 0..3 {
        insert_ticket(&pool, "ada@example.com", "open", n).await;
    }
    set_checkpoint(
        &pool,
        "support_tickets",
        LogPosition {
            tx_id: 5,
            position: 3,
        },
    )
    .await;
    let app = app(&pool).await;
    let uri = "/api/v1/support/tickets?page=2&page_size=1";

    let page = get(&app, uri).await;
    assert_eq!(page.status, StatusCode::OK);
    let body = page.json();
    assert_eq!(
        (body["total"].as_i64(), body["pages"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(body["items"].as_array().map(Vec::len), Some(1));
    let link = page.header("link").expect("link header");
    assert!(link.contains("page=1&page_size=1>; rel=\"prev\""), "{link}");
    assert!(link.contains("page=3&page_size=1>; rel=\"next\""), "{link}");
    let etag = page.header("etag").expect("etag header").to_owned();
    assert!(etag.starts_with("W/\""));

    let cached = get_with(&app, uri, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);

    set_checkpoint(
        &pool,
        "support_tickets",
        LogPosition {
            tx_id: 6,
            position: 4,
        },
    )
    .await;
    let moved = get_with(&app, uri, &[("if-none-match", &etag)]).await;
    assert_eq!(moved.status, StatusCode::OK);
    assert_ne!(moved.header("etag").expect("etag header"), etag);

    let past = get(&app, "/api/v1/support/tickets?page=9").await;
    assert_eq!(past.json()["items"], serde_json::json!([]));
    assert_eq!(past.json()["total"], 3);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn bad_ticket_list_parameters_are_400_naming_the_parameter(pool: PgPool) {
    let app = app(&pool).await;
    let long = "a".repeat(255);
    for (query, parameter) in [
        ("status=done", "status"),
        ("status=OPEN", "status"),
        ("status=", "status"),
        ("email=", "email"),
        ("email=a%00b", "email"),
        (&*format!("email={long}"), "email"),
        ("sort=email", "sort"),
        ("sort=name", "sort"),
        ("page=0", "page"),
        ("page_size=abc", "page_size"),
        ("page_size=101", "page_size"),
    ] {
        let body = get(&app, &format!("/api/v1/support/tickets?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST);
        assert_eq!(body["parameter"], parameter, "{query}");
    }
}
