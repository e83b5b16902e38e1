//! The running projector's `/metrics`, scraped over HTTP after it applied an event: every
//! family catalogued in docs/metrics.md with its type, labels and HELP, nothing unprefixed,
//! `promtool check metrics` clean, and the projection gauges read from the database.

use std::net::SocketAddr;
use std::time::Duration;

use event_store::append::append;
use projector::Settings;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::eventually;
use test_support::exposition::{assert_catalogued, value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use crate::helpers::{created, project_event};

/// The body of `GET /metrics`, or `None` while the projector does not answer.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: projector\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn metrics_match_the_catalogue_once_a_projection_ran(pool: PgPool) {
    // Installs the SQL timing layer, whose histograms the scrape reads.
    test_support::init_logging();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    let shutdown = Shutdown::new();
    let running = tokio::spawn(projector::run(
        Settings::local(addr),
        pool.clone(),
        shutdown.clone(),
    ));
    append(
        &pool,
        &[project_event(Uuid::now_v7(), 1, &created("scraped"))],
        None,
    )
    .await
    .unwrap();

    let applied = |text: &str| {
        let projects = [("projection", "projects")];
        value(text, "chronicle_projection_events_applied_total", &projects)
            .is_some_and(|v| v >= 1.0)
            && value(text, "chronicle_projection_lag_events", &projects).is_some()
            && value(text, "chronicle_projection_lag_seconds", &projects).is_some()
            && projector::projections().iter().all(|projection| {
                value(
                    text,
                    "chronicle_projection_state",
                    &[("projection", projection.name()), ("state", "running")],
                )
                .is_some()
            })
    };
    eventually(
        Duration::from_secs(20),
        "/metrics shows the projection applied and its gauges",
        || async move { scrape(addr).await.is_some_and(|text| applied(&text)) },
    )
    .await;

    let text = scrape(addr).await.unwrap();
    assert_catalogued(&text);
    // Every state has its series, each 0 or 1 (the registry is the test binary's, shared with
    // projectors of other tests' databases, so the sum is not this database's alone).
    for projection in projector::projections() {
        let name = projection.name();
        let states: Vec<f64> = service_kit::metric_names::PROJECTION_STATES
            .iter()
            .map(|state| {
                value(
                    &text,
                    "chronicle_projection_state",
                    &[("projection", name), ("state", state)],
                )
                .unwrap_or_else(|| panic!("{name} {state} missing\n{text}"))
            })
            .collect();
        assert!(
            states.iter().all(|v| *v == 0.0 || *v == 1.0),
            "{name}: {states:?}"
        );
    }
    assert!(
        value(
            &text,
            "chronicle_db_pool_max_connections",
            &[("service", "projector")]
        )
        .is_some_and(|max| max >= 1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "chronicle_projection_leader",
            &[("projection", "projects")]
        )
        .is_some(),
        "{text}"
    );

    assert!(
        value(
            &text,
            "chronicle_db_query_duration_seconds_count",
            &[("service", "projector")]
        )
        .is_some_and(|count| count >= 1.0),
        "{text}"
    );

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the projector stops on shutdown")
        .expect("the projector does not panic")
        .expect("the projector stops cleanly");
}
