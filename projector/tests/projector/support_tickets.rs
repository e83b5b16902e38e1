//! The `support_tickets` projection built from events appended to the real log: latest status
//! and version per ticket, and a stream that contradicts the model stops it.

use std::time::{Duration, Instant};

use event_store::append::append;
use events::post::{self, PostEvent};
use events::ticket::{self, TicketEvent, TicketStatus};
use projector::Projection;
use projector::projections::SupportTicketsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{checkpoint_position, domain_event as event, settle_projection as settle};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn tickets_are_projected_with_their_latest_status_and_version(pool: PgPool) {
    let id = Uuid::now_v7().to_string();
    let t = ticket::AGGREGATE_TYPE;
    let submitter = Uuid::now_v7();
    let history = [
        event(
            t,
            &id,
            1,
            &TicketEvent::TicketOpened {
                email: "ada@example.com".into(),
                subject: "Login".into(),
                message: "Fails".into(),
                submitter_id: Some(submitter),
            },
        ),
        event(
            t,
            &id,
            2,
            &TicketEvent::TicketStatusChanged {
                from: TicketStatus::Open,
                to: TicketStatus::InProgress,
            },
        ),
        event(
            t,
            &id,
            3,
            &TicketEvent::TicketStatusChanged {
                from: TicketStatus::InProgress,
                to: TicketStatus::Resolved,
            },
        ),
    ];
    let receipt = append(&pool, &history, None).await.unwrap();
    // Events of other aggregates are not this projection's business.
    append(
        &pool,
        &[event(
            post::AGGREGATE_TYPE,
            &Uuid::now_v7().to_string(),
            1,
            &PostEvent::PostPublished {
                title: "t".into(),
                content: "c".into(),
                author: "a".into(),
                author_id: None,
            },
        )],
        None,
    )
    .await
    .unwrap();

    assert_eq!(settle(&pool, &SupportTicketsProjection).await, 3);

    let (email, status, version, created, updated, submitted_by): (
        String,
        String,
        i64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        Option<Uuid>,
    ) = sqlx::query_as(
        "SELECT email, status, version, created_at, updated_at, submitter_id \
           FROM support_tickets WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(email, "ada@example.com");
    assert_eq!(submitted_by, Some(submitter));
    assert_eq!(status, "resolved");
    assert_eq!(version, 3);
    assert!(updated >= created);
    let (position, applied) = checkpoint_position(&pool, SupportTicketsProjection::NAME).await;
    assert!(position >= receipt.last.position);
    assert_eq!(applied, 3);
    assert_eq!(SupportTicketsProjection.tables(), ["support_tickets"]);
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn a_status_change_for_a_ticket_without_a_row_stops_the_projection(pool: PgPool) {
    let id = Uuid::now_v7().to_string();
    let orphan = event(
        ticket::AGGREGATE_TYPE,
        &id,
        2,
        &TicketEvent::TicketStatusChanged {
            from: TicketStatus::Open,
            to: TicketStatus::InProgress,
        },
    );
    append(&pool, &[orphan], None).await.unwrap();
    // Transactions of other tests may hold the commit-safe horizon back for a moment.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match projector::catch_up(&pool, &SupportTicketsProjection, 100).await {
            Err(projector::EngineError::Failed { .. }) => break,
            Ok(round) if round.held_back && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => panic!("an orphan event must fail the projection, got {other:?}"),
        }
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM support_tickets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}
