//! The RabbitMQ relay: a checkpointed subscription to the whole log that publishes every event,
//! in commit-safe order, to a durable topic exchange (API.md, "Event stream on RabbitMQ").
//!
//! Each round reads a batch after the relay's checkpoint (its own row in
//! `projection_checkpoints`, named [`RELAY_CHECKPOINT`], so it shows in `GET /projections`),
//! publishes the whole batch on a channel in confirm mode, then waits for every confirm and
//! only then moves the checkpoint. A nack, a timeout or any channel or connection error drops
//! the connection, and the next connection publishes again from the checkpoint: delivery is at
//! least once, in per-stream order, and consumers dedupe on `message_id` (the event id).
//!
//! The relay runs inside the projector process, on its own task: no command or query ever
//! waits on the broker, and a broker that is away only stops the relay (state
//! `waiting_for_broker`, reconnecting with backoff), never the projections.
//!
//! Settings: `RABBITMQ_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`),
//! `RELAY_EXCHANGE` (default `chronicle.events`), `RELAY_ENABLED` (default `true`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_store::LogFilter;
use events::{LogPosition, RecordedEvent};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use service_kit::env::{EnvError, string_or, var_or};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::engine::{Backoff, announce, load_checkpoint};

/// The relay's checkpoint row in `projection_checkpoints`.
pub const RELAY_CHECKPOINT: &str = event_store::catalogue::RELAY;

/// `RABBITMQ_URL` when unset: this machine's broker.
pub const DEFAULT_RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `RELAY_EXCHANGE` when unset.
pub const DEFAULT_EXCHANGE: &str = "chronicle.events";

/// Longest wait for the confirms of one batch before the connection is given up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait for connecting and declaring the exchange.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds of the wait between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// An AMQP URL that never prints its password.
#[derive(Clone)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // amqp://user:secret@host/vhost -> amqp://user:***@host/vhost
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &self.0[scheme + 3..at];
                let user = credentials.split(':').next().unwrap_or_default();
                write!(f, "{}{user}:***{}", &self.0[..scheme + 3], &self.0[at..])
            }
            _ => f.write_str(&self.0),
        }
    }
}

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// `RELAY_ENABLED` (default `true`).
    pub enabled: bool,
    /// `RABBITMQ_URL`.
    pub url: BrokerUrl,
    /// `RELAY_EXCHANGE`: the durable topic exchange events are published to.
    pub exchange: String,
    /// The most events published per round (the projector's batch size).
    pub batch_size: i64,
    /// How long an idle relay waits for an append notification before reading anyway.
    pub poll_interval: Duration,
    /// The AMQP connection name, shown in the broker's management UI.
    pub connection_name: String,
}

