//! Starting the system under test the same way every run: a fresh database, the three release
//! binaries (and the bench's reference service) as child processes on free loopback ports,
//! readiness, peak memory, and SIGTERM at the end.
//!
//! Everything here targets the PostgreSQL server on 127.0.0.1:5432, the RabbitMQ broker on
//! 127.0.0.1:5672 when present, and loopback ports only.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};

use crate::client::Http;
use crate::report::Memory;

/// The signing key (PKCS#8 PEM) and secret key (base64) every service this process starts
/// shares: the command API refuses to start without them, and replicas must agree on them.
static AUTH_KEYS: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    (
        auth::generate_signing_key_pem(),
        auth::secret::SecretKey::generate().to_base64(),
    )
});

/// The lifetime of the bench's access token: longer than any run, so no figure is cut short by
/// an expired token (the services check `exp`, not the lifetime).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// An access token for the services this process starts: an admin's, signed with the key they
/// were given, as `POST /api/v1/auth/login` would issue it but without its 15-minute lifetime.
///
/// # Errors
///
/// The key does not load or the token cannot be signed.
pub fn access_token() -> anyhow::Result<String> {
    let settings = auth::TokenSettings {
        access_ttl: TOKEN_TTL,
        ..auth::TokenSettings::default()
    };
    let keys = auth::SigningKeys::from_pem(&AUTH_KEYS.0, settings).context("loading the key")?;
    let now = chrono::Utc::now();
    let issued = keys
        .issue(
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            &[auth::Role::Admin],
            &["pwd"],
            now,
            now,
        )
        .context("signing the bench's access token")?;
    Ok(issued.token)
}

/// The server every run uses: this machine's PostgreSQL, trust auth.
pub const SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// The service binaries, by the names `cargo build --release --workspace --bins` gives them.
pub const SERVICES: [&str; 3] = ["command-api", "query-api", "projector"];

/// The bench's own reference service (`bench/src/bin/reference.rs`), built by the same command.
pub const REFERENCE: &str = "reference";

/// The URL of database `name` on [`SERVER_URL`].
pub fn database_url(name: &str) -> String {
    format!("{SERVER_URL}/{name}")
}

/// Drops `name` (forcibly: a previous run may have left sessions) and creates it empty.
pub async fn recreate_database(name: &str) -> anyhow::Result<()> {
    let options: PgConnectOptions = database_url("postgres")
        .parse()
        .context("parsing the server URL")?;
    let mut admin = options
        .connect()
        .await
        .context("connecting to PostgreSQL on 127.0.0.1:5432 as postgres")?;
    // `name` is one of our constants, never input, so quoting it is enough.
    let quoted = name.replace('"', "\"\"");
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{quoted}\" WITH (FORCE)"
    ))
    .execute(&mut admin)
    .await
    .with_context(|| format!("dropping database {name}"))?;
    sqlx::query(&format!("CREATE DATABASE \"{quoted}\""))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    Ok(())
}

/// A pool on database `name` with at most `max` connections; the same session settings as
/// the services (an idle transaction would hold every commit-safe reader back).
pub async fn pool(name: &str, max: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url(name)
        .parse()
        .context("parsing the database URL")?;
    let options = options
        .options([("idle_in_transaction_session_timeout", "30s")])
        .disable_statement_logging();
    // No test of a connection on every acquire (sqlx's default): a second round trip per
    // statement, which the services' pools do not make (`service_kit::db::pool_options`) and
    // which would slow the bare handlers the query figures are measured against.
    PgPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to database {name}"))
}

/// Opens `count` connections of `pool` at once and gives them back, so a measurement does not
/// pay for connecting, and says so when PostgreSQL refuses some: its `max_connections` is
/// shared with whatever else runs on the server.
pub async fn warm(pool: &PgPool, count: u32) {
    let attempts = (0..count).map(|_| pool.acquire());
    let results = futures::future::join_all(attempts).await;
    let opened = results.iter().filter(|result| result.is_ok()).count();
    if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
        eprintln!(
            "    only {opened} of {count} connections opened ({error}); figures on this pool \
             may wait for connections"
        );
    }
}

