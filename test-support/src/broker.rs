//! A queue of a test's own on an exchange a relay publishes to, declared as the relays declare
//! theirs (a durable topic exchange), so a test reads what an outside consumer would.

use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

/// The local broker every test uses (CI starts it).
pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// How long a test's queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Deleted with its last consumer: nothing is left behind by a test that fails.
    AutoDelete,
    /// Outlives a broker restart, and so do its persistent messages; the test deletes it.
    Durable,
}

/// Declares `exchange` and a queue `queue` bound to it by `binding_key`, on a connection to
/// `url`; keep the connection for as long as the channel is used.
pub async fn bind(
    url: &str,
    exchange: &str,
    queue: &str,
    binding_key: &str,
    lifetime: Lifetime,
) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("the broker answers");
    let channel = connection.create_channel().await.expect("a channel opens");
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the exchange is declared");
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: lifetime == Lifetime::Durable,
                auto_delete: lifetime == Lifetime::AutoDelete,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue is declared");
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            binding_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the queue is bound");
    (connection, channel)
}

/// [`bind`], then a consumer on the queue (deleted with it). With `no_ack` the broker forgets
/// a message once delivered; without it the test acknowledges each.
pub async fn subscribe(
    exchange: &str,
    queue: &str,
    binding_key: &str,
    no_ack: bool,
) -> (Connection, Consumer) {
    let (connection, channel) = bind(
        RABBITMQ_URL,
        exchange,
        queue,
        binding_key,
        Lifetime::AutoDelete,
    )
    .await;
    let consumer = channel
        .basic_consume(
            queue.into(),
            format!("consumer-{queue}").as_str().into(),
            BasicConsumeOptions {
                no_ack,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the consumer starts");
    (connection, consumer)
}
