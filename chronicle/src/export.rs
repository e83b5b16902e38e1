//! `chronicle export`: the event log (or a filtered part of it) as NDJSON, one envelope per
//! line, in commit-safe order.
//!
//! The log is read in pages with [`event_store::log::read_after`], so memory stays constant however
//! long the log is, and every event comes upcast to its current schema version. The export
//! ends when it has caught up with what is committed; the returned cursor resumes it later
//! (`--after`), without skipping or repeating an event.

use std::io::Write;

use anyhow::Context as _;
use event_store::LogFilter;
use events::LogPosition;
use sqlx::PgPool;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Export events after this position ([`LogPosition::START`] for the whole log).
    pub after: LogPosition,
    /// Which events.
    pub filter: LogFilter,
    /// Events read per page (at least 1).
    pub page_size: i64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            after: LogPosition::START,
            filter: LogFilter::default(),
            page_size: 1000,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    /// How many events were written.
    pub exported: u64,
    /// The position of the last event written (or the starting one): pass it as `--after` to
    /// continue.
    pub cursor: LogPosition,
}

/// Writes every event matching `options` to `out` as NDJSON (one envelope per line, the
/// format of `GET /api/v1/audit/events` items), page by page until the committed log is
/// exhausted.
///
/// # Errors
///
/// Reading the log or writing to `out` failed; what was written so far is complete lines, and
/// the error says where to resume.
pub async fn export_ndjson(
    pool: &PgPool,
    options: &ExportOptions,
    out: &mut impl Write,
) -> anyhow::Result<ExportSummary> {
    let page_size = options.page_size.max(1);
    let mut summary = ExportSummary {
        exported: 0,
        cursor: options.after,
    };
    loop {
        let page = event_store::log::read_after(pool, summary.cursor, page_size, &options.filter)
            .await
            .with_context(|| {
                format!(
                    "reading the log after {}",
                    events::position::encode_position(summary.cursor)
                )
            })?;
        let Some(last) = page.last().map(|event| event.log_position) else {
            break;
        };
        for event in &page {
            serde_json::to_writer(&mut *out, event).context("writing an event")?;
            out.write_all(b"\n").context("writing an event")?;
        }
        summary.exported += page.len() as u64;
        summary.cursor = last;
        // A short page means the committed log is exhausted for now.
        if i64::try_from(page.len()).unwrap_or(i64::MAX) < page_size {
            break;
        }
    }
    out.flush().context("flushing the output")?;
    Ok(summary)
}
