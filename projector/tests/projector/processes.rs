//! Running the real projector binary against a test's database, for tests that kill processes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The URL of the test's own database (sqlx::test names it; the pool knows it).
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

/// A free port on loopback (freed again at once; the projector binds it next).
pub fn free_addr() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// A projector process; killed (SIGKILL) when dropped, so a failing test leaves none behind.
pub struct Projector {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Projector {
    /// Starts `projector` on the test's database with `env` on top of quiet defaults (relay
    /// off unless `env` turns it on, fast leader polling).
    pub fn start(pool: &PgPool, env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_projector"));
        command
            .env("DATABASE_URL", database_url(pool))
            .env("PROJECTOR_ADDR", addr.to_string())
            .env("PROJECTOR_LEADER_POLL_MS", "100")
            .env("PROJECTOR_POLL_MS", "50")
            .env("RELAY_ENABLED", "false")
            .env("DATABASE_MAX_CONNECTIONS", "4")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the projector binary starts");
        Self { child, addr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `GET path` on the process's HTTP port; `None` while it is not listening yet.
    pub async fn get(&self, path: &str) -> Option<String> {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: projector\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    }
}

impl Drop for Projector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The process id of the projector that holds the leadership lock of `task`, if any.
pub async fn leader_of(pool: &PgPool, task: &str) -> Option<u32> {
    let key = projector::leader::lock_key(task);
    // A bigint advisory key shows in pg_locks as (classid, objid) = (high, low) 32 bits.
    let name: Option<String> = sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
            AND l.classid::bigint = (($1::bigint >> 32) & 4294967295) \
            AND l.objid::bigint = ($1::bigint & 4294967295)",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
    .unwrap();
    name.and_then(|name| name.strip_prefix("chronicle-projector/")?.parse().ok())
}

/// The `projects` checkpoint, or `None` before a process created it.
pub async fn maybe_checkpoint(pool: &PgPool) -> Option<crate::helpers::Checkpoint> {
    sqlx::query_as(
        "SELECT tx_id, position, events_applied, state, last_error \
           FROM projection_checkpoints WHERE name = 'projects'",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}
