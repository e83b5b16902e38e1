//! The service status projections built from events appended to the real log: every report
//! kept, the newest per service, and replays changing nothing.

use event_store::append::append;
use events::status::{self, ServiceHealth, ServiceStatusEvent};
use projector::Projection;
use projector::projections::ServiceStatusProjection;
use sqlx::PgPool;

use crate::helpers::{domain_event as event, settle_projection as settle};

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
