//! A ticket opened by a signed-in account without an address is answered at the account's.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_signed_in_ticket_without_an_address_takes_the_accounts(pool: PgPool) {
    let mut mailbox = Mailbox::open().await;
    let relay = MailRelay::start(&pool);
    let api = instance(&pool, auth_settings());
    let email = address("customer");
    let account_id = registered(&api, &mut mailbox, &email).await;
    let session = api.login(&email, PASSWORD).await;

    let mine = api
        .post_as(
            Some(&session.access),
            "/api/v1/support/tickets",
            &json!({ "subject": "Help", "message": "Please" }),
        )
        .await;
    assert_eq!(mine.status, StatusCode::CREATED, "{}", mine.text());
    let other = api
        .post_as(
            Some(&session.access),
            "/api/v1/support/tickets",
            &json!({ "email": "work@example.com", "subject": "Help", "message": "Please" }),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text());

    let opened: Vec<(String, String)> = sqlx::query_as(
        "SELECT payload->'TicketOpened'->>'email', payload->'TicketOpened'->>'submitter_id' \
           FROM events WHERE event_type = 'TicketOpened' ORDER BY global_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        opened,
        [
            (email.clone(), account_id.clone()),
            ("work@example.com".to_owned(), account_id)
        ]
    );
    relay.stop().await;
}
