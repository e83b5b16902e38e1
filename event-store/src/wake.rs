//! Waking readers of the log when events are appended, without serialising appends.
//!
//! A `NOTIFY` inside an append transaction takes a cluster-wide lock at commit, which caps
//! commits at a few hundred a second. Writers instead poke an [`AppendNotifier`] after they
//! commit; its task sends one `NOTIFY` at a time outside any append, so any number of appends
//! that land while one is in flight share the next (docs/decisions/0002-wake-up.md). The
//! notification names the aggregate types appended since the last one, so that only their
//! readers wake ([`Wakes`]); one that names nothing wakes every reader. Readers keep polling
//! as a fallback, so a lost notification only costs latency.

use std::sync::{Arc, Mutex};
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

/// The name an append notification gives the mail outbox: a transaction that may have written
/// mail names it beside the aggregate types it appended, and the mail relay wakes on it.
pub const MAIL_OUTBOX: &str = "mail_outbox";

/// Coalesces "something was appended" into at most one `NOTIFY` in flight, naming what was
/// appended.
#[derive(Clone)]
pub struct AppendNotifier {
    poke: Arc<Notify>,
    pending: Arc<Mutex<Pending>>,
}

/// What the next `NOTIFY` names.
#[derive(Debug, Default)]
struct Pending {
    /// Something unnamed was appended: every reader must look.
    everything: bool,
    /// The aggregate types (and [`MAIL_OUTBOX`]) appended since the last `NOTIFY`.
    names: Vec<String>,
}

impl Pending {
    /// The payload naming what is pending, and nothing pending afterwards. Empty (every reader
    /// looks) when something unnamed is pending or the names do not fit one payload.
    fn take_payload(&mut self) -> String {
        let Pending { everything, names } = std::mem::take(self);
        if everything {
            return String::new();
        }
        let payload = names.join(",");
        if payload.len() < MAX_PAYLOAD {
            payload
        } else {
            String::new()
        }
    }
}

impl AppendNotifier {
    /// Starts the notifying task on `pool`, announcing on `channel`.
    pub fn spawn(pool: PgPool, channel: &'static str) -> Self {
        let poke = Arc::new(Notify::new());
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (waiter, taken) = (Arc::clone(&poke), Arc::clone(&pending));
        tokio::spawn(async move {
            loop {
                waiter.notified().await;
                // Names added after this are poked too, so they go out with the next NOTIFY.
                let payload = taken
                    .lock()
                    .map(|mut pending| pending.take_payload())
                    .unwrap_or_default();
                if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(payload)
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(%error, channel, "notify failed; readers fall back to polling");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { poke, pending }
    }

    /// Records that something was appended, without saying what: every reader looks.
    /// Returns at once.
    pub fn notify(&self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.everything = true;
        }
        // `notify_one` stores a permit when the task is busy, so pokes during a NOTIFY
        // collapse into exactly one more.
        self.poke.notify_one();
    }

    /// Records that events of these aggregate types (or [`MAIL_OUTBOX`]) were committed: only
    /// readers of one of them look. Returns at once.
    pub fn notify_appended<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut pending) = self.pending.lock() {
            for name in names {
                // A name the payload cannot carry makes the notification name nothing.
                if name.is_empty() || name.contains(',') {
                    pending.everything = true;
                } else if !pending.names.iter().any(|known| known == name) {
                    pending.names.push(name.to_owned());
                }
            }
        }
        self.poke.notify_one();
    }
}

/// Readers of the log woken by what an append notification names ([`listen_routed`]): each
/// reader has its own [`Notify`], poked when a notification names one of its aggregate types
/// or names nothing, and after every reconnect (notifications may have been lost).
#[derive(Debug, Default)]
pub struct Wakes {
    readers: Mutex<Vec<Reader>>,
}

#[derive(Debug)]
struct Reader {
    /// Empty: every notification.
    names: Vec<String>,
    wake: Arc<Notify>,
}

impl Wakes {
    /// The wake-up of a reader of `names` (aggregate types, or [`MAIL_OUTBOX`]; none: every
    /// notification), for one waiter at a time.
    pub fn register(&self, names: &[&str]) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        if let Ok(mut readers) = self.readers.lock() {
            readers.push(Reader {
                names: names.iter().map(|&name| name.to_owned()).collect(),
                wake: Arc::clone(&wake),
            });
        }
        wake
    }

    /// Pokes the readers `delivery` concerns.
    pub fn deliver(&self, delivery: &Delivery) {
        let named: Option<Vec<&str>> = match delivery {
            Delivery::Payload(payload) if !payload.is_empty() => Some(payload.split(',').collect()),
            Delivery::Payload(_) | Delivery::Gap => None,
        };
        let Ok(readers) = self.readers.lock() else {
            return;
        };
        for reader in readers.iter() {
            let concerned = match &named {
                None => true,
                Some(named) => {
                    reader.names.is_empty()
                        || named
                            .iter()
                            .any(|name| reader.names.iter().any(|own| own == name))
                }
            };
            if concerned {
                // One waiter per reader: woken now, or at its next wait. (`poke`'s
                // `notify_waiters` would also leave a permit behind, waking it twice.)
                reader.wake.notify_one();
            }
        }
    }
}