/// Where the release binaries are: `BENCH_BIN_DIR`, else the workspace's `target/release`.
pub fn binary_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BENCH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        },
        PathBuf::from,
    );
    target.join("release")
}

/// Checks that every service binary exists, naming the build command when one does not.
pub fn check_binaries(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<_> = SERVICES
        .iter()
        .chain([&REFERENCE])
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing release binaries {missing:?} in {}: build them first with \
             `cargo build --release --workspace --bins` (or point BENCH_BIN_DIR at them)",
            dir.display()
        );
    }
    Ok(())
}

/// Whether something accepts TCP connections on RabbitMQ's port on this machine (the relay is
/// enabled only then: without a broker it would wait, not work).
pub fn broker_reachable() -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, 5672)),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// A free loopback port: bound to port 0, read back, released. Another process could take it
/// in between, in which case the service fails to bind and the run says so.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// One running service.
pub struct Service {
    /// Its name.
    pub name: &'static str,
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    child: Child,
    log: PathBuf,
}

/// Whether and where the projector's RabbitMQ relay publishes.
#[derive(Debug, Clone)]
pub enum Relay {
    /// `RELAY_ENABLED=false`.
    Off,
    /// Enabled, publishing to this exchange (a bench-only name, so nothing bound to the
    /// services' own exchange ever receives bench events).
    To(String),
}

/// Services started together, stopped (SIGTERM, then SIGKILL after a grace period) when
/// dropped.
pub struct System {
    /// The services in the order they were started.
    pub services: Vec<Service>,
    /// Prefix of the log file names, so two systems of one run keep their logs apart.
    label: &'static str,
    dir: PathBuf,
    log_dir: PathBuf,
    /// Extra environment of every service started from now on.
    env: Vec<(&'static str, String)>,
}

impl System {
    /// An empty system: binaries from `dir`, logs to `log_dir/<label>-<service>.log`.
    pub fn new(label: &'static str, dir: &Path, log_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating {}", log_dir.display()))?;
        Ok(Self {
            services: Vec::new(),
            label,
            dir: dir.to_owned(),
            log_dir: log_dir.to_owned(),
            env: Vec::new(),
        })
    }

    /// Starts command-api, query-api and projector on database `database`, one after the
    /// other, each ready before the next starts.
    pub async fn start(
        label: &'static str,
        dir: &Path,
        database: &str,
        log_dir: &Path,
        http: &Http,
        relay: &Relay,
    ) -> anyhow::Result<Self> {
        Self::start_with(label, dir, database, log_dir, http, relay, Vec::new()).await
    }

