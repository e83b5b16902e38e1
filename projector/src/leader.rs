//! Leadership among projector replicas: each projection, and the relay, is active in exactly
//! one projector process at a time.
//!
//! A task's leader holds a PostgreSQL *session-level* advisory lock (`pg_try_advisory_lock`) on
//! a connection of its own, outside the pool. The lock lives exactly as long as that session:
//! when the process dies, even by `kill -9`, the kernel closes its socket, the server ends the
//! session and the lock is free. Standbys keep their own connection and try the lock every
//! `PROJECTOR_LEADER_POLL_MS`, so one of them takes over within about that interval. The
//! leader checks its connection at the same pace and stops its task as soon as the
//! connection (hence, possibly, the lock) is lost.
//!
//! Leadership is an efficiency measure, not what makes projections correct: in the moment
//! between a leader losing its connection and noticing, two processes may run one projection,
//! and the checkpoint check of every batch transaction ([`crate::subscription`]) still lets each
//! batch land once. The relay then publishes some events twice, which at-least-once delivery
//! allows.

use std::future::Future;
use std::time::Duration;

use service_kit::shutdown::Shutdown;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool};
use tokio::task::JoinHandle;

/// How long a leader whose task ended on its own (a failed projection) keeps the lock before
/// running the task again; retrying sooner would only repeat the same failure.
pub const FAILED_TASK_RETRY: Duration = Duration::from_secs(60);

/// The advisory-lock key of a task: the first eight bytes of a SHA-256 of its name, so keys
/// are stable across versions and cannot collide with small integers other code might lock.
pub fn lock_key(task: &str) -> i64 {
    let digest = Sha256::digest(format!("chronicle.leader:{task}").as_bytes());
    let mut bytes = [0_u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The `application_name` of leadership connections: names the process, so operators (and
/// tests) can see in `pg_locks` / `pg_stat_activity` which process leads what.
pub fn application_name() -> String {
    format!("chronicle-projector/{}", std::process::id())
}

/// Opens a connection outside the pool, for holding locks for the life of this process.
pub(crate) async fn dedicated_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(&application_name());
    PgConnection::connect_with(&options).await
}

/// Tries to take the session lock `key` on `connection`.
pub(crate) async fn try_lock(connection: &mut PgConnection, key: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(connection)
        .await
}

/// Whether the session is still there (hence its locks): a round trip, bounded in time since
/// a half-open connection may never answer.
async fn alive(connection: &mut PgConnection, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(connection)).await,
        Ok(Ok(_))
    )
}

/// Sleeps for `delay` unless `shutdown` fires first; returns whether it fired.
async fn pause(shutdown: &Shutdown, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.wait() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Runs `work` only while this process leads `task`, until `shutdown` fires.
///
/// `work` is started with a shutdown signal of its own, which fires when this process stops
/// leading (its lock connection is lost) or is shut down; it should finish its batch in hand
/// and return. Work that ends on its own (a projection that failed) is started again after
/// [`FAILED_TASK_RETRY`] while the lock is still held, so that a standby does not pick up
/// the same failure at once.
pub async fn lead<F, Fut>(pool: PgPool, task: String, poll: Duration, shutdown: Shutdown, work: F)
where
    F: Fn(Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let key = lock_key(&task);
    let poll = poll.max(Duration::from_millis(10));
    let label = task.clone();
    let mut standby: Option<PgConnection> = None;
    let mut announced_standby = false;
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let mut connection = match standby.take() {
            Some(connection) => connection,
            None => match dedicated_connection(&pool).await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, task, "cannot open the leadership connection");
                    if pause(&shutdown, poll.max(Duration::from_secs(1))).await {
                        return;
                    }
                    continue;
                }
            },
        };
        match try_lock(&mut connection, key).await {
            Ok(true) => {}
            Ok(false) => {
                if !announced_standby {
                    tracing::info!(task, "another process leads; standing by");
                    announced_standby = true;
                }
                standby = Some(connection);
                if pause(&shutdown, poll).await {
                    return;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, task, "cannot try the leadership lock");
                if pause(&shutdown, poll).await {
                    return;
                }
                continue;
            }
        }

        tracing::info!(task, "leading");
        announced_standby = false;
        metrics::gauge!(service_kit::metric_names::PROJECTION_LEADER, "projection" => label.clone()).set(1.0);
        let outcome = hold(&mut connection, poll, &shutdown, &work, &task).await;
        metrics::gauge!(service_kit::metric_names::PROJECTION_LEADER, "projection" => label.clone()).set(0.0);
        match outcome {
            Held::ShutDown => {
                // Closing the session frees the lock at once for a standby.
                let _ = connection.close().await;
                return;
            }
            Held::Lost => {
                tracing::warn!(task, "lost the leadership connection; standing by again");
                // The session may or may not still exist on the server; dropping the
                // connection ends it either way.
                drop(connection);
            }
        }
    }
}

enum Held {
    ShutDown,
    Lost,
}

enum Event {
    ShutDown,
    Ended,
    Tick,
}

/// Runs `work` while the lock connection answers.
async fn hold<F, Fut>(
    connection: &mut PgConnection,
    poll: Duration,
    shutdown: &Shutdown,
    work: &F,
    task: &str,
) -> Held
where
    F: Fn(Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: Option<(Shutdown, JoinHandle<()>)> = None;
    let mut restart_at = tokio::time::Instant::now();
    let outcome = loop {
        if running.is_none() && tokio::time::Instant::now() >= restart_at {
            let own = Shutdown::new();
            running = Some((
                own.clone(),
                tokio::spawn(service_kit::sql_metrics::inherit(work(own))),
            ));
        }
        let ended = async {
            match running.as_mut() {
                Some((_, handle)) => {
                    let _ = handle.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let event = tokio::select! {
            () = shutdown.wait() => Event::ShutDown,
            () = ended => Event::Ended,
            () = tokio::time::sleep(poll) => Event::Tick,
        };
        match event {
            Event::ShutDown => break Held::ShutDown,
            Event::Ended => {
                running = None;
                restart_at = tokio::time::Instant::now() + FAILED_TASK_RETRY;
                tracing::warn!(
                    task,
                    retry_in_secs = FAILED_TASK_RETRY.as_secs(),
                    "task ended while leading; keeping the lock and retrying later"
                );
            }
            Event::Tick => {
                if !alive(connection, poll.max(Duration::from_secs(1)) * 3).await {
                    break Held::Lost;
                }
            }
        }
    };
    if let Some((own, handle)) = running {
        own.trigger();
        let _ = handle.await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct_per_task() {
        assert_eq!(lock_key("projects"), lock_key("projects"));
        assert_ne!(lock_key("projects"), lock_key("rabbitmq-relay"));
    }
}
