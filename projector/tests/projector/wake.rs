//! The running projector: woken by the append notification, serving health and metrics,
//! stopping on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use event_store::append::append;
use projector::Settings;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use test_support::eventually;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use crate::helpers::{created, project_event};

async fn has_row(pool: &PgPool, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn listening(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                         WHERE datname = current_database() \
                           AND query LIKE 'LISTEN %chronicle_events%')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A free port on loopback (freed again at once; the projector binds it next).
fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: projector\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_append_notification_wakes_the_projector_long_before_its_poll(pool: PgPool) {
    let settings = Settings {
        poll_interval: Duration::from_secs(60),
        ..Settings::local(free_addr())
    };
    let addr = settings.addr;
    let shutdown = Shutdown::new();
    let running = tokio::spawn(projector::run(settings, pool.clone(), shutdown.clone()));
    eventually(Duration::from_secs(5), "the projector listens", || {
        listening(&pool)
    })
    .await;

    let id = Uuid::now_v7();
    append(&pool, &[project_event(id, 1, &created("woken"))], None)
        .await
        .unwrap();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(event_store::wake::EVENTS_CHANNEL)
        .execute(&pool)
        .await
        .unwrap();
    // Bounded well below the 60 s poll, yet loose enough for other tests' open transactions,
    // which hold the cluster-wide horizon back for a while.
    eventually(Duration::from_secs(20), "the append is projected", || {
        has_row(&pool, id)
    })
    .await;

    let health = get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = get(addr, "/metrics").await;
    assert!(
        metrics.contains("chronicle_projection_events_applied_total{projection=\"projects\"}"),
        "{metrics}"
    );

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the projector stops on shutdown")
        .expect("the projector does not panic")
        .expect("the projector stops cleanly");
}

/// Waits, at most 10 s, until `wake` is poked; fails with `what` otherwise.
async fn woken(wake: &tokio::sync::Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .expect(what);
}

/// Whether `wake` was poked since it was last waited on (a poke leaves a permit).
fn poked(wake: &tokio::sync::Notify) -> bool {
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable()
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn an_append_notification_wakes_only_the_readers_of_the_types_it_names(pool: PgPool) {
    use event_store::wake::{AppendNotifier, EVENTS_CHANNEL, MAIL_OUTBOX, listen_routed};

    let (wakes, task) = listen_routed(pool.clone(), EVENTS_CHANNEL);
    let projects = wakes.register(&["Project"]);
    let tickets = wakes.register(&["SupportTicket", MAIL_OUTBOX]);
    let everything = wakes.register(&[]);
    let sentinel = wakes.register(&["Sentinel"]);
    // Listening starts with a gap (notifications before it are lost), which wakes everyone.
    for wake in [&projects, &tickets, &everything, &sentinel] {
        woken(wake, "the first LISTEN wakes every reader").await;
    }

    let notifier = AppendNotifier::spawn(pool.clone(), EVENTS_CHANNEL);
    notifier.notify_appended(["Project"]);
    woken(&projects, "a Project append wakes the projects reader").await;
    woken(
        &everything,
        "a reader of every type is woken by each notification",
    )
    .await;
    notifier.notify_appended([MAIL_OUTBOX]);
    woken(&tickets, "the outbox wakes its reader").await;
    woken(
        &everything,
        "a reader of every type is woken by each notification",
    )
    .await;
    // Notifications arrive in order on one connection: once the sentinel's is in, the two
    // before it have been routed in full.
    notifier.notify_appended(["Sentinel"]);
    woken(&sentinel, "the sentinel is woken").await;
    assert!(
        !poked(&projects),
        "the outbox did not wake the projects reader"
    );
    assert!(
        !poked(&tickets),
        "a Project append did not wake the tickets reader"
    );
    // A notification naming nothing (an older command API) wakes every reader.
    notifier.notify();
    for wake in [&projects, &tickets, &sentinel] {
        woken(wake, "an unnamed append wakes every reader").await;
    }
    task.abort();
}