    /// [`System::start`] with extra environment for every service (`AUTH_TOKEN_CACHE=0`).
    pub async fn start_with(
        label: &'static str,
        dir: &Path,
        database: &str,
        log_dir: &Path,
        http: &Http,
        relay: &Relay,
        env: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Self> {
        let mut system = Self::new(label, dir, log_dir)?;
        system.env = env;
        for name in SERVICES {
            system.spawn(name, database, relay, http).await?;
        }
        Ok(system)
    }

    /// Replaces the extra environment of every service started from now on.
    pub fn set_env(&mut self, env: Vec<(&'static str, String)>) {
        self.env = env;
    }

    /// Starts one service binary of `dir` (a Chronicle service or the bench's `reference`)
    /// against database `database` on a free loopback port, and waits until it answers
    /// `/readyz`.
    pub async fn spawn(
        &mut self,
        name: &'static str,
        database: &str,
        relay: &Relay,
        http: &Http,
    ) -> anyhow::Result<()> {
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let addr_var = match name {
            "command-api" => "COMMAND_API_ADDR",
            "query-api" => "QUERY_API_ADDR",
            "projector" => "PROJECTOR_ADDR",
            _ => "REFERENCE_ADDR",
        };
        let log = self.log_dir.join(format!("{}-{name}.log", self.label));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = file.try_clone().context("duplicating the log handle")?;
        let mut command = Command::new(self.dir.join(name));
        command
            .env("DATABASE_URL", database_url(database))
            .env(addr_var, addr.to_string())
            // Info logs per request would measure the terminal; warnings still show trouble.
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("AUTH_SIGNING_KEYS", &AUTH_KEYS.0)
            .env("AUTH_SECRET_KEY", &AUTH_KEYS.1)
            // Every bench client is one address: the per-IP analytics brake (one upsert on one
            // counter row per batch) would refuse the load after 600 batches a minute and
            // serialize the rest on that row, which many real clients never share.
            .env("RATE_LIMIT_ANALYTICS_IP", "0/60")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        match relay {
            Relay::Off => {
                command.env("RELAY_ENABLED", "false");
            }
            Relay::To(exchange) => {
                command
                    .env("RELAY_ENABLED", "true")
                    .env("RELAY_EXCHANGE", exchange);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.dir.join(name).display()))?;
        self.services.push(Service {
            name,
            base: format!("http://{addr}"),
            child,
            log,
        });
        // Each binary migrates at start; starting them one after the other keeps the
        // migration lock uncontended and a failure attributable.
        self.wait_ready(name, http).await
    }

    async fn wait_ready(&mut self, name: &str, http: &Http) -> anyhow::Result<()> {
        let service = self
            .services
            .iter_mut()
            .find(|service| service.name == name)
            .context("service not started")?;
        let started = Instant::now();
        let url = format!("{}/readyz", service.base);
        loop {
            if let Some(status) = service.child.try_wait().context("polling a child")? {
                bail!(
                    "{name} exited with {status} before it was ready; see {}",
                    service.log.display()
                );
            }
            if let Ok(answer) = http.get(&url, &[]).await
                && answer.status.is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{name} not ready after 60 s; see {}", service.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The base URL of `name`.
    pub fn base(&self, name: &str) -> anyhow::Result<&str> {
        self.services
            .iter()
            .find(|service| service.name == name)
            .map(|service| service.base.as_str())
            .with_context(|| format!("no service {name}"))
    }

    /// Each service's name and process id.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.services
            .iter()
            .map(|service| (service.name, service.child.id()))
            .collect()
    }

    /// Peak and current resident memory of each service, from `/proc/<pid>/status`.
    pub fn memory(&self) -> Vec<Memory> {
        self.services
            .iter()
            .map(|service| {
                let status =
                    std::fs::read_to_string(format!("/proc/{}/status", service.child.id()))
                        .unwrap_or_default();
                Memory {
                    system: self.label.to_owned(),
                    service: service.name.to_owned(),
                    peak_rss_mib: status_kib(&status, "VmHWM:").map(|kib| kib as f64 / 1024.0),
                    rss_mib: status_kib(&status, "VmRSS:").map(|kib| kib as f64 / 1024.0),
                }
            })
            .collect()
    }

    /// Stops service `name` (SIGTERM, then SIGKILL after 15 s) and returns its memory figures,
    /// read just before; `None` when no such service runs.
    pub fn stop_service(&mut self, name: &str) -> Option<Memory> {
        let index = self
            .services
            .iter()
            .position(|service| service.name == name)?;
        let memory = self.memory().into_iter().nth(index);
        let mut service = self.services.remove(index);
        terminate(&mut service);
        memory
    }

    /// Sends SIGTERM to every service and waits (at most 15 s each) for it to exit, then kills
    /// what is left.
    pub fn stop(&mut self) {
        for service in &mut self.services {
            signal_term(service);
        }
        for service in &mut self.services {
            wait_or_kill(service);
        }
    }
}

/// Asks `service` to shut down gracefully, unless it has exited already.
fn signal_term(service: &mut Service) {
    if matches!(service.child.try_wait(), Ok(Some(_))) {
        return;
    }
    // std can only SIGKILL; `kill` sends the SIGTERM that starts a graceful shutdown.
    let _ = Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status();
}

/// Waits (at most 15 s) for `service` to exit, then kills it.
fn wait_or_kill(service: &mut Service) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match service.child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!("{} ignored SIGTERM for 15 s; killing it", service.name);
                let _ = service.child.kill();
                let _ = service.child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// SIGTERM, then wait.
fn terminate(service: &mut Service) {
    signal_term(service);
    wait_or_kill(service);
}

impl Drop for System {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_is_read_from_proc_status() {
        let status = "Name:\tx\nVmHWM:\t   12345 kB\nVmRSS:\t  100 kB\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(12345));
        assert_eq!(status_kib(status, "VmRSS:"), Some(100));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
