//! A projection's checkpoint as the query side reads it: how far the read model has applied
//! the log, and which generation of the read model that is. The statement lives with every
//! other statement on checkpoints, in `event_store::checkpoints`.

use sqlx::PgExecutor;

pub use event_store::checkpoints::Checkpoint;

/// The checkpoint of `projection`; the start of the log, generation 0, when it has none yet.
///
/// # Errors
///
/// The database fails.
pub async fn read<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<Checkpoint, sqlx::Error> {
    Ok(event_store::checkpoints::read(executor, projection)
        .await?
        .unwrap_or_default())
}
