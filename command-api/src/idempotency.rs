//! The HTTP side of idempotency keys: what a key may look like, what a request is bound to
//! (its fingerprint), and the task purging old records. Claims, replays and their storage are
//! the event store's (`event_store::idempotency`); the claim is completed by the statement
//! that appends the command's events (docs/decisions/0003-atomic-idempotency.md).

use std::time::Duration;

use service_kit::shutdown::Shutdown;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

/// The request fingerprint: method, path and body.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher.finalize().to_vec()
}

/// Whether `key` is 1-255 visible ASCII characters.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Deletes records older than `ttl` (and claims abandoned that long) every `every`, until
/// shutdown.
pub fn spawn_purger(pool: PgPool, ttl: Duration, every: Duration, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.wait() => return,
            }
            match event_store::idempotency::purge(&pool, ttl).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged expired idempotency records"),
                Err(error) => tracing::warn!(%error, "idempotency purge failed"),
            }
        }
    });
}
