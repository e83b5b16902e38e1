//! Every metric family the services expose, named once: the name, type, HELP text and buckets
//! of docs/metrics.md ("Families", "Histogram buckets"). Emission sites use these constants, and
//! [`crate::telemetry::metrics_handle`] describes every family and sets its buckets when it
//! installs the recorder, so a family is never exposed without `# HELP`.
//!
//! A new family is a constant and a [`FAMILIES`] row here and a row in docs/metrics.md; the
//! scrape tests fail when a service exposes a family the catalogue does not list.

/// The common prefix of every family (OBSERVABILITY.md, "Metrics").
pub const PREFIX: &str = "chronicle_";

/// A family's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A counter (`_total`).
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The name `# TYPE` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One family of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The name as exposed.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label names, in the catalogue's order.
    pub labels: &'static [&'static str],
    /// Its `# HELP` text.
    pub help: &'static str,
    /// A histogram's bucket bounds, in seconds; empty for other types.
    pub buckets: &'static [f64],
}

/// The buckets of request, statement and pool-wait durations: the alert thresholds (1 s p99,
/// 500 ms acquire) sit on bounds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The consistency wait's buckets: up to 10 s, since `CONSISTENCY_WAIT_MS` may exceed 5 s.
pub const CONSISTENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `chronicle_http_requests_total{service, method, route, status}`.
pub const HTTP_REQUESTS_TOTAL: &str = "chronicle_http_requests_total";
/// `chronicle_http_request_duration_seconds{service, method, route, status}`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "chronicle_http_request_duration_seconds";
/// `chronicle_http_requests_in_flight{service}`.
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "chronicle_http_requests_in_flight";
/// `chronicle_http_requests_shed_total{service, method, route}`.
pub const HTTP_REQUESTS_SHED_TOTAL: &str = "chronicle_http_requests_shed_total";
/// `chronicle_http_requests_timed_out_total{method, route}`.
pub const HTTP_REQUESTS_TIMED_OUT_TOTAL: &str = "chronicle_http_requests_timed_out_total";
/// `chronicle_mail_published_total`.
pub const MAIL_PUBLISHED_TOTAL: &str = "chronicle_mail_published_total";
/// `chronicle_commands_total{aggregate_type, outcome}`.
pub const COMMANDS_TOTAL: &str = "chronicle_commands_total";
/// `chronicle_command_retries_total{aggregate_type}`.
pub const COMMAND_RETRIES_TOTAL: &str = "chronicle_command_retries_total";
/// `chronicle_events_appended_total{aggregate_type}`.
pub const EVENTS_APPENDED_TOTAL: &str = "chronicle_events_appended_total";
/// `chronicle_idempotency_requests_total{result}`.
pub const IDEMPOTENCY_REQUESTS_TOTAL: &str = "chronicle_idempotency_requests_total";
/// `chronicle_db_query_duration_seconds{service, operation}`.
pub const DB_QUERY_DURATION_SECONDS: &str = "chronicle_db_query_duration_seconds";
/// `chronicle_db_pool_connections{service, state}`.
pub const DB_POOL_CONNECTIONS: &str = "chronicle_db_pool_connections";
/// `chronicle_db_pool_max_connections{service}`.
pub const DB_POOL_MAX_CONNECTIONS: &str = "chronicle_db_pool_max_connections";
/// `chronicle_db_pool_acquire_duration_seconds{service}`.
pub const DB_POOL_ACQUIRE_DURATION_SECONDS: &str = "chronicle_db_pool_acquire_duration_seconds";
/// `chronicle_projection_lag_events{projection}`.
pub const PROJECTION_LAG_EVENTS: &str = "chronicle_projection_lag_events";
/// `chronicle_projection_lag_seconds{projection}`.
pub const PROJECTION_LAG_SECONDS: &str = "chronicle_projection_lag_seconds";
/// `chronicle_projection_state{projection, state}`.
pub const PROJECTION_STATE: &str = "chronicle_projection_state";
/// `chronicle_projection_events_applied_total{projection}`.
pub const PROJECTION_EVENTS_APPLIED_TOTAL: &str = "chronicle_projection_events_applied_total";
/// `chronicle_projection_batch_duration_seconds{projection}`.
pub const PROJECTION_BATCH_DURATION_SECONDS: &str = "chronicle_projection_batch_duration_seconds";
/// `chronicle_projection_failures_total{projection}`.
pub const PROJECTION_FAILURES_TOTAL: &str = "chronicle_projection_failures_total";
/// `chronicle_projection_dead_letters_total{projection}`.
pub const PROJECTION_DEAD_LETTERS_TOTAL: &str = "chronicle_projection_dead_letters_total";
/// `chronicle_projection_leader{projection}`.
pub const PROJECTION_LEADER: &str = "chronicle_projection_leader";
/// `chronicle_relay_published_total`.
pub const RELAY_PUBLISHED_TOTAL: &str = "chronicle_relay_published_total";
/// `chronicle_relay_backlog_events`.
pub const RELAY_BACKLOG_EVENTS: &str = "chronicle_relay_backlog_events";
/// `chronicle_relay_connected`.
pub const RELAY_CONNECTED: &str = "chronicle_relay_connected";
/// `chronicle_relay_interruptions_total`.
pub const RELAY_INTERRUPTIONS_TOTAL: &str = "chronicle_relay_interruptions_total";
/// `chronicle_relay_batch_duration_seconds`.
pub const RELAY_BATCH_DURATION_SECONDS: &str = "chronicle_relay_batch_duration_seconds";
/// `chronicle_consistency_wait_seconds{result}`.
pub const CONSISTENCY_WAIT_SECONDS: &str = "chronicle_consistency_wait_seconds";
/// `chronicle_query_item_revalidations_total{answered_by}`.
pub const QUERY_ITEM_REVALIDATIONS_TOTAL: &str = "chronicle_query_item_revalidations_total";
/// `chronicle_auth_logins_total{result}`.
pub const AUTH_LOGINS_TOTAL: &str = "chronicle_auth_logins_total";
/// `chronicle_auth_refresh_total{result}`.
pub const AUTH_REFRESH_TOTAL: &str = "chronicle_auth_refresh_total";
/// `chronicle_password_hashes_total{op}`.
pub const PASSWORD_HASHES_TOTAL: &str = "chronicle_password_hashes_total";
/// `chronicle_rate_limited_total{limit}`.
pub const RATE_LIMITED_TOTAL: &str = "chronicle_rate_limited_total";
/// `chronicle_csp_reports_total{directive, disposition}`.
pub const CSP_REPORTS_TOTAL: &str = "chronicle_csp_reports_total";
/// `chronicle_security_events_total{kind}`.
pub const SECURITY_EVENTS_TOTAL: &str = crate::security::SECURITY_EVENTS_TOTAL;

