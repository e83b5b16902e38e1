//! Waking readers of the log when events are appended, without serialising appends.
//!
//! A `NOTIFY` inside an append transaction takes a cluster-wide lock at commit, which caps
//! commits at a few hundred a second. Writers instead poke an [`AppendNotifier`] after they
//! commit; its task sends one `NOTIFY` at a time outside any append, so any number of appends
//! that land while one is in flight share the next (docs/decisions/0002-wake-up.md). Readers
//! keep polling as a fallback, so a lost notification only costs latency.

use std::sync::Arc;
use std::time::Duration;

use events::LogPosition;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast};

/// The channel on which appends are announced.
pub const EVENTS_CHANNEL: &str = "chronicle_events";
/// The channel on which projectors announce that checkpoints moved, with a
/// [`CheckpointMoved`] as payload.
pub const CHECKPOINTS_CHANNEL: &str = "chronicle_checkpoints";

/// The largest payload sent on a channel: PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 7900;

/// What a projector announces after a batch of a read model committed: the new checkpoint and
/// generation, and which rows (by aggregate id) reached which version, so readers can keep an
/// in-process map of versions. When the changes do not fit one payload, `changed` is empty and
/// `complete` is false: readers then forget what they knew of the projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMoved {
    /// The checkpoint row's name.
    #[serde(rename = "p")]
    pub projection: String,
    /// The checkpoint after the batch.
    #[serde(rename = "c")]
    pub checkpoint: LogPosition,
    /// The projection's generation (bumped by each rebuild swap).
    #[serde(rename = "g")]
    pub generation: i64,
    /// `(aggregate id, version)` of every stream the batch moved, at its newest version.
    #[serde(rename = "v", default)]
    pub changed: Vec<(String, i64)>,
    /// Whether `changed` lists every stream the batch moved.
    #[serde(rename = "k")]
    pub complete: bool,
}

impl CheckpointMoved {
    /// The payload for `pg_notify`: the whole announcement when it fits [`MAX_PAYLOAD`], else
    /// the same without its changes, marked incomplete.
    pub fn to_payload(&self) -> String {
        let full = serde_json::to_string(self).unwrap_or_default();
        if full.len() < MAX_PAYLOAD && !full.is_empty() {
            return full;
        }
        let bare = Self {
            changed: Vec::new(),
            complete: false,
            ..self.clone()
        };
        serde_json::to_string(&bare).unwrap_or_default()
    }

    /// Reads a payload made by [`CheckpointMoved::to_payload`]; `None` for anything else
    /// (an empty payload, an older projector's bare name).
    pub fn from_payload(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

/// What a listener hands on: a notification's payload, or the news that notifications may
/// have been missed (the connection was lost and re-established), after which anything
/// derived from them must be re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A notification's payload.
    Payload(Arc<str>),
    /// Notifications may have been lost.
    Gap,
}

/// A running listener: [`Listener::wake`] is poked on every notification (and after every
/// reconnect); [`Listener::subscribe`] yields the payloads.
pub struct Listener {
    /// Poked on every notification and reconnect.
    pub wake: Arc<Notify>,
    deliveries: broadcast::Sender<Delivery>,
    /// The listening task; aborting it gives its connection back to the pool.
    pub task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Every delivery from now on. A receiver that falls behind by more than the channel's
    /// capacity gets `Lagged`, which it must treat as a [`Delivery::Gap`].
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.deliveries.subscribe()
    }
}

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
    listen_with_handle(pool, channel).0
}

/// [`listen`], also returning the listening task so its owner can stop it (aborting the task
/// gives its connection back to the pool, which `PgPool::close` waits for).
pub fn listen_with_handle(
    pool: PgPool,
    channel: &'static str,
) -> (Arc<Notify>, tokio::task::JoinHandle<()>) {
    let listener = spawn_listener(pool, channel);
    (listener.wake, listener.task)
}

/// How many deliveries a slow subscriber may fall behind before it is told it lagged.
const DELIVERY_CAPACITY: usize = 1024;

/// Starts listening on `channel`: wakes and payloads, as [`Listener`] describes.
pub fn spawn_listener(pool: PgPool, channel: &'static str) -> Listener {
    let wake = Arc::new(Notify::new());
    let (deliveries, _) = broadcast::channel(DELIVERY_CAPACITY);
    let target = Arc::clone(&wake);
    let sender = deliveries.clone();
    let poke = move |delivery: Delivery| {
        target.notify_waiters();
        target.notify_one();
        // No subscriber is not an error: payloads are only for those who want them.
        let _ = sender.send(delivery);
    };
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
                        poke(Delivery::Gap);
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => {
                                    poke(Delivery::Payload(Arc::from(notification.payload())));
                                }
                                // The connection was lost and re-established by the listener.
                                Ok(None) => poke(Delivery::Gap),
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
            poke(Delivery::Gap);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    });
    Listener {
        wake,
        deliveries,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_round_trips_and_a_large_one_drops_its_changes() {
        let small = CheckpointMoved {
            projection: "projects".to_owned(),
            checkpoint: LogPosition {
                tx_id: 9,
                position: 41,
            },
            generation: 2,
            changed: vec![("a".to_owned(), 3)],
            complete: true,
        };
        assert_eq!(
            CheckpointMoved::from_payload(&small.to_payload()),
            Some(small.clone())
        );
        let large = CheckpointMoved {
            changed: (0..1000).map(|n| (format!("{n:036}"), n)).collect(),
            ..small
        };
        let payload = large.to_payload();
        assert!(payload.len() < MAX_PAYLOAD);
        let read = CheckpointMoved::from_payload(&payload).expect("decodes");
        assert!(!read.complete && read.changed.is_empty());
        assert_eq!(read.checkpoint, large.checkpoint);
        assert_eq!(CheckpointMoved::from_payload("projects"), None);
    }
}
