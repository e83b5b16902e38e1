//! `GET /analytics/summary`: the daily analytics summary (count and distinct sessions per
//! event name per UTC day), read from `analytics_daily`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::consistency;
use crate::error::ApiError;
use crate::etag::{Audience, list_etag};
use crate::openapi::ReadHeaders;
use crate::openapi::answers::ListAnswers;
use crate::state::AppState;

/// The name of the projection that fills `analytics_daily`.
pub const PROJECTION: &str = event_store::catalogue::ANALYTICS_DAILY.name;

/// The longest range one request may cover, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// The range when `from` is not given: the 30 days ending with `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// The routes of this resource, documented.
pub fn router() -> OpenApiRouter<AppState> {
    // The summary is an admin's (ACCOUNTS.md, "Who may call what").
    OpenApiRouter::new()
        .routes(routes!(analytics_summary))
        .route_layer(axum::middleware::from_fn(service_kit::caller::needs_admin))
}

/// The query parameters of `GET /analytics/summary`, as sent (checked in [`SummaryQuery::parse`]).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// First day, `YYYY-MM-DD`, years 0001 to 9999 (default: 29 days before `to`).
    #[param(value_type = Option<String>, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub from: Option<String>,
    /// Last day, included, `YYYY-MM-DD`, years 0001 to 9999 (default: today, UTC). At most
    /// 366 days after `from`.
    #[param(value_type = Option<String>, format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub to: Option<String>,
    /// Only this event name (`[a-z0-9_.:-]{1,100}`).
    #[param(pattern = "^[a-z0-9_.:-]{1,100}$")]
    pub name: Option<String>,
}

/// A checked summary request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryQuery {
    /// First day.
    pub from: NaiveDate,
    /// Last day, included.
    pub to: NaiveDate,
    /// Only this name.
    pub name: Option<String>,
}

/// Parses a day as exactly `YYYY-MM-DD` with a year from 0001 to 9999. chrono's `%Y` alone
/// also takes signed and longer years (`-5000-01-1` is ten characters too), which PostgreSQL's
/// `date` cannot hold: the shape is checked byte by byte first.
fn parse_day(name: &'static str, raw: &str) -> Result<NaiveDate, ApiError> {
    let bytes = raw.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit())
        && &bytes[..4] != b"0000";
    shaped
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::bad_parameter(
                name,
                "must be a date, YYYY-MM-DD, with a year from 0001 to 9999",
            )
        })
}

impl SummaryQuery {
    /// Checks the parameters against `today` (UTC).
    ///
    /// # Errors
    ///
    /// [`ApiError::BadParameter`] for a bad date, `from` after `to`, a range over
    /// [`MAX_RANGE_DAYS`], or a name that cannot be an event name.
    pub fn parse(params: &SummaryParams, today: NaiveDate) -> Result<Self, ApiError> {
        // In parameter order, so that the 400 names `from` when both are bad.
        let from = params
            .from
            .as_deref()
            .map(|raw| parse_day("from", raw))
            .transpose()?;
        let to = match params.to.as_deref() {
            Some(raw) => parse_day("to", raw)?,
            None => today,
        };
        let from = from.unwrap_or_else(|| to - chrono::Days::new((DEFAULT_RANGE_DAYS - 1) as u64));
        if from > to {
            return Err(ApiError::bad_parameter("from", "must not be after `to`"));
        }
        if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(ApiError::bad_parameter(
                "to",
                format!("must be at most {MAX_RANGE_DAYS} days from `from` (both included)"),
            ));
        }
        let name = match params.name.as_deref() {
            None => None,
            Some(raw)
                if (1..=100).contains(&raw.len())
                    && raw.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b)
                    }) =>
            {
                Some(raw.to_owned())
            }
            Some(_) => {
                return Err(ApiError::bad_parameter(
                    "name",
                    "must be 1 to 100 characters of a-z, 0-9, '_', '.', ':' and '-'",
                ));
            }
        };
        Ok(Self { from, to, name })
    }
}

