//! The wave-1 projections (support tickets, community posts, service status) built from
//! events appended to the real log, with their checkpoints, replays and poison handling.

use std::time::{Duration, Instant};

use cqrs_es::DomainEvent;
use event_store::append::{NewEvent, append};
use events::post::{self, PostEvent};
use events::status::{self, ServiceHealth, ServiceStatusEvent};
use events::ticket::{self, TicketEvent, TicketStatus};
use projector::Projection;
use projector::projections::{
    CommunityPostsProjection, ServiceStatusProjection, SupportTicketsProjection,
};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

fn event<E: DomainEvent + Serialize>(
    aggregate_type: &str,
    id: &str,
    sequence: i64,
    event: &E,
) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: id.to_owned(),
        sequence,
        event_type: event.event_type(),
        event_version: event.event_version(),
        payload: serde_json::to_value(event).unwrap(),
        metadata: serde_json::json!({ "actor": "tester", "request_id": "r",
                                      "correlation_id": "c", "causation_id": "c" }),
    }
}

/// Catches `projection` up until nothing committed is held back (bounded).
async fn settle(pool: &PgPool, projection: &dyn Projection) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut applied = 0;
    loop {
        let round = projector::catch_up(pool, projection, 100).await.unwrap();
        applied += round.applied;
        if !round.held_back {
            return applied;
        }
        assert!(Instant::now() < deadline, "events stayed held back for 15s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn checkpoint_position(pool: &PgPool, name: &str) -> (i64, i64) {
    sqlx::query_as("SELECT position, events_applied FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn tickets_are_projected_with_their_latest_status_and_version(pool: PgPool) {
    let id = Uuid::now_v7().to_string();
    let t = ticket::AGGREGATE_TYPE;
    let history = [
        event(
            t,
            &id,
            1,
            &TicketEvent::TicketOpened {
                email: "ada@example.com".into(),
                subject: "Login".into(),
                message: "Fails".into(),
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
            },
        )],
        None,
    )
    .await
    .unwrap();

    assert_eq!(settle(&pool, &SupportTicketsProjection).await, 3);

    let (email, status, version, created, updated): (
        String,
        String,
        i64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT email, status, version, created_at, updated_at FROM support_tickets \
          WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(email, "ada@example.com");
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

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn posts_are_projected_and_a_deleted_post_is_marked_not_removed(pool: PgPool) {
    let kept = Uuid::now_v7().to_string();
    let gone = Uuid::now_v7().to_string();
    let p = post::AGGREGATE_TYPE;
    let published = |title: &str| PostEvent::PostPublished {
        title: title.into(),
        content: "c".into(),
        author: "ada".into(),
    };
    append(
        &pool,
        &[
            event(p, &kept, 1, &published("Kept")),
            event(
                p,
                &kept,
                2,
                &PostEvent::PostEdited {
                    title: None,
                    content: Some("new".into()),
                },
            ),
            event(p, &gone, 1, &published("Gone")),
            event(p, &gone, 2, &PostEvent::PostDeleted {}),
        ],
        None,
    )
    .await
    .unwrap();

    assert_eq!(settle(&pool, &CommunityPostsProjection).await, 4);

    let rows: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
        "SELECT id::text, title, content, version, deleted_at IS NOT NULL \
           FROM community_posts ORDER BY title DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (kept.clone(), "Kept".into(), "new".into(), 2, false),
            (gone.clone(), "Gone".into(), "c".into(), 2, true),
        ]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn service_status_keeps_every_report_and_the_newest_per_service(pool: PgPool) {
    let s = status::AGGREGATE_TYPE;
    let reported =
        |status: ServiceHealth, description: Option<&str>| ServiceStatusEvent::StatusReported {
            status,
            description: description.map(str::to_owned),
        };
    append(
        &pool,
        &[
            event(s, "api", 1, &reported(ServiceHealth::Operational, None)),
            event(
                s,
                "api",
                2,
                &reported(ServiceHealth::MajorOutage, Some("down")),
            ),
            event(s, "db", 1, &reported(ServiceHealth::UnderMaintenance, None)),
        ],
        None,
    )
    .await
    .unwrap();
    append(
        &pool,
        &[event(
            s,
            "api",
            3,
            &reported(ServiceHealth::PartialOutage, Some("better")),
        )],
        None,
    )
    .await
    .unwrap();

    assert_eq!(settle(&pool, &ServiceStatusProjection).await, 4);

    let latest: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT service_id, status, description, version FROM service_status_latest \
          ORDER BY service_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        latest,
        vec![
            (
                "api".into(),
                "partial_outage".into(),
                Some("better".into()),
                3
            ),
            ("db".into(), "under_maintenance".into(), None, 1),
        ]
    );
    let history: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, status FROM service_status_history WHERE service_id = 'api' \
          ORDER BY created_at, version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        vec![
            (1, "operational".into()),
            (2, "major_outage".into()),
            (3, "partial_outage".into()),
        ]
    );
    assert_eq!(
        ServiceStatusProjection.tables(),
        ["service_status_latest", "service_status_history"]
    );
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn replaying_a_status_report_changes_nothing(pool: PgPool) {
    let s = status::AGGREGATE_TYPE;
    let events = [
        event(
            s,
            "api",
            1,
            &ServiceStatusEvent::StatusReported {
                status: ServiceHealth::MajorOutage,
                description: None,
            },
        ),
        event(
            s,
            "api",
            2,
            &ServiceStatusEvent::StatusReported {
                status: ServiceHealth::Operational,
                description: None,
            },
        ),
    ];
    append(&pool, &events, None).await.unwrap();
    settle(&pool, &ServiceStatusProjection).await;
    // Re-apply the older event by hand, as a duplicate delivery would.
    let recorded = event_store::log::read_after(
        &pool,
        events::LogPosition::START,
        10,
        &event_store::LogFilter::default(),
    )
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    ServiceStatusProjection
        .apply(&mut tx, &recorded[0])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let latest: (String, i64) = sqlx::query_as(
        "SELECT status, version FROM service_status_latest WHERE service_id = 'api'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(latest, ("operational".into(), 2));
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM service_status_history")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(history, 2);
}
