//! `chronicle_db_query_duration_seconds{service, operation}`,
//! `chronicle_db_pool_acquire_duration_seconds{service}` and one OpenTelemetry client span per
//! statement, from sqlx's own tracing events: one per statement (target `sqlx::query`, fields
//! `summary`, `elapsed_secs`, `rows_returned`, `rows_affected`) and one per pool acquire
//! (target `sqlx::pool::acquire`, field `aquired_after_secs`, sqlx's spelling). Built from
//! events rather than by wrapping our calls, so statements run by postgres-es are timed and
//! traced too; the histogram and the span of a statement come from the same event.
//!
//! sqlx reports a statement once it is done, so its span is made then, with the start time
//! moved back by `elapsed_secs`, as a child of the OpenTelemetry context active on the thread
//! (the span of ours the statement ran in). Only statements inside a sampled trace get one, and
//! only when exporting: with export off there is no SDK and the layer is given no tracer
//! ([`crate::telemetry::id_layers`]), as a span nothing receives is waste even in a trace the
//! caller sampled.
//!
//! The `service` label comes from the task-local set by [`in_service`]: around every request's
//! handler ([`crate::http::plumb`]) and around the projector's loops. A statement run
//! outside any (start-up migrations, a background purge) is not timed: its service is unknown,
//! and `service` may only take the catalogue's values.

use std::future::Future;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use metrics::Histogram;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterFn, Filtered};
use tracing_subscriber::layer::Context;

use crate::metric_names::{DB_POOL_ACQUIRE_DURATION_SECONDS, DB_QUERY_DURATION_SECONDS};
use crate::series::Series;

/// sqlx's statement events.
const QUERY_TARGET: &str = "sqlx::query";
/// sqlx's acquire events (enabled by [`crate::db::DatabaseSettings::connect`]).
const ACQUIRE_TARGET: &str = "sqlx::pool::acquire";

tokio::task_local! {
    static SERVICE: &'static str;
}

/// Runs `work` as `service`'s: the statements it runs are timed under that `service` label.
pub async fn in_service<F: Future>(service: &'static str, work: F) -> F::Output {
    SERVICE.scope(service, work).await
}

/// `work`, made to run as the current task's service: for a task it spawns, since a task-local
/// does not follow the work into a new task.
pub fn inherit<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let service = current_service();
    async move {
        match service {
            Some(service) => SERVICE.scope(service, work).await,
            None => work.await,
        }
    }
}

/// The service the current task works for, if [`in_service`] said.
pub fn current_service() -> Option<&'static str> {
    SERVICE.try_with(|service| *service).ok()
}

/// The layer that turns sqlx's events into the two histograms and, given a `tracer`, the
/// statement spans, with its own filter (those two targets at every level), so the log filter
/// (`sqlx=warn`) does not hide the events from it.
pub fn layer<S>(tracer: Option<SdkTracer>) -> Filtered<SqlMetrics, FilterFn<TargetFilter>, S>
where
    S: Subscriber,
{
    SqlMetrics { tracer }.with_filter(FilterFn::new(is_sqlx_event))
}

/// Whether `metadata` is of one of the sqlx events the layer reads (statements, acquires).
pub fn is_sqlx_event(metadata: &Metadata<'_>) -> bool {
    matches!(metadata.target(), QUERY_TARGET | ACQUIRE_TARGET)
}

