//! Waking readers of the log when events are appended, without serialising appends.
//!
//! A `NOTIFY` inside an append transaction takes a cluster-wide lock at commit, which caps
//! commits at a few hundred a second. Writers instead poke an [`AppendNotifier`] after they
//! commit; its task sends one `NOTIFY` at a time outside any append, so any number of appends
//! that land while one is in flight share the next (docs/decisions/0002-wake-up.md). Readers
//! keep polling as a fallback, so a lost notification only costs latency.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;

/// The channel on which appends are announced.
pub const EVENTS_CHANNEL: &str = "chronicle_events";
/// The channel on which projectors announce that checkpoints moved.
pub const CHECKPOINTS_CHANNEL: &str = "chronicle_checkpoints";

/// Coalesces "something was appended" into at most one `NOTIFY` in flight.
#[derive(Clone)]
pub struct AppendNotifier {
    poke: Arc<Notify>,
}

impl AppendNotifier {
    /// Starts the notifying task on `pool`, announcing on `channel`.
    pub fn spawn(pool: PgPool, channel: &'static str) -> Self {
        let poke = Arc::new(Notify::new());
        let waiter = Arc::clone(&poke);
        tokio::spawn(async move {
            loop {
                waiter.notified().await;
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(channel)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(%error, channel, "notify failed; readers fall back to polling");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { poke }
    }

    /// Records that something was appended; returns at once.
    pub fn notify(&self) {
        // `notify_one` stores a permit when the task is busy, so pokes during a NOTIFY
        // collapse into exactly one more.
        self.poke.notify_one();
    }
}

/// Listens on `channel` and pokes the returned [`Notify`] on every notification, reconnecting
/// when the connection drops. Each poke is also sent after a reconnect, since notifications
/// sent while disconnected are lost.
pub fn listen(pool: PgPool, channel: &'static str) -> Arc<Notify> {
    // Dropping a JoinHandle detaches the task: it runs for the life of the runtime.
    let (notify, _task) = listen_with_handle(pool, channel);
    notify
}

/// [`listen`], also returning the listening task so its owner can stop it (aborting the task
/// gives its connection back to the pool, which `PgPool::close` waits for).
pub fn listen_with_handle(
    pool: PgPool,
    channel: &'static str,
) -> (Arc<Notify>, tokio::task::JoinHandle<()>) {
    let notify = Arc::new(Notify::new());
    let target = Arc::clone(&notify);
    let task = tokio::spawn(async move {
        // Doubles while LISTEN keeps failing (a hot standby refuses it for good; waiters then
        // rely on their polling), back to a second once a listener has worked.
        let mut pause = Duration::from_secs(1);
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(error) = listener.listen(channel).await {
                        tracing::warn!(%error, channel, "LISTEN failed");
                    } else {
                        pause = Duration::from_secs(1);
                        target.notify_waiters();
                        target.notify_one();
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(_)) => {
                                    target.notify_waiters();
                                    target.notify_one();
                                }
                                Ok(None) => {
                                    // Connection was lost and re-established by the listener.
                                    target.notify_waiters();
                                    target.notify_one();
                                }
                                Err(error) => {
                                    tracing::warn!(%error, channel, "listener failed");
                                    break;
                                }
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, channel, "cannot connect listener"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    });
    (notify, task)
}