/// The states `chronicle_projection_state` has a series for, every one present.
pub const PROJECTION_STATES: &[&str] = &[
    "running",
    "failed",
    "rebuilding",
    "waiting_for_broker",
    "database_unavailable",
];

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        labels,
        help,
        buckets: &[],
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        labels,
        help,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    buckets: &'static [f64],
) -> Family {
    Family {
        name,
        kind: Kind::Histogram,
        labels,
        help,
        buckets,
    }
}

const HTTP_LABELS: &[&str] = &["service", "method", "route", "status"];

/// The catalogue: every family any service may expose, as docs/metrics.md lists it.
pub const FAMILIES: &[Family] = &[
    counter(
        HTTP_REQUESTS_TOTAL,
        HTTP_LABELS,
        "HTTP requests answered, by route template and status code.",
    ),
    histogram(
        HTTP_REQUEST_DURATION_SECONDS,
        HTTP_LABELS,
        "Time from receiving a request to sending its answer's head, in seconds.",
        LATENCY_BUCKETS,
    ),
    gauge(
        HTTP_REQUESTS_IN_FLIGHT,
        &["service"],
        "Requests admitted under the bound on requests in flight and not yet answered.",
    ),
    counter(
        HTTP_REQUESTS_SHED_TOTAL,
        &["service", "method", "route"],
        "Requests refused with 503 at once because the bound on requests in flight was reached.",
    ),
    counter(
        HTTP_REQUESTS_TIMED_OUT_TOTAL,
        &["method", "route"],
        "Reads cut off with 503 because they were not answered within REQUEST_TIMEOUT_MS of arriving.",
    ),
    counter(
        COMMANDS_TOTAL,
        &["aggregate_type", "outcome"],
        "Commands handled, by aggregate type and outcome.",
    ),
    counter(
        COMMAND_RETRIES_TOTAL,
        &["aggregate_type"],
        "Commands decided again after losing a concurrency race on append, by aggregate type.",
    ),
    counter(
        EVENTS_APPENDED_TOTAL,
        &["aggregate_type"],
        "Events appended to the event log, by aggregate type.",
    ),
    counter(
        IDEMPOTENCY_REQUESTS_TOTAL,
        &["result"],
        "Requests carrying an Idempotency-Key, by what the key led to.",
    ),
    histogram(
        DB_QUERY_DURATION_SECONDS,
        &["service", "operation"],
        "SQL statement duration, in seconds, by statement kind.",
        LATENCY_BUCKETS,
    ),
    gauge(
        DB_POOL_CONNECTIONS,
        &["service", "state"],
        "Connections open in the database pool, by state.",
    ),
    gauge(
        DB_POOL_MAX_CONNECTIONS,
        &["service"],
        "Largest number of connections the database pool may open.",
    ),
    histogram(
        DB_POOL_ACQUIRE_DURATION_SECONDS,
        &["service"],
        "Time spent waiting for a database connection from the pool, in seconds.",
        LATENCY_BUCKETS,
    ),
    gauge(
        PROJECTION_LAG_EVENTS,
        &["projection"],
        "Events in the log after the projection's checkpoint.",
    ),
    gauge(
        PROJECTION_LAG_SECONDS,
        &["projection"],
        "Age of the oldest event the projection has not applied yet, in seconds (0 when caught up).",
    ),
    gauge(
        PROJECTION_STATE,
        &["projection", "state"],
        "1 for the projection's current state, 0 for the others.",
    ),
    counter(
        PROJECTION_EVENTS_APPLIED_TOTAL,
        &["projection"],
        "Events this process applied to a projection (or published, for the relay).",
    ),
    histogram(
        PROJECTION_BATCH_DURATION_SECONDS,
        &["projection"],
        "Time to apply one batch of events to a projection and move its checkpoint, in seconds.",
        LATENCY_BUCKETS,
    ),
    counter(
        PROJECTION_FAILURES_TOTAL,
        &["projection"],
        "Poison events that stopped a projection in this process.",
    ),
    counter(
        PROJECTION_DEAD_LETTERS_TOTAL,
        &["projection"],
        "Poison events this process parked in projection_dead_letters.",
    ),
    gauge(
        PROJECTION_LEADER,
        &["projection"],
        "1 while this process leads the projection (or the relay), 0 while it stands by.",
    ),
    counter(
        RELAY_PUBLISHED_TOTAL,
        &[],
        "Events the relay published to RabbitMQ and the broker confirmed.",
    ),
    gauge(
        RELAY_BACKLOG_EVENTS,
        &[],
        "Events in the log the relay has not yet published with a confirm.",
    ),
    gauge(
        RELAY_CONNECTED,
        &[],
        "1 while this process's relay holds a channel to RabbitMQ, 0 otherwise.",
    ),
    counter(
        RELAY_INTERRUPTIONS_TOTAL,
        &[],
        "Times this process's relay lost the broker or the database and started over.",
    ),
    histogram(
        RELAY_BATCH_DURATION_SECONDS,
        &[],
        "Time to publish one batch with confirms and move the relay's checkpoint, in seconds.",
        LATENCY_BUCKETS,
    ),
    counter(
        MAIL_PUBLISHED_TOTAL,
        &[],
        "Mails of the accounts' outbox the mail relay published to RabbitMQ with a confirm.",
    ),
    histogram(
        CONSISTENCY_WAIT_SECONDS,
        &["result"],
        "Time reads carrying X-Consistency-Token waited for their projection, in seconds, by result.",
        CONSISTENCY_BUCKETS,
    ),
    counter(
        QUERY_ITEM_REVALIDATIONS_TOTAL,
        &["answered_by"],
        "Conditional item reads (If-None-Match), by what answered them.",
    ),
    counter(AUTH_LOGINS_TOTAL, &["result"], "Login attempts, by result."),
    counter(
        AUTH_REFRESH_TOTAL,
        &["result"],
        "Refresh-token presentations, by result.",
    ),
    counter(
        PASSWORD_HASHES_TOTAL,
        &["op"],
        "Argon2id password hash computations, by operation.",
    ),
    counter(
        RATE_LIMITED_TOTAL,
        &["limit"],
        "Requests refused with 429, by the rate limit that refused them.",
    ),
    counter(
        CSP_REPORTS_TOTAL,
        &["directive", "disposition"],
        "Content Security Policy violation reports received, by directive and disposition.",
    ),
    counter(
        SECURITY_EVENTS_TOTAL,
        &["kind"],
        "Security-relevant events (blocked or failed attempts), by kind.",
    ),
];

/// The catalogue's row for `name`, if it has one.
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|family| family.name == name)
}

/// Registers every family's HELP text with the current recorder.
pub fn describe_all() {
    for family in FAMILIES {
        match family.kind {
            Kind::Counter => metrics::describe_counter!(family.name, family.help),
            Kind::Gauge => metrics::describe_gauge!(family.name, family.help),
            Kind::Histogram => metrics::describe_histogram!(family.name, family.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_prefixed_and_named_once() {
        for (index, family) in FAMILIES.iter().enumerate() {
            assert!(family.name.starts_with(PREFIX), "{}", family.name);
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            assert_eq!(
                family.kind == Kind::Histogram,
                !family.buckets.is_empty(),
                "{}",
                family.name
            );
            assert!(
                FAMILIES[..index]
                    .iter()
                    .all(|other| other.name != family.name),
                "{} twice",
                family.name
            );
        }
    }
}
