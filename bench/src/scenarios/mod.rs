//! The measured hot paths, one module each, sharing a [`Context`].

pub mod analytics;
pub mod commands;
pub mod lag;
pub mod large_log;
pub mod queries;
pub mod rebuild;
pub mod streams;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::client::Http;
use crate::load::Budget;

/// How long each measured step runs; `--quick` shortens everything for smoke runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// One closed-loop step.
    pub step: Duration,
    /// One fixed-rate step.
    pub fixed: Duration,
    /// Events generated for the rebuild.
    pub rebuild_events: i64,
    /// Longest time the rebuild's catch-up may take before its rate is taken as it stands.
    pub rebuild_limit: Duration,
    /// Events of the large log (the issue asks for 1,000,000; `--quick` seeds fewer).
    pub large_log_events: i64,
    /// Sequential one-event lag probes on an idle projector, per log size.
    pub wake_probes: u64,
    /// Longest the probes of one log size may take (a slow wake makes each take seconds).
    pub wake_limit: Duration,
    /// Events of the long stream (the issue asks for 100,000).
    pub long_stream_events: i64,
    /// Time per side and round of the long-stream PATCH comparison.
    pub stream_step: Duration,
}

impl Plan {
    /// The plan of a full or `--quick` run.
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                step: Duration::from_millis(1500),
                fixed: Duration::from_secs(3),
                rebuild_events: 50_000,
                rebuild_limit: Duration::from_secs(60),
                // Seeding a million events takes 20-75 s on this machine: a smoke run seeds a
                // fifth of it; the full run seeds the million.
                large_log_events: 200_000,
                wake_probes: 20,
                wake_limit: Duration::from_secs(10),
                long_stream_events: 100_000,
                stream_step: Duration::from_secs(2),
            }
        } else {
            Self {
                step: Duration::from_secs(6),
                fixed: Duration::from_secs(10),
                rebuild_events: 1_000_000,
                rebuild_limit: Duration::from_secs(180),
                large_log_events: 1_000_000,
                wake_probes: 100,
                wake_limit: Duration::from_secs(30),
                long_stream_events: 100_000,
                stream_step: Duration::from_secs(5),
            }
        }
    }

    /// The budget of one closed-loop step.
    pub fn step_budget(&self) -> Budget {
        Budget {
            duration: self.step,
            max_ops: 500_000,
        }
    }

    /// The budget of one fixed-rate step.
    pub fn fixed_budget(&self) -> Budget {
        Budget {
            duration: self.fixed,
            max_ops: 200_000,
        }
    }
}

/// What every scenario needs.
#[derive(Clone)]
pub struct Context {
    /// The load client of Chronicle's services: it sends an access token with every request.
    pub http: Http,
    /// The same client without a token, for the baselines (reference service, bare axum).
    pub plain: Http,
    /// The access token `http` sends (wrk sends it too).
    pub bearer: String,
    /// `http://127.0.0.1:<port>` of the command API.
    pub command: String,
    /// Same for the query API.
    pub query: String,
    /// Same for the projector (health and metrics only).
    pub projector: String,
    /// Same for the reference service, when it runs.
    pub reference: Option<String>,
    /// The database the services use (pgbench's baseline runs in it too).
    pub database: String,
    /// Where scratch files go (pgbench's script and logs).
    pub work_dir: PathBuf,
    /// The bench's own pool on the bench database, sized like a service's pool, for the
    /// baselines.
    pub pool: PgPool,
    /// Durations and sizes.
    pub plan: Plan,
    /// Ids of the projects created so far (updates and queries use them).
    pub projects: Arc<Mutex<Vec<Uuid>>>,
}

impl Context {
    /// A snapshot of the created project ids.
    pub fn project_ids(&self) -> Arc<Vec<Uuid>> {
        Arc::new(
            self.projects
                .lock()
                .map(|ids| ids.clone())
                .unwrap_or_default(),
        )
    }
}

/// Sums every sample of the Prometheus metric `name` (all label sets) in `/metrics` of
/// `base`; `None` when the metric is absent or the scrape fails.
pub async fn scrape(http: &Http, base: &str, name: &str) -> Option<f64> {
    let answer = http.get(&format!("{base}/metrics"), &[]).await.ok()?;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let values: Vec<f64> = text
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The metadata the command API stores with an event, in its usual shape, for baselines that
/// write events themselves.
pub fn sample_metadata() -> String {
    serde_json::json!({
        "actor": "anonymous",
        "ip": "127.0.0.1",
        "request_id": Uuid::now_v7().to_string(),
        "correlation_id": Uuid::now_v7().to_string(),
        "causation_id": Uuid::now_v7().to_string(),
    })
    .to_string()
}

/// Creates a project named `name` with a client-chosen id; returns the id, the 201 and when
/// it was acknowledged (the start of its projection lag).
pub async fn create_probe(
    context: &Context,
    name: &str,
) -> Result<(Uuid, crate::client::Answer, std::time::Instant), crate::client::OpError> {
    let id = Uuid::now_v7();
    let body = serde_json::json!({"id": id, "name": name}).to_string();
    let answer = context
        .http
        .send(
            http::Method::POST,
            &format!("{}/api/v1/projects", context.command),
            &[],
            Some(bytes::Bytes::from(body)),
        )
        .await?
        .expect(&[201])?;
    Ok((id, answer, std::time::Instant::now()))
}

/// Polls project `id` every `every` until the query API serves it; returns the lag from
/// `acknowledged`, or fails once `limit` has passed.
pub async fn poll_visible(
    context: &Context,
    id: Uuid,
    acknowledged: std::time::Instant,
    every: Duration,
    limit: Duration,
) -> Result<Duration, crate::client::OpError> {
    let url = format!("{}/api/v1/projects/{id}", context.query);
    loop {
        let answer = context.http.get(&url, &[]).await?;
        if answer.status.as_u16() == 200 {
            return Ok(acknowledged.elapsed());
        }
        answer.expect(&[404])?;
        if acknowledged.elapsed() > limit {
            return Err(crate::client::OpError::Invalid(format!(
                "not visible after {} s of polling",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(every).await;
    }
}
