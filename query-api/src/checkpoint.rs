//! A projection's checkpoint as the query side reads it: how far the read model has applied
//! the log, and which generation of the read model that is.

use events::LogPosition;
use sqlx::PgExecutor;

/// Where a read model stands. Everything the query API derives from a read model's state
/// without reading its rows (list ETags, consistency waits) is derived from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The last event applied, in commit-safe order.
    pub at: LogPosition,
    /// Bumped by each rebuild swap, which can change rows without moving `at`: a tag that
    /// left it out would vouch for the rows before the rebuild.
    pub generation: i64,
}

/// The checkpoint of `projection`; the start of the log, generation 0, when it has none yet.
///
/// # Errors
///
/// The database fails.
pub async fn read<'e>(
    executor: impl PgExecutor<'e>,
    projection: &str,
) -> Result<Checkpoint, sqlx::Error> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT tx_id, position, generation FROM projection_checkpoints WHERE name = $1",
    )
    .bind(projection)
    .fetch_optional(executor)
    .await?;
    Ok(
        row.map_or(Checkpoint::default(), |(tx_id, position, generation)| {
            Checkpoint {
                at: LogPosition { tx_id, position },
                generation,
            }
        }),
    )
}
