//! What every handler shares: the pool, the settings and the checkpoint announcements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use event_store::wake::{CHECKPOINTS_CHANNEL, spawn_listener};
use sqlx::PgPool;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use service_kit::Authenticator;
use service_kit::caller::AuthSetupError;
use service_kit::read_lane::{LaneError, ReadLane};

use crate::announced::Announced;
use crate::read::totals::Totals;
use crate::settings::Settings;

/// What every handler shares: the pool, the settings and what the projectors announced.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The pool's database again, for reads of one statement (`service_kit::read_lane`).
    lane: ReadLane,
    authenticator: Authenticator,
    settings: Settings,
    announced: Arc<Announced>,
    /// Whether reads may feed the version map: only when they go to the primary.
    learns_from_reads: bool,
    totals: Totals,
    wait_queries: AtomicU64,
    listener: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The listener holds a pooled connection for as long as it runs; stopping it with the
        // last state lets `PgPool::close` finish instead of waiting on it forever.
        self.listener.abort();
        self.follower.abort();
    }
}

impl AppState {
    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Connections to the pool's database for statements outside transactions, given back
    /// without the pool's round trip on release.
    pub fn lane(&self) -> &ReadLane {
        &self.inner.lane
    }

    /// Verifies access tokens and knows revocations.
    pub fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    /// The settings the state was made with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// What the projectors announced on [`CHECKPOINTS_CHANNEL`]: checkpoints and row versions.
    pub fn announced(&self) -> &Announced {
        &self.inner.announced
    }

    /// Whether item reads may feed [`Self::announced`]'s version map ([`Announced::learn`]):
    /// `QUERY_LEARN_VERSIONS`, and only when reads go to the primary the projector writes to,
    /// since a replica may not yet show a move already announced.
    pub fn learns_from_reads(&self) -> bool {
        self.inner.learns_from_reads
    }

    /// List totals by filter, each valid at one checkpoint.
    pub fn totals(&self) -> &Totals {
        &self.inner.totals
    }

    /// Counts a database query made by a consistency wait.
    pub(crate) fn count_wait_query(&self) {
        self.inner.wait_queries.fetch_add(1, Ordering::Relaxed);
    }

    /// How many database queries consistency waits have made since start: what a token costs
    /// the database (tests bound it; a far-future token once cost one query every 25 ms).
    pub fn wait_queries(&self) -> u64 {
        self.inner.wait_queries.load(Ordering::Relaxed)
    }
}

impl axum::extract::FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.inner.authenticator.clone()
    }
}

/// Makes the shared state and starts listening for checkpoint announcements on `pool`, which
/// is also the primary that revocations are read from. The listener stops when the last clone
/// of the state is dropped.
///
/// # Errors
///
/// No token signing keys are configured, or they do not load ([`StateError::Auth`]); the
/// read lane cannot be made ([`StateError::Lane`]).
pub async fn app_state(pool: PgPool, settings: Settings) -> Result<AppState, StateError> {
    let primary = pool.clone();
    let learns = settings.learn_versions;
    build(pool, primary, settings, learns)
}

/// [`app_state`] reading from `pool` (a replica, say) and revocations from `primary`:
/// a revocation must reach every replica within two seconds, which a lagging replica would not
/// promise. Reads never feed the version map here (`pool` may lag behind the announcements).
///
/// # Errors
///
/// As [`app_state`].
pub async fn app_state_with_primary(
    pool: PgPool,
    primary: PgPool,
    settings: Settings,
) -> Result<AppState, StateError> {
    build(pool, primary, settings, false)
}

/// Why the shared state could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The token signing keys.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The read lane.
    #[error(transparent)]
    Lane(#[from] LaneError),
}

fn build(
    pool: PgPool,
    primary: PgPool,
    settings: Settings,
    learns_from_reads: bool,
) -> Result<AppState, StateError> {
    // As large as the pool, to the same database, with the same options and wait.
    let lane = ReadLane::new(
        crate::settings::SERVICE,
        (*pool.connect_options()).clone(),
        usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX),
        pool.options().get_acquire_timeout(),
    )?;
    let authenticator = Authenticator::with_feed(settings.auth.signing_keys()?.verifier(), primary);
    let listener = spawn_listener(pool.clone(), CHECKPOINTS_CHANNEL);
    let announced = Arc::new(Announced::default());
    let mut deliveries = listener.subscribe();
    let follower = tokio::spawn({
        let announced = Arc::clone(&announced);
        async move {
            loop {
                match deliveries.recv().await {
                    Ok(delivery) => announced.apply(&delivery),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "checkpoint announcements lagged");
                        announced.lagged();
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        }
    });
    let totals = Totals::new(settings.totals_cache);
    Ok(AppState {
        inner: Arc::new(Inner {
            pool,
            lane,
            authenticator,
            settings,
            announced,
            learns_from_reads,
            totals,
            wait_queries: AtomicU64::new(0),
            listener: listener.task,
            follower,
        }),
    })
}
