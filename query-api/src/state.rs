//! What every handler shares: the pool, the settings and the checkpoint announcements.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// What every handler shares: the pool, the settings and the wake-up signal for checkpoint
/// moves. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    settings: Settings,
    checkpoints: Arc<Notify>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The listener holds a pooled connection for as long as it runs; stopping it with the
        // last state lets `PgPool::close` finish instead of waiting on it forever.
        self.listener.abort();
    }
}

impl AppState {
    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The settings the state was made with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Woken whenever a projector announces that a checkpoint moved
    /// ([`event_store::wake::CHECKPOINTS_CHANNEL`]).
    pub fn checkpoints(&self) -> &Notify {
        &self.inner.checkpoints
    }
}

/// Makes the shared state and starts listening for checkpoint announcements on `pool`. The
/// listener stops when the last clone of the state is dropped.
pub async fn app_state(pool: PgPool, settings: Settings) -> AppState {
    let (checkpoints, listener) =
        event_store::wake::listen_with_handle(pool.clone(), event_store::wake::CHECKPOINTS_CHANNEL);
    AppState {
        inner: Arc::new(Inner {
            pool,
            settings,
            checkpoints,
            listener,
        }),
    }
}
