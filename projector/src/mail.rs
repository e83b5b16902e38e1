//! The mail relay: publishes the accounts' mail outbox (event_store::mail_outbox) to the
//! durable topic exchange `chronicle.mail` with routing key `mail.<template>`, with publisher
//! confirms (the event relay's, `relay::publish_confirmed`), and deletes each row
//! once the broker confirmed it: at least once, consumers dedupe on `message_id`
//! (ACCOUNTS.md, "Mail on RabbitMQ").
//!
//! It runs in the projector process beside the event relay, in one replica at a time
//! ([`crate::leader`]), woken by the append notifications every mail comes with (a mail is
//! written in the transaction of the events that cause it), with polling as a fallback.
//!
//! Settings: `MAIL_EXCHANGE` (default `chronicle.mail`), `MAIL_RELAY_ENABLED` (default: the
//! event relay's `RELAY_ENABLED`), `AUTH_MAIL_LOG` (default `false`; the dev runner turns it
//! on): also log each mail as `mail to=… template=… link=…`, and `RABBITMQ_URL`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use event_store::mail_outbox::{self, Mail};
use lapin::BasicProperties;
use serde::Serialize;
use service_kit::env::{EnvError, string_or, var_or};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::relay::{self, BrokerUrl, Link, Outgoing, RelayError};

/// `MAIL_EXCHANGE` when unset.
pub const DEFAULT_MAIL_EXCHANGE: &str = "chronicle.mail";

/// The leader-lock name of the mail relay.
pub const MAIL_RELAY: &str = "mail-relay";

/// Mails published per round.
const BATCH: i64 = 100;

/// Bounds of the wait between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The mail relay's settings.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `MAIL_RELAY_ENABLED`.
    pub enabled: bool,
    /// `RABBITMQ_URL`.
    pub url: BrokerUrl,
    /// `MAIL_EXCHANGE`.
    pub exchange: String,
    /// `AUTH_MAIL_LOG`: also log each mail with its link (dev only: the link is a secret).
    pub log: bool,
    /// How long an idle relay waits for a wake-up before reading the outbox anyway.
    pub poll_interval: Duration,
    /// The AMQP connection name.
    pub connection_name: String,
}

impl MailSettings {
    /// Reads the variables; `relay_enabled` is the default of `MAIL_RELAY_ENABLED`.
    ///
    /// # Errors
    ///
    /// A variable does not parse.
    pub fn from_env(relay_enabled: bool, poll_interval: Duration) -> Result<Self, EnvError> {
        Ok(Self {
            enabled: var_or("MAIL_RELAY_ENABLED", relay_enabled)?,
            url: BrokerUrl::new(string_or("RABBITMQ_URL", relay::DEFAULT_RABBITMQ_URL)),
            exchange: string_or("MAIL_EXCHANGE", DEFAULT_MAIL_EXCHANGE),
            log: var_or("AUTH_MAIL_LOG", false)?,
            poll_interval,
            connection_name: format!("chronicle-mail/{}", std::process::id()),
        })
    }

    /// A disabled mail relay (tests of other parts).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            url: BrokerUrl::new(relay::DEFAULT_RABBITMQ_URL),
            exchange: DEFAULT_MAIL_EXCHANGE.to_owned(),
            log: false,
            poll_interval: Duration::from_millis(500),
            connection_name: "chronicle-mail".to_owned(),
        }
    }
}

/// A mail message's body, as ACCOUNTS.md lists it; the link fields only for templates with a
/// link.
#[derive(Debug, Serialize)]
struct Body<'a> {
    message_id: Uuid,
    template: &'a str,
    to: &'a str,
    account_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<chrono::DateTime<Utc>>,
    created_at: chrono::DateTime<Utc>,
}

/// The message a mail becomes.
fn outgoing(mail: &Mail) -> Result<Outgoing, RelayError> {
    let body = serde_json::to_vec(&Body {
        message_id: mail.message_id,
        template: &mail.template,
        to: &mail.recipient,
        account_id: mail.account_id,
        token: mail.token.as_deref(),
        link: mail.link.as_deref(),
        expires_at: mail.expires_at,
        created_at: mail.created_at,
    })
    .map_err(|error| RelayError::Unpublishable {
        event_id: mail.message_id,
        reason: error.to_string(),
    })?;
    let mut properties = BasicProperties::default()
        .with_message_id(mail.message_id.to_string().into())
        .with_content_type("application/json".into())
        // 2 = persistent.
        .with_delivery_mode(2)
        .with_timestamp(u64::try_from(mail.created_at.timestamp()).unwrap_or_default());
    if let (Some(_), Some(expires_at)) = (&mail.link, mail.expires_at) {
        // A link past its expiry is worthless: let the broker drop the message by then.
        let millis = (expires_at - Utc::now()).num_milliseconds().max(1);
        properties = properties.with_expiration(millis.to_string().into());
    }
    Ok(Outgoing {
        id: mail.message_id,
        routing_key: format!("mail.{}", mail.template),
        body,
        properties,
    })
}

/// Publishes one round of the outbox on `link` and deletes what the broker confirmed;
/// returns how many mails went out.
async fn round(pool: &PgPool, link: &Link, settings: &MailSettings) -> Result<usize, RelayError> {
    let mails = mail_outbox::pending(pool, BATCH).await?;
    if mails.is_empty() {
        return Ok(0);
    }
    let messages = mails.iter().map(outgoing).collect::<Result<Vec<_>, _>>()?;
    relay::publish_confirmed(link, &settings.exchange, messages).await?;
    let ids: Vec<Uuid> = mails.iter().map(|mail| mail.message_id).collect();
    mail_outbox::delete(pool, &ids).await?;
    for mail in &mails {
        if settings.log {
            tracing::info!(
                "mail to={} template={} link={}",
                mail.recipient,
                mail.template,
                mail.link.as_deref().unwrap_or("-")
            );
        }
    }
    metrics::counter!(service_kit::metric_names::MAIL_PUBLISHED_TOTAL)
        .increment(mails.len() as u64);
    Ok(mails.len())
}

/// Runs the mail relay until `shutdown`. Never returns an error: a broker or database failure
/// drops the connection and retries with backoff; unconfirmed mail stays in the outbox.
pub async fn run_mail_relay(
    pool: PgPool,
    settings: MailSettings,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let mut link: Option<Link> = None;
    let mut backoff = RECONNECT_MIN;
    loop {
        if shutdown.is_triggered() {
            break;
        }
        if link
            .as_ref()
            .is_some_and(|link| !link.connection.status().connected())
        {
            link = None;
        }
        let outcome = match &link {
            Some(open) => round(&pool, open, &settings).await,
            None => {
                match relay::connect_to(
                    &settings.url,
                    &settings.connection_name,
                    &settings.exchange,
                )
                .await
                {
                    Ok(open) => {
                        tracing::info!(exchange = %settings.exchange, "mail relay connected");
                        link = Some(open);
                        continue;
                    }
                    Err(error) => Err(error),
                }
            }
        };
        match outcome {
            // A full batch: more may be waiting.
            Ok(count) if count as i64 >= BATCH => continue,
            Ok(_) => {
                backoff = RECONNECT_MIN;
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(settings.poll_interval) => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "mail relay interrupted; retrying");
                if let Some(open) = link.take() {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        open.connection.close(200, "mail relay reconnecting".into()),
                    )
                    .await;
                }
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
    if let Some(open) = link {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            open.connection.close(200, "mail relay stopping".into()),
        )
        .await;
    }
}
