//! The RabbitMQ relay: a checkpointed subscription to the whole log that publishes every event,
//! in commit-safe order, to a durable topic exchange (API.md, "Event stream on RabbitMQ").
//!
//! The relay is a sink of the one subscription loop ([`crate::subscription`]). Each round
//! reads a batch after the relay's checkpoint (its own row in
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

use async_trait::async_trait;
use event_store::LogFilter;
use event_store::checkpoints;
use event_store::wake::CheckpointMoved;
use events::{LogPosition, RecordedEvent};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use service_kit::env::{EnvError, string_or, var_or};
use service_kit::metric_names;
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::subscription::{self, Delivered, LoopSettings, Pools, Sink};

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
    /// The most payload bytes published per round (the projector's `PROJECTOR_BATCH_BYTES`).
    pub max_bytes: i64,
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
    pub fn from_env(
        batch_size: i64,
        max_bytes: i64,
        poll_interval: Duration,
    ) -> Result<Self, EnvError> {
        Ok(Self {
            enabled: var_or("RELAY_ENABLED", true)?,
            url: BrokerUrl::new(string_or("RABBITMQ_URL", DEFAULT_RABBITMQ_URL)),
            exchange: string_or("RELAY_EXCHANGE", DEFAULT_EXCHANGE),
            batch_size,
            max_bytes,
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
            max_bytes: subscription::DEFAULT_BATCH_BYTES,
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
    /// The broker nacked a message: publish again from the checkpoint (or the outbox).
    #[error("the broker nacked message {0}")]
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

/// A confirm-mode channel to the broker, with the exchange declared: the relay's and the mail
/// relay's (crate::mail) alike.
pub(crate) struct Link {
    pub(crate) connection: Connection,
    channel: Channel,
}

async fn connect(settings: &RelaySettings) -> Result<Link, RelayError> {
    connect_to(&settings.url, &settings.connection_name, &settings.exchange).await
}

/// Opens a confirm-mode channel to `url` and declares the durable topic `exchange`.
pub(crate) async fn connect_to(
    url: &BrokerUrl,
    connection_name: &str,
    exchange: &str,
) -> Result<Link, RelayError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(connection_name.to_owned()));
    let open = async {
        let connection = Connection::connect(url.expose(), properties).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .exchange_declare(
                short(exchange)?,
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

/// The producer span of an event's message, a child of the context the event was written in
/// (its `traceparent`), so that the message continues the command's trace.
pub fn producer_span(exchange: &str, event: &RecordedEvent) -> tracing::Span {
    // A root unless the event names its trace: never a child of the relay's process-long span.
    let span = tracing::info_span!(
        parent: None,
        "publish",
        otel.name = %format_args!("{exchange} publish"),
        otel.kind = "producer",
        messaging.system = "rabbitmq",
        messaging.operation.r#type = "send",
        messaging.destination.name = %exchange,
        messaging.rabbitmq.destination.routing_key = %routing_key(event),
        messaging.message.id = %event.event_id,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(traceparent) = event
        .metadata
        .get("traceparent")
        .and_then(|value| value.as_str())
    {
        service_kit::otel::continue_from(&span, traceparent);
    }
    span
}

/// The AMQP properties of an event's message, as API.md lists them, published inside
/// `producer`: its `traceparent` is the producer span's (the event's own when the span has no
/// context, as without a tracing subscriber).
pub fn properties(event: &RecordedEvent, producer: &tracing::Span) -> BasicProperties {
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
    service_kit::otel::inject(producer, |key, value| {
        headers.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    });
    BasicProperties::default()
        .with_message_id(event.event_id.to_string().into())
        .with_content_type("application/json".into())
        // 2 = persistent: written to disk by durable queues.
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(event.recorded_at.timestamp()).unwrap_or_default())
        .with_headers(headers)
}

/// One message to publish with confirms.
pub(crate) struct Outgoing {
    /// Its message id, named in a nack.
    pub(crate) id: uuid::Uuid,
    /// Its routing key.
    pub(crate) routing_key: String,
    /// Its body.
    pub(crate) body: Vec<u8>,
    /// Its AMQP properties.
    pub(crate) properties: BasicProperties,
}

/// Publishes `batch` on `link` and waits for every confirm: returns only when the broker has
/// taken responsibility for all of it.
async fn publish(link: &Link, exchange: &str, batch: &[RecordedEvent]) -> Result<(), RelayError> {
    // Each message's producer span lasts until the whole batch is confirmed.
    let producers: Vec<tracing::Span> = batch
        .iter()
        .map(|event| producer_span(exchange, event))
        .collect();
    let messages = batch
        .iter()
        .zip(&producers)
        .map(|(event, producer)| {
            let body = serde_json::to_vec(event).map_err(|error| RelayError::Unpublishable {
                event_id: event.event_id,
                reason: error.to_string(),
            })?;
            Ok(Outgoing {
                id: event.event_id,
                routing_key: routing_key(event),
                body,
                properties: properties(event, producer),
            })
        })
        .collect::<Result<Vec<_>, RelayError>>()?;
    let published = publish_confirmed(link, exchange, messages).await;
    if published.is_err() {
        for producer in &producers {
            producer.record("otel.status_code", "error");
        }
    }
    published
}

/// Publishes `messages` on `link` and waits for every confirm (the one publisher-confirm path
/// of the projector, used by the event relay and the mail relay).
pub(crate) async fn publish_confirmed(
    link: &Link,
    exchange: &str,
    messages: Vec<Outgoing>,
) -> Result<(), RelayError> {
    let exchange = short(exchange)?;
    let mut confirms = Vec::with_capacity(messages.len());
    // Pipelined: every message is sent before the first confirm is awaited, so a batch costs
    // one round trip rather than one per message.
    for message in messages {
        let key = ShortString::try_new(message.routing_key).map_err(|error| {
            RelayError::Unpublishable {
                event_id: message.id,
                reason: error.to_string(),
            }
        })?;
        let confirm = link
            .channel
            .basic_publish(
                exchange.clone(),
                key,
                BasicPublishOptions::default(),
                &message.body,
                message.properties,
            )
            .await?;
        confirms.push((message.id, confirm));
    }
    let all = async {
        for (id, confirm) in confirms {
            let confirmation = confirm.await?;
            if !confirmation.is_ack() {
                return Err(RelayError::Nacked(id));
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, all)
        .await
        .map_err(|_| RelayError::Timeout(CONFIRM_TIMEOUT))?
}

/// The relay as a sink of a subscription: publishes each batch with confirms and moves its
/// checkpoint only then. The connection is opened lazily and dropped on any failure, so the
/// next round publishes again from the checkpoint on a fresh one.
struct RelaySink<'a> {
    pool: &'a PgPool,
    settings: &'a RelaySettings,
    filter: LogFilter,
    link: Option<Link>,
}

impl RelaySink<'_> {
    async fn disconnect(&mut self) {
        if let Some(link) = self.link.take() {
            metrics::gauge!(metric_names::RELAY_CONNECTED).set(0.0);
            // Best effort: the broker may already be gone.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                link.connection.close(200, "relay reconnecting".into()),
            )
            .await;
        }
    }
}

async fn record_state(pool: &PgPool, state: &str, error: Option<&str>) {
    if let Err(error) = checkpoints::record_state(pool, RELAY_CHECKPOINT, state, error).await {
        tracing::warn!(%error, "cannot record the relay's state");
    }
}

#[async_trait]
impl Sink for RelaySink<'_> {
    type Error = RelayError;

    fn checkpoint(&self) -> &str {
        RELAY_CHECKPOINT
    }

    fn filter(&self) -> &LogFilter {
        &self.filter
    }

    fn retry_bounds(&self) -> (Duration, Duration) {
        (RECONNECT_MIN, RECONNECT_MAX)
    }

    async fn start(&mut self, pool: &PgPool) -> Result<LogPosition, RelayError> {
        Ok(checkpoints::ensure(pool, RELAY_CHECKPOINT).await?.position)
    }

    async fn prepare(&mut self) -> Result<(), RelayError> {
        // A broker that went away while we were idle is noticed here (or at the next
        // publish); nothing is lost meanwhile since the log is the buffer.
        if self
            .link
            .as_ref()
            .is_some_and(|link| !link.connection.status().connected())
        {
            self.disconnect().await;
        }
        if self.link.is_none() {
            let link = connect(self.settings).await?;
            tracing::info!(url = ?self.settings.url, "relay connected");
            metrics::gauge!(metric_names::RELAY_CONNECTED).set(1.0);
            self.link = Some(link);
            record_state(self.pool, "running", None).await;
        }
        Ok(())
    }

    async fn deliver(
        &mut self,
        after: LogPosition,
        batch: &[RecordedEvent],
    ) -> Result<Delivered, RelayError> {
        let started = Instant::now();
        let Some(last) = batch.last().map(|event| event.log_position) else {
            return Ok(Delivered::Overtaken(after));
        };
        let link = self.link.as_ref().ok_or(RelayError::Disconnected)?;
        publish(link, &self.settings.exchange, batch).await?;
        let Some(moved) =
            checkpoints::advance_from(self.pool, RELAY_CHECKPOINT, after, last, batch.len())
                .await?
        else {
            // Another relay (a replica that briefly overlapped) moved it: go on from there.
            let now = checkpoints::ensure(self.pool, RELAY_CHECKPOINT).await?;
            return Ok(Delivered::Overtaken(now.position));
        };
        metrics::counter!(metric_names::RELAY_PUBLISHED_TOTAL).increment(batch.len() as u64);
        metrics::histogram!(metric_names::RELAY_BATCH_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(Delivered::Moved {
            count: batch.len(),
            // Nothing reads rows of the relay: only where it stands.
            moved: CheckpointMoved {
                projection: RELAY_CHECKPOINT.to_owned(),
                checkpoint: moved.position,
                generation: moved.generation,
                changed: Vec::new(),
                complete: true,
            },
        })
    }

    fn database_error(&self, error: sqlx::Error) -> RelayError {
        RelayError::Database(error)
    }

    fn is_final(&self, _error: &RelayError) -> bool {
        // Every failure of the relay is the broker's or the database's, never an event's
        // that would fail again: keep trying.
        false
    }

    async fn interrupted(&mut self, error: &RelayError) {
        let state = match error {
            RelayError::Database(_) => "database_unavailable",
            _ => "waiting_for_broker",
        };
        metrics::counter!(metric_names::RELAY_INTERRUPTIONS_TOTAL).increment(1);
        self.disconnect().await;
        record_state(self.pool, state, Some(&error.to_string())).await;
    }

    async fn close(&mut self) {
        self.disconnect().await;
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
    let mut sink = RelaySink {
        pool: &pool,
        settings: &settings,
        filter: LogFilter::default(),
        link: None,
    };
    let pools = Pools {
        write: &pool,
        read: &read_pool,
    };
    let loop_settings = LoopSettings {
        batch_size: settings.batch_size,
        poll_interval: settings.poll_interval,
        max_bytes: settings.max_bytes,
        // It reads every type: it never has unrelated events to skip.
        skip_every: LoopSettings::DEFAULT_SKIP_EVERY,
    };
    let running = subscription::run(pools, &mut sink, loop_settings, &wake, &shutdown);
    if let Err(error) = tracing::Instrument::instrument(running, span).await {
        // Unreachable by `is_final`, but said rather than dropped.
        tracing::error!(%error, "relay stopped");
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
