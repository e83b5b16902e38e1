//! Loading aggregates through cqrs-es and postgres-es's repository, with the upcasters of
//! schema evolution applied to every stored event on the way.

use cqrs_es::persist::{EventUpcaster, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventStore as _};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

/// An aggregate loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state after applying every stored event.
    pub aggregate: A,
    /// The stream revision: how many events the stream holds.
    pub version: i64,
}

/// Loads aggregates of type `A` with postgres-es, upcasting old event versions on the way.
pub struct AggregateLoader<A: Aggregate> {
    store: PersistedEventStore<PostgresEventRepository, A>,
}

impl<A: Aggregate> AggregateLoader<A> {
    /// A loader on `pool` applying `upcasters` to stored events.
    pub fn new(pool: PgPool, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        let repo = PostgresEventRepository::new(pool);
        Self {
            store: PersistedEventStore::new_event_store(repo).with_upcasters(upcasters),
        }
    }

    /// Replays the stream of `aggregate_id` into a fresh aggregate.
    pub async fn load(&self, aggregate_id: &str) -> Result<Loaded<A>, AggregateError<A::Error>> {
        let context = self.store.load_aggregate(aggregate_id).await?;
        Ok(Loaded {
            aggregate: context.aggregate,
            version: i64::try_from(context.current_sequence).unwrap_or(i64::MAX),
        })
    }
}
