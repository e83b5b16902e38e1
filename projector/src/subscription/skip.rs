//! Keeping an idle subscription's checkpoint close to the head of the log (docs/decisions/0006).

use event_store::checkpoints;
use event_store::wake::CheckpointMoved;
use events::LogPosition;

use super::{Pools, Sink, announce};

/// Moves an idle subscription's checkpoint past the events below the commit-safe horizon
/// that it does not read, so that what looks "after the checkpoint" (the held-back check,
/// the query API's waits, the lag) stays a short range however much of the log concerns
/// others. Under a compare-and-set, so a batch another process applies meanwhile wins.
/// Returns the new checkpoint, or `None` when it stays (errors are logged: the next idle
/// round tries again).
pub(super) async fn skip_unrelated<S: Sink>(
    pools: Pools<'_>,
    sink: &S,
    checkpoint: LogPosition,
) -> Option<LogPosition> {
    let types = &sink.filter().aggregate_types;
    if types.is_empty() {
        // It reads every event: idle means nothing is there to skip.
        return None;
    }
    let skip = async {
        let Some(mut head) = event_store::log::last_committed(pools.read).await? else {
            return Ok(None);
        };
        if let Some(until) = sink.until() {
            head = head.min(until);
        }
        // Everything up to `head` is committed, so this check sees all it will ever hold.
        if head <= checkpoint
            || event_store::log::any_between(pools.read, types, checkpoint, Some(head)).await?
        {
            return Ok(None);
        }
        checkpoints::skip_from(pools.write, sink.checkpoint(), checkpoint, head).await
    };
    match skip.await {
        Ok(Some(moved)) => {
            tracing::debug!(
                position = moved.position.position,
                "skipped unrelated events"
            );
            announce(
                pools.write,
                &CheckpointMoved {
                    projection: sink.checkpoint().to_owned(),
                    checkpoint: moved.position,
                    generation: moved.generation,
                    changed: Vec::new(),
                    complete: true,
                },
            )
            .await;
            Some(moved.position)
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot skip unrelated events");
            None
        }
    }
}