impl RelaySettings {
    /// Reads the relay's variables; `batch_size` and `poll_interval` come from the projector's.
    ///
    /// # Errors
    ///
    /// `RELAY_ENABLED` is set but is not a boolean.
    pub fn from_env(batch_size: i64, poll_interval: Duration) -> Result<Self, EnvError> {
        Ok(Self {
            enabled: var_or("RELAY_ENABLED", true)?,
            url: BrokerUrl::new(string_or("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)),
            exchange: string_or("RELAY_EXCHANGE", DEFAULT_EXCHANGE),
            batch_size,
            poll_interval,
            connection_name: format!("chronicle-relay/{}", std::process::id()),
        })
    }

    /// A disabled relay (tests of other parts, tools).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            url: BrokerUrl::new(DEFAULT_RABBITMQ_URL),
            exchange: DEFAULT_EXCHANGE.to_owned(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            connection_name: "chronicle-relay".to_owned(),
        }
    }
}

/// Why a round of the relay did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The broker refused, dropped or did not answer in time; the connection is given up and
    /// the batch is published again from the checkpoint.
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    /// The broker nacked a message: publish again from the checkpoint.
    #[error("the broker nacked event {0}")]
    Nacked(uuid::Uuid),
    /// Connecting or confirming took too long.
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection closed while the relay was idle.
    #[error("the broker connection closed")]
    Disconnected,
    /// Reading the log or moving the checkpoint failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// An event cannot be expressed as an AMQP message (a routing key over 255 bytes).
    #[error("event {event_id} cannot be published: {reason}")]
    Unpublishable {
        /// The event.
        event_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
}

/// A confirm-mode channel to the broker, with the exchange declared.
struct Link {
    connection: Connection,
    channel: Channel,
}

async fn connect(settings: &RelaySettings) -> Result<Link, RelayError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(settings.connection_name.clone()));
    let open = async {
        let connection = Connection::connect(settings.url.expose(), properties).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .exchange_declare(
                short(&settings.exchange)?,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok::<_, RelayError>(Link {
            connection,
            channel,
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| RelayError::Timeout(CONNECT_TIMEOUT))?
}

fn short(text: &str) -> Result<ShortString, RelayError> {
    ShortString::try_new(text).map_err(|error| RelayError::Unpublishable {
        event_id: uuid::Uuid::nil(),
        reason: error.to_string(),
    })
}

/// The routing key of an event: `<aggregate_type>.<event_type>`.
pub fn routing_key(event: &RecordedEvent) -> String {
    format!("{}.{}", event.aggregate_type, event.event_type)
}

/// The AMQP properties of an event's message, as API.md lists them.
pub fn properties(event: &RecordedEvent) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("position".into(), AMQPValue::LongLongInt(event.position));
    for key in ["correlation_id", "causation_id", "traceparent"] {
        if let Some(value) = event.metadata.get(key).and_then(|value| value.as_str()) {
            headers.insert(
                key.into(),
                AMQPValue::LongString(LongString::from(value.to_owned())),
            );
        }
    }
    BasicProperties::default()
        .with_message_id(event.event_id.to_string().into())
        .with_content_type("application/json".into())
        // 2 = persistent: written to disk by durable queues.
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(event.recorded_at.timestamp()).unwrap_or_default())
        .with_headers(headers)
}

