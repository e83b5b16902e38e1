//! The mail relay against the real broker: outbox rows reach a bound queue with the
//! contract's body and properties, and are deleted once the broker confirmed them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use event_store::mail_outbox::{self, Mail};
use futures::StreamExt as _;
use lapin::options::BasicAckOptions;
use projector::mail::{MailSettings, run_mail_relay};
use service_kit::shutdown::Shutdown;
use sqlx::PgPool;
use uuid::Uuid;

use crate::relay::bind_queue;

fn mail(template: &str, link: Option<&str>) -> Mail {
    Mail {
        message_id: Uuid::now_v7(),
        template: template.to_owned(),
        recipient: "ada@example.com".to_owned(),
        account_id: Some(Uuid::now_v7()),
        token: link.map(|_| "mail-token".to_owned()),
        link: link.map(str::to_owned),
        expires_at: link.map(|_| Utc::now() + chrono::Duration::hours(24)),
        created_at: Utc::now(),
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn outbox_mail_is_published_with_its_properties_and_deleted_once_confirmed(pool: PgPool) {
    let tag = format!("mail-{}", Uuid::now_v7().simple());
    let exchange = format!("chronicle.test.{tag}");
    let (_connection, mut consumer) = bind_queue(&exchange, &tag).await;
    let verify = mail(
        "verify_email",
        Some("https://app.example/verify-email#token=mail-token"),
    );
    let exists = mail("account_exists", None);
    let mut tx = pool.begin().await.unwrap();
    for mail in [&verify, &exists] {
        mail_outbox::enqueue(&mut tx, mail).await.unwrap();
    }
    tx.commit().await.unwrap();

    let settings = MailSettings {
        enabled: true,
        exchange: exchange.clone(),
        poll_interval: Duration::from_millis(50),
        connection_name: format!("chronicle-mail-test-{tag}"),
        ..MailSettings::disabled()
    };
    let shutdown = Shutdown::new();
    let relay = tokio::spawn(run_mail_relay(
        pool.clone(),
        settings,
        Arc::new(tokio::sync::Notify::new()),
        shutdown.clone(),
    ));

    let mut received = Vec::new();
    while received.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("mail arrives")
            .unwrap()
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        received.push(delivery);
    }
    for delivery in &received {
        let body: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
        let template = body["template"].as_str().unwrap();
        assert_eq!(delivery.routing_key.as_str(), format!("mail.{template}"));
        let properties = &delivery.properties;
        assert_eq!(
            properties.message_id().as_ref().map(ToString::to_string),
            body["message_id"].as_str().map(str::to_owned)
        );
        assert_eq!(
            properties.content_type().as_ref().map(ToString::to_string),
            Some("application/json".to_owned())
        );
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(body["to"], "ada@example.com");
        if template == "verify_email" {
            assert_eq!(body["token"], "mail-token");
            assert_eq!(body["link"], verify.link.as_deref().unwrap());
            assert!(body["expires_at"].is_string());
            let expiration: u64 = properties
                .expiration()
                .as_ref()
                .unwrap()
                .to_string()
                .parse()
                .unwrap();
            assert!(expiration > 23 * 3600 * 1000, "{expiration}");
        } else {
            assert_eq!(template, "account_exists");
            for absent in ["token", "link", "expires_at"] {
                assert!(body.get(absent).is_none(), "{absent}: {body}");
            }
            assert_eq!(*properties.expiration(), None);
        }
    }
    test_support::eventually(Duration::from_secs(10), "the outbox empties", || async {
        mail_outbox::pending(&pool, 10).await.unwrap().is_empty()
    })
    .await;
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .unwrap()
        .unwrap();
}
