//! The one-process runner (`chronicle serve`): the three services share one metrics registry,
//! so each `/metrics` shows every service's families, kept apart by their `service` label, and
//! all of it matches the catalogue (docs/metrics.md) and passes `promtool check metrics`.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on broken set-up")]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use test_support::eventually;
use test_support::exposition::{assert_catalogued, value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The `chronicle` process; killed when dropped, so a failing test leaves none behind.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// Sends one HTTP/1.1 request; the status line's code and the body, or `None` while nothing
/// listens.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: chronicle\r\nConnection: close\r\n\
         Authorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        test_support::auth::tester().bearer(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn one_registry_serves_every_service_apart_and_catalogued(pool: PgPool) {
    let options = pool.connect_options();
    let url = format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    );
    let (commands, queries, projector) = (free_addr(), free_addr(), free_addr());
    let _runner = Runner(
        Command::new(env!("CARGO_BIN_EXE_chronicle"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("COMMAND_API_ADDR", commands.to_string())
            .env("QUERY_API_ADDR", queries.to_string())
            .env("PROJECTOR_ADDR", projector.to_string())
            .env("RELAY_ENABLED", "false")
            // Keys the test signs its access tokens with.
            .env("AUTH_SIGNING_KEYS", test_support::auth::keys_pem())
            .env(
                "AUTH_SECRET_KEY",
                auth::secret::SecretKey::generate().to_base64(),
            )
            .env("DATABASE_MAX_CONNECTIONS", "6")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the chronicle binary starts"),
    );
    eventually(
        Duration::from_secs(30),
        "every service answers",
        || async move {
            let mut up = true;
            for addr in [commands, queries, projector] {
                up &= send(addr, "GET", "/healthz", "")
                    .await
                    .is_some_and(|(s, _)| s == 200);
            }
            up
        },
    )
    .await;

    let (status, created) = send(
        commands,
        "POST",
        "/api/v1/projects",
        r#"{"name":"Scraped"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let (status, _) = send(queries, "GET", "/api/v1/projects", "").await.unwrap();
    assert_eq!(status, 200);
    // Each scrape refreshes its own service's pool gauges; scrape all three, then check one.
    for addr in [commands, queries] {
        assert_eq!(send(addr, "GET", "/metrics", "").await.unwrap().0, 200);
    }
    let applied = |text: &str| {
        value(
            text,
            "chronicle_projection_events_applied_total",
            &[("projection", "projects")],
        )
        .is_some_and(|v| v >= 1.0)
    };
    eventually(
        Duration::from_secs(20),
        "the projector applied the event",
        || async move {
            send(projector, "GET", "/metrics", "")
                .await
                .is_some_and(|(_, text)| applied(&text))
        },
    )
    .await;
    let (status, text) = send(projector, "GET", "/metrics", "").await.unwrap();
    assert_eq!(status, 200);
    assert_catalogued(&text);

    for service in ["command-api", "query-api", "projector"] {
        assert!(
            value(
                &text,
                "chronicle_http_requests_total",
                &[("service", service)]
            )
            .is_some_and(|v| v >= 1.0),
            "{service}\n{text}"
        );
        // One pool of 6 for the three; the query API reads items on a lane of 6 more
        // (docs/decisions/0022-read-lane.md), which its gauges count with the pool.
        let pooled = if service == "query-api" { 12.0 } else { 6.0 };
        assert!(
            value(
                &text,
                "chronicle_db_pool_max_connections",
                &[("service", service)]
            ) == Some(pooled),
            "{service}\n{text}"
        );
        assert!(
            value(
                &text,
                "chronicle_db_query_duration_seconds_count",
                &[("service", service)]
            )
            .is_some_and(|v| v >= 1.0),
            "{service}\n{text}"
        );
    }
    assert!(
        value(
            &text,
            "chronicle_db_pool_acquire_duration_seconds_count",
            &[("service", "command-api")]
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            "chronicle_commands_total",
            &[("aggregate_type", "Project"), ("outcome", "ok")]
        ) == Some(1.0),
        "{text}"
    );
}