/// One day's figures for one event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct DailySummary {
    /// The UTC day of `occurred_at`.
    pub day: NaiveDate,
    /// The event name.
    pub name: String,
    /// How many events.
    pub count: i64,
    /// From how many distinct sessions (events without a session are not counted here).
    pub unique_sessions: i64,
}

/// The summary: days in order, names in order within a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// Days with at least one event; days without any are left out.
    pub items: Vec<DailySummary>,
}

/// Reads the summary for `query`.
///
/// # Errors
///
/// The database fails.
pub async fn fetch_summary(pool: &PgPool, query: &SummaryQuery) -> Result<Summary, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT day, name, count, unique_sessions FROM analytics_daily WHERE day BETWEEN ",
    );
    sql.push_bind(query.from).push(" AND ").push_bind(query.to);
    if let Some(name) = &query.name {
        sql.push(" AND name = ").push_bind(name.clone());
    }
    sql.push(" ORDER BY day, name");
    let items = sql.build_query_as().fetch_all(pool).await?;
    Ok(Summary { items })
}

/// Reads the daily analytics summary.
#[utoipa::path(
    get,
    path = "/api/v1/analytics/summary",
    tag = "analytics",
    operation_id = "analytics_summary",
    params(
        SummaryParams,
        ReadHeaders,
    ),
    responses(
        (status = 200, description = "Counts per day and name", body = Summary, headers(
            ("ETag" = String, description = "Weak tag of the summary at the projection's checkpoint"),
            ("Cache-Control" = String, description = "private, no-cache"),
            ("Vary" = String, description = "Authorization, X-Consistency-Token"),
        )),
        ListAnswers,
    )
)]
pub async fn analytics_summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query?;
    let query = SummaryQuery::parse(&params, Utc::now().date_naive())?;
    let checkpoint = consistency::tag_checkpoint(&state, &headers, PROJECTION).await?;
    // The summary changes only when the projection moves, so the checkpoint and the resolved
    // request name its state.
    let etag = list_etag(
        checkpoint,
        &format!(
            "from={}&to={}&name={}",
            query.from,
            query.to,
            query.name.as_deref().unwrap_or_default()
        ),
    );
    if etag.matches_if_none_match(&headers) {
        return Ok(etag.not_modified(Audience::Private));
    }
    let summary = fetch_summary(state.pool(), &query).await?;
    Ok(etag.decorate(Audience::Private, Json(summary).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>) -> SummaryParams {
        SummaryParams {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            name: None,
        }
    }

    fn day(raw: &str) -> NaiveDate {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d").expect("valid day")
    }

    #[test]
    fn the_default_range_is_the_30_days_ending_today() {
        let query = SummaryQuery::parse(&params(None, None), day("2026-03-31"));
        assert_eq!(
            query.ok().map(|q| (q.from, q.to)),
            Some((day("2026-03-02"), day("2026-03-31")))
        );
    }

    #[test]
    fn a_range_of_366_days_is_the_longest_accepted() {
        let today = day("2026-03-31");
        assert!(
            SummaryQuery::parse(&params(Some("2025-01-01"), Some("2026-01-01")), today).is_ok()
        );
        assert!(
            SummaryQuery::parse(&params(Some("2025-01-01"), Some("2026-01-02")), today).is_err()
        );
    }

    #[test]
    fn bad_dates_and_reversed_ranges_are_refused() {
        let today = day("2026-03-31");
        for (from, to) in [
            ("2026-02-30", "2026-03-01"),
            ("2026-1-01", "2026-03-01"),
            ("yesterday", "2026-03-01"),
            ("2026-03-02", "2026-03-01"),
            ("-5000-01-1", "2026-03-01"),
            ("+2026-01-1", "2026-03-01"),
            ("0000-01-01", "2026-03-01"),
        ] {
            assert!(
                SummaryQuery::parse(&params(Some(from), Some(to)), today).is_err(),
                "{from}..{to}"
            );
        }
    }
}
