//! Connections for reads of one statement each, given back without a round trip.
//!
//! sqlx's pool tests every connection as it comes back (`PoolConnection`'s release pings it:
//! a `Sync` and its `ReadyForQuery`), a second round trip for every statement of a request
//! that holds a connection for one statement only. It guards against what a cancelled
//! statement may leave behind and flushes a dropped transaction's `ROLLBACK`; a read of one
//! statement outside a transaction needs the first only when it was cancelled, and
//! [`LaneConnection::settle`] knows whether it was: a connection whose statement did not
//! finish (its future was dropped, say by the request's deadline) or failed in transport is
//! closed, not reused. Everything else comes back as it is. A connection idle for
//! [`crate::db::TEST_IDLE_AFTER`] or longer is pinged before it is handed out, as the pool's
//! are ([`crate::db::pool_options`]), and replaced when the ping fails.
//!
//! Only for statements outside transactions: a transaction needs the pool, whose release
//! rolls back what was left open. docs/decisions/0022-read-lane.md says why this exists and
//! what it saves.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::{
    self, Metrics, Object, Pool, PoolError, QueueMode, RecycleError, Timeouts, WeakPool,
};
use metrics::Histogram;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::metric_names::DB_POOL_ACQUIRE_DURATION_SECONDS;

/// Opens the lane's connections and tests the idle ones on their way out.
#[derive(Debug)]
struct Connector {
    options: PgConnectOptions,
    test_idle_after: Duration,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        metrics: &Metrics,
    ) -> managed::RecycleResult<sqlx::Error> {
        if metrics.last_used() >= self.test_idle_after {
            connection.ping().await.map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

/// At most `size` connections to one database for single-statement reads; clones share them.
#[derive(Clone)]
pub struct ReadLane {
    pool: Pool<Connector>,
    service: &'static str,
    /// `chronicle_db_pool_acquire_duration_seconds{service}`, registered at the first
    /// acquisition: a lane is made before the services install the metrics recorder.
    waits: Arc<OnceLock<Histogram>>,
}

impl std::fmt::Debug for ReadLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadLane")
            .field("status", &self.pool.status())
            .finish()
    }
}

/// Why a lane could not be made.
#[derive(Debug, thiserror::Error)]
#[error("building the read lane: {0}")]
pub struct LaneError(String);

impl ReadLane {
    /// A lane of at most `size` connections opened with `options` (as they are opened: on
    /// demand), waiting at most `acquire_timeout` for one, for `service`'s metrics.
    ///
    /// # Errors
    ///
    /// `size` is 0.
    pub fn new(
        service: &'static str,
        options: PgConnectOptions,
        size: usize,
        acquire_timeout: Duration,
    ) -> Result<Self, LaneError> {
        Self::with_idle_test(
            service,
            options,
            size,
            acquire_timeout,
            crate::db::TEST_IDLE_AFTER,
        )
    }