/// Wakes whoever waits on `wake` now, or else the next one to wait.
fn poke(wake: &Notify) {
    wake.notify_waiters();
    wake.notify_one();
}

/// Listens on `channel` and pokes the readers of [`Wakes`] that each notification concerns,
/// reconnecting as [`listen_with_handle`] does.
pub fn listen_routed(
    pool: PgPool,
    channel: &'static str,
) -> (Arc<Wakes>, tokio::task::JoinHandle<()>) {
    let wakes = Arc::new(Wakes::default());
    let routed = Arc::clone(&wakes);
    let task = spawn_listening(pool, channel, move |delivery| routed.deliver(&delivery));
    (wakes, task)
}

/// Listens on `channel` and pokes the returned [`Notify`] on every notification, reconnecting
/// when the connection drops. Each poke is also sent after a reconnect, since notifications
/// sent while disconnected are lost. Also returns the listening task so its owner can stop it
/// (aborting the task gives its connection back to the pool, which `PgPool::close` waits for).
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
    let task = spawn_listening(pool, channel, move |delivery: Delivery| {
        poke(&target);
        // No subscriber is not an error: payloads are only for those who want them.
        let _ = sender.send(delivery);
    });
    Listener {
        wake,
        deliveries,
        task,
    }
}

/// The listening task: hands every notification on `channel` to `deliver`, and a
/// [`Delivery::Gap`] after every (re)connect.
fn spawn_listening(
    pool: PgPool,
    channel: &'static str,
    deliver: impl Fn(Delivery) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
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
                        deliver(Delivery::Gap);
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(notification)) => {
                                    deliver(Delivery::Payload(Arc::from(notification.payload())));
                                }
                                // The connection was lost and re-established by the listener.
                                Ok(None) => deliver(Delivery::Gap),
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
            deliver(Delivery::Gap);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_what_was_appended_once_or_nothing_when_it_cannot() {
        let mut pending = Pending {
            names: vec!["Project".to_owned(), MAIL_OUTBOX.to_owned()],
            ..Pending::default()
        };
        assert_eq!(pending.take_payload(), "Project,mail_outbox");
        assert_eq!(pending.take_payload(), "", "nothing pending names nothing");
        pending.names = vec!["Project".to_owned()];
        pending.everything = true;
        assert_eq!(
            pending.take_payload(),
            "",
            "an unnamed append wakes everyone"
        );
        pending.names = (0..1000).map(|n| format!("Type{n:04}")).collect();
        assert_eq!(pending.take_payload(), "", "too many names to fit");
    }

    #[tokio::test]
    async fn the_notifier_coalesces_names_and_an_unsayable_one_names_nothing() {
        // No task: the pending names are inspected directly.
        let notifier = AppendNotifier {
            poke: Arc::new(Notify::new()),
            pending: Arc::new(Mutex::new(Pending::default())),
        };
        notifier.notify_appended(["Project", "SupportTicket"]);
        notifier.notify_appended(["Project"]);
        let take = || {
            notifier
                .pending
                .lock()
                .expect("not poisoned")
                .take_payload()
        };
        assert_eq!(take(), "Project,SupportTicket");
        notifier.notify_appended(["Odd,Type"]);
        assert_eq!(take(), "");
        notifier.notify();
        assert_eq!(take(), "");
    }

    #[tokio::test]
    async fn a_notification_wakes_the_readers_of_what_it_names() {
        let wakes = Wakes::default();
        let projects = wakes.register(&["Project"]);
        let tickets = wakes.register(&["SupportTicket", "Account"]);
        let everything = wakes.register(&[]);
        let woken = |wake: &Arc<Notify>| {
            // A poke leaves a permit: `notified` completes at once only if it was poked.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };

        wakes.deliver(&Delivery::Payload(Arc::from("Account,mail_outbox")));
        assert_eq!(
            (woken(&projects), woken(&tickets), woken(&everything)),
            (false, true, true)
        );
        wakes.deliver(&Delivery::Payload(Arc::from("Project")));
        assert_eq!(
            (woken(&projects), woken(&tickets), woken(&everything)),
            (true, false, true)
        );
        for unnamed in [Delivery::Payload(Arc::from("")), Delivery::Gap] {
            wakes.deliver(&unnamed);
            assert_eq!(
                (woken(&projects), woken(&tickets), woken(&everything)),
                (true, true, true),
                "{unnamed:?}"
            );
        }
    }

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