/// Publishes `batch` on `link` and waits for every confirm: returns only when the broker has
/// taken responsibility for all of it.
async fn publish(link: &Link, exchange: &str, batch: &[RecordedEvent]) -> Result<(), RelayError> {
    let exchange = short(exchange)?;
    let mut confirms = Vec::with_capacity(batch.len());
    // Pipelined: every message is sent before the first confirm is awaited, so a batch costs
    // one round trip rather than one per event.
    for event in batch {
        let key = ShortString::try_new(routing_key(event)).map_err(|error| {
            RelayError::Unpublishable {
                event_id: event.event_id,
                reason: error.to_string(),
            }
        })?;
        let body = serde_json::to_vec(event).map_err(|error| RelayError::Unpublishable {
            event_id: event.event_id,
            reason: error.to_string(),
        })?;
        let confirm = link
            .channel
            .basic_publish(
                exchange.clone(),
                key,
                BasicPublishOptions::default(),
                &body,
                properties(event),
            )
            .await?;
        confirms.push((event.event_id, confirm));
    }
    let all = async {
        for (event_id, confirm) in confirms {
            let confirmation = confirm.await?;
            if !confirmation.is_ack() {
                return Err(RelayError::Nacked(event_id));
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, all)
        .await
        .map_err(|_| RelayError::Timeout(CONFIRM_TIMEOUT))?
}

/// Moves the relay's checkpoint from `from` to `to` if nobody else moved it; returns the
/// checkpoint it holds afterwards.
async fn advance(
    pool: &PgPool,
    from: LogPosition,
    to: LogPosition,
    count: usize,
) -> Result<LogPosition, sqlx::Error> {
    let moved = sqlx::query(
        "UPDATE projection_checkpoints \
            SET tx_id = $4, position = $5, events_applied = events_applied + $6, \
                updated_at = now(), state = 'running', last_error = NULL \
          WHERE name = $1 AND tx_id = $2 AND position = $3",
    )
    .bind(RELAY_CHECKPOINT)
    .bind(from.tx_id)
    .bind(from.position)
    .bind(to.tx_id)
    .bind(to.position)
    .bind(i64::try_from(count).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    if moved.rows_affected() == 1 {
        Ok(to)
    } else {
        // Another relay (a replica that briefly overlapped) moved it: go on from there.
        load_checkpoint(pool, RELAY_CHECKPOINT).await
    }
}

async fn record_state(pool: &PgPool, state: &str, error: Option<&str>) {
    let recorded = sqlx::query(
        "UPDATE projection_checkpoints SET state = $2, last_error = $3, updated_at = now() \
          WHERE name = $1 AND (state IS DISTINCT FROM $2 OR last_error IS DISTINCT FROM $3)",
    )
    .bind(RELAY_CHECKPOINT)
    .bind(state)
    .bind(error)
    .execute(pool)
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "cannot record the relay's state");
    }
}

/// Runs the relay until `shutdown` fires. `pool` holds the checkpoint; the log is read
/// through `read_pool` (the same pool, or a replica). Never returns an error: every failure
/// is logged, recorded as the relay's state and retried with backoff.
pub async fn run_relay(
    pool: PgPool,
    read_pool: PgPool,
    settings: RelaySettings,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let span = tracing::info_span!("relay", exchange = %settings.exchange);
    tracing::Instrument::instrument(relay_loop(pool, read_pool, settings, wake, shutdown), span)
        .await;
}

async fn relay_loop(
    pool: PgPool,
    read_pool: PgPool,
    settings: RelaySettings,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
    let filter = LogFilter::default();
    loop {
        if shutdown.is_triggered() {
            return;
        }
        let outcome = match connect(&settings).await {
            Ok(link) => {
                tracing::info!(url = ?settings.url, "relay connected");
                metrics::gauge!("relay_connected").set(1.0);
                let outcome = publish_rounds(
                    &pool,
                    &read_pool,
                    &settings,
                    &filter,
                    &link,
                    &wake,
                    &shutdown,
                    &mut backoff,
                )
                .await;
                metrics::gauge!("relay_connected").set(0.0);
                // Best effort: the broker may already be gone.
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    link.connection.close(200, "relay reconnecting".into()),
                )
                .await;
                outcome
            }
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => return,
            Err(error) => {
                let state = match error {
                    RelayError::Database(_) => "database_unavailable",
                    _ => "waiting_for_broker",
                };
                tracing::warn!(%error, "relay interrupted; publishing again from its checkpoint");
                metrics::counter!("relay_interruptions_total").increment(1);
                record_state(&pool, state, Some(&error.to_string())).await;
                let delay = backoff.next_delay();
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Publishes batch after batch on one connection until shutdown (`Ok`) or an error.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all borrowed state"
)]
async fn publish_rounds(
    pool: &PgPool,
    read_pool: &PgPool,
    settings: &RelaySettings,
    filter: &LogFilter,
    link: &Link,
    wake: &Notify,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) -> Result<(), RelayError> {
    let mut checkpoint = load_checkpoint(pool, RELAY_CHECKPOINT).await?;
    record_state(pool, "running", None).await;
    loop {
        if shutdown.is_triggered() {
            return Ok(());
        }
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let started = Instant::now();
        let batch =
            event_store::log::read_after(read_pool, checkpoint, settings.batch_size.max(1), filter)
                .await?;
        if let Some(last) = batch.last().map(|event| event.log_position) {
            publish(link, &settings.exchange, &batch).await?;
            checkpoint = advance(pool, checkpoint, last, batch.len()).await?;
            backoff.reset();
            metrics::counter!("relay_events_published_total").increment(batch.len() as u64);
            metrics::histogram!("relay_batch_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::gauge!("relay_checkpoint_position").set(last.position as f64);
            announce(pool, RELAY_CHECKPOINT).await;
            if i64::try_from(batch.len()).unwrap_or(i64::MAX) >= settings.batch_size {
                continue;
            }
        }
        // A broker that goes away while we are idle is noticed at the next publish, which
        // then fails and reconnects; nothing is lost meanwhile since the log is the buffer.
        let wait = if link.connection.status().connected() {
            settings.poll_interval
        } else {
            return Err(RelayError::Disconnected);
        };
        tokio::select! {
            biased;
            () = shutdown.wait() => return Ok(()),
            () = &mut notified => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_url_never_prints_its_password() {
        let url = BrokerUrl::new("amqp://guest:hunter2@rabbit:5672/%2f");
        let printed = format!("{url:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(printed, "amqp://guest:***@rabbit:5672/%2f");
    }
}