    /// [`Self::new`], testing connections idle for `test_idle_after` or longer (tests use 0).
    ///
    /// # Errors
    ///
    /// `size` is 0.
    pub fn with_idle_test(
        service: &'static str,
        options: PgConnectOptions,
        size: usize,
        acquire_timeout: Duration,
        test_idle_after: Duration,
    ) -> Result<Self, LaneError> {
        if size == 0 {
            return Err(LaneError("a lane needs at least one connection".into()));
        }
        let connector = Connector {
            // A statement cut off by its request (its connection closed) would otherwise run
            // to its end on the server, unseen: PostgreSQL notices a gone client only when it
            // writes to it, unless told to look (PostgreSQL 14 and later).
            options: options.options([("client_connection_check_interval", "1000")]),
            test_idle_after,
        };
        let pool = Pool::builder(connector)
            .max_size(size)
            // The connection used last is the one most likely alive and warm.
            .queue_mode(QueueMode::Lifo)
            .timeouts(Timeouts {
                wait: Some(acquire_timeout),
                create: Some(acquire_timeout),
                recycle: Some(acquire_timeout),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| LaneError(error.to_string()))?;
        register(service, &pool);
        Ok(Self {
            pool,
            service,
            waits: Arc::default(),
        })
    }

    /// A connection, reused or opened; timed as the pool's acquisitions are
    /// (`chronicle_db_pool_acquire_duration_seconds` of the lane's service).
    ///
    /// # Errors
    ///
    /// [`sqlx::Error::PoolTimedOut`] when none is free in time, [`sqlx::Error::PoolClosed`]
    /// once the lane is closed, or why a new connection could not be opened.
    pub async fn acquire(&self) -> Result<LaneConnection, sqlx::Error> {
        let started = Instant::now();
        let object = self.pool.get().await.map_err(|error| match error {
            PoolError::Backend(error) => error,
            PoolError::Closed => sqlx::Error::PoolClosed,
            PoolError::Timeout(_)
            | PoolError::NoRuntimeSpecified
            | PoolError::PostCreateHook(_) => sqlx::Error::PoolTimedOut,
        })?;
        self.waits
            .get_or_init(
                || metrics::histogram!(DB_POOL_ACQUIRE_DURATION_SECONDS, "service" => self.service),
            )
            .record(started.elapsed().as_secs_f64());
        Ok(LaneConnection {
            object: Some(object),
            reusable: false,
        })
    }

    /// Connections open now, and how many of them are idle.
    pub fn status(&self) -> LaneStatus {
        let status = self.pool.status();
        LaneStatus {
            open: status.size,
            idle: status.available,
            max: status.max_size,
        }
    }
}

/// A lane's connections at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStatus {
    /// Open, idle or in use.
    pub open: usize,
    /// Open and idle.
    pub idle: usize,
    /// The most it opens.
    pub max: usize,
}

/// A connection of a [`ReadLane`]: closed when dropped, unless [`Self::settle`] said its
/// statement finished with the connection fit for the next.
pub struct LaneConnection {
    object: Option<Object<Connector>>,
    reusable: bool,
}

impl LaneConnection {
    /// Records how the connection's statement ended, and passes the result on: the
    /// connection is reused after a success or an error the server answered and survived (the
    /// exchange ran to its end), and closed after any other (the transport, a fatal error, a
    /// decoding that stopped reading halfway).
    ///
    /// # Errors
    ///
    /// `result`'s.
    pub fn settle<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.reusable = match &result {
            Ok(_) => true,
            // A fatal error (a terminated backend, a shutdown) ends the session with it.
            Err(sqlx::Error::Database(error)) => error
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|error| {
                    !matches!(error.severity(), PgSeverity::Fatal | PgSeverity::Panic)
                }),
            Err(_) => false,
        };
        result
    }
}

impl Deref for LaneConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Present until drop.
        self.object
            .as_deref()
            .unwrap_or_else(|| unreachable!("a lane connection is taken only when dropped"))
    }
}

impl DerefMut for LaneConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.object
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("a lane connection is taken only when dropped"))
    }
}

impl Drop for LaneConnection {
    fn drop(&mut self) {
        if !self.reusable
            && let Some(object) = self.object.take()
        {
            // Out of the lane, which opens another when it needs one; dropping the
            // connection closes its socket, and the server ends whatever it was running.
            drop(Object::take(object));
        }
    }
}

/// Every lane made, by service, for [`status_of`]: the pool gauges count their connections
/// with the pool's. Weak: a lane ends when its last clone is dropped.
static LANES: Mutex<Vec<(&'static str, WeakPool<Connector>)>> = Mutex::new(Vec::new());

fn register(service: &'static str, pool: &Pool<Connector>) {
    let mut lanes = LANES.lock().unwrap_or_else(PoisonError::into_inner);
    lanes.retain(|(_, lane)| lane.upgrade().is_some());
    lanes.push((service, pool.weak()));
}

/// The connections of every lane of `service` still in use, summed.
pub fn status_of(service: &str) -> LaneStatus {
    let lanes = LANES.lock().unwrap_or_else(PoisonError::into_inner);
    lanes
        .iter()
        .filter(|(name, _)| *name == service)
        .filter_map(|(_, lane)| lane.upgrade())
        .filter(|lane| !lane.is_closed())
        .fold(LaneStatus::default(), |sum, lane| {
            let status = lane.status();
            LaneStatus {
                open: sum.open + status.size,
                idle: sum.idle + status.available,
                max: sum.max + status.max_size,
            }
        })
}