/// The layer's filter: whether an event's target is one of sqlx's two.
pub type TargetFilter = fn(&Metadata<'_>) -> bool;

/// See [`layer`].
#[derive(Debug, Clone, Default)]
pub struct SqlMetrics {
    tracer: Option<SdkTracer>,
}

impl SqlMetrics {
    /// The layer without a filter of its own, making statement spans on `tracer` if given:
    /// filter it to [`is_sqlx_event`] (or more), as [`layer`] does.
    pub fn new(tracer: Option<SdkTracer>) -> Self {
        Self { tracer }
    }
}

impl<S: Subscriber> Layer<S> for SqlMetrics {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let target = event.metadata().target();
        if target != QUERY_TARGET && target != ACQUIRE_TARGET {
            return;
        }
        let service = current_service();
        let parent = self
            .tracer
            .as_ref()
            .filter(|_| target == QUERY_TARGET)
            .map(|tracer| (tracer, opentelemetry::Context::current()))
            .filter(|(_, parent)| parent.span().span_context().is_sampled());
        if service.is_none() && parent.is_none() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if target == QUERY_TARGET {
            let Some(seconds) = fields.elapsed_secs else {
                return;
            };
            let operation = operation(fields.summary.as_deref().unwrap_or_default());
            if let Some(service) = service {
                static SERIES: LazyLock<Series<(&'static str, &'static str), Histogram>> =
                    LazyLock::new(Series::new);
                SERIES.with(
                    &(service, operation),
                    || {
                        let histogram = metrics::histogram!(
                            DB_QUERY_DURATION_SECONDS,
                            "service" => service,
                            "operation" => operation,
                        );
                        ((service, operation), histogram)
                    },
                    |histogram| histogram.record(seconds),
                );
            }
            if let Some((tracer, parent)) = parent {
                statement_span(tracer, &parent, operation, seconds, fields);
            }
        } else if let (Some(seconds), Some(service)) = (fields.acquired_after_secs, service) {
            static SERIES: LazyLock<Series<&'static str, Histogram>> = LazyLock::new(Series::new);
            SERIES.with(
                &service,
                || {
                    let histogram =
                        metrics::histogram!(DB_POOL_ACQUIRE_DURATION_SECONDS, "service" => service);
                    (service, histogram)
                },
                |histogram| histogram.record(seconds),
            );
        }
    }
}

/// The client span of a statement that has just finished after `seconds`, under `parent`:
/// named by sqlx's summary (the statement's first words: no bound values), with the OTel
/// database conventions' attributes and the rows it returned or affected.
fn statement_span(
    tracer: &SdkTracer,
    parent: &opentelemetry::Context,
    operation: &'static str,
    seconds: f64,
    fields: Fields,
) {
    let ended = SystemTime::now();
    let started = Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|elapsed| ended.checked_sub(elapsed))
        .unwrap_or(ended);
    let summary = fields.summary.unwrap_or_else(|| operation.to_owned());
    let mut attributes = vec![
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.operation.name", operation),
        KeyValue::new("db.query.summary", summary.clone()),
    ];
    if let Some(rows) = fields.rows_returned {
        attributes.push(KeyValue::new(
            "db.response.returned_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        ));
    }
    if let Some(rows) = fields.rows_affected {
        attributes.push(KeyValue::new(
            "db.response.affected_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        ));
    }
    let mut span = tracer
        .span_builder(summary)
        .with_kind(SpanKind::Client)
        .with_start_time(started)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    span.end_with_timestamp(ended);
}

/// The `operation` label of a statement, from its first word (sqlx's summary is the first four
/// words): `SELECT`, `INSERT`, `UPDATE`, `DELETE`, else `OTHER` (a `WITH` query, `BEGIN`,
/// `SET`, ...).
pub fn operation(summary: &str) -> &'static str {
    let first = summary.split_whitespace().next().unwrap_or_default();
    ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .find(|keyword| first.eq_ignore_ascii_case(keyword))
        .unwrap_or("OTHER")
}

/// The fields of sqlx's events the histograms and spans read.
#[derive(Debug, Default)]
struct Fields {
    summary: Option<String>,
    elapsed_secs: Option<f64>,
    acquired_after_secs: Option<f64>,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or_default());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match field.name() {
            "elapsed_secs" => self.elapsed_secs = Some(value),
            "aquired_after_secs" | "acquired_after_secs" => self.acquired_after_secs = Some(value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_the_statements_first_word() {
        assert_eq!(operation("SELECT name, state FROM"), "SELECT");
        assert_eq!(operation("insert into events (aggregate_type,"), "INSERT");
        assert_eq!(operation("WITH sources AS (SELECT"), "OTHER");
        assert_eq!(operation(""), "OTHER");
    }
}
