//! The `analytics_daily` read model: per UTC day of `occurred_at` and event name, how many
//! events were tracked and from how many distinct sessions.
//!
//! Each log event is a whole batch (up to 1000 tracked events), so one `apply` aggregates the
//! batch in memory and writes it with one statement: a multi-row insert into the session set
//! `analytics_daily_sessions` whose `RETURNING` names the sessions not seen before, feeding a
//! multi-row upsert of the day's counters. Counters are additive, so exactly-once rests on the
//! engine's checkpoint, written in the same transaction.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::NaiveDate;
use events::RecordedEvent;
use events::analytics::{self, AnalyticsEvent};
use sqlx::{Postgres, Transaction};

use super::decode::decode_payload;
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

/// Projects `AnalyticsBatch` streams into `analytics_daily`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnalyticsDailyProjection;

impl AnalyticsDailyProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::ANALYTICS_DAILY.name;
}

/// A batch reduced to what the tables need: counts per (day, name) and the distinct sessions
/// per (day, name).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DailyDelta {
    /// Events per (day, name).
    pub counts: BTreeMap<(NaiveDate, String), i64>,
    /// Distinct (day, name, session) of the batch.
    pub sessions: BTreeSet<(NaiveDate, String, String)>,
}

impl DailyDelta {
    /// Reduces a batch's events.
    pub fn of(events: &[analytics::TrackedEvent]) -> Self {
        let mut delta = Self::default();
        for event in events {
            let day = event.occurred_at.date_naive();
            *delta.counts.entry((day, event.name.clone())).or_default() += 1;
            if let Some(session) = &event.session_id {
                delta
                    .sessions
                    .insert((day, event.name.clone(), session.clone()));
            }
        }
        delta
    }
}

#[async_trait]
impl Projection for AnalyticsDailyProjection {
    fn model(&self) -> ReadModel {
        catalogue::ANALYTICS_DAILY
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        // Unlike the other projections this one has never refused a recorded type that
        // contradicts the payload; adding that refusal would be a behaviour change of its own.
        let AnalyticsEvent::AnalyticsBatchIngested { events } =
            decode_payload(event, Some(analytics::EVENT_VERSION))?;
        let delta = DailyDelta::of(&events);
        if delta.counts.is_empty() {
            return Ok(());
        }

        let (count_days, (count_names, counts)): (Vec<NaiveDate>, (Vec<String>, Vec<i64>)) = delta
            .counts
            .into_iter()
            .map(|((day, name), count)| (day, (name, count)))
            .unzip();
        let mut session_days = Vec::with_capacity(delta.sessions.len());
        let mut session_names = Vec::with_capacity(delta.sessions.len());
        let mut session_ids = Vec::with_capacity(delta.sessions.len());
        for (day, name, session) in delta.sessions {
            session_days.push(day);
            session_names.push(name);
            session_ids.push(session);
        }

        // One round trip per batch: the CTE inserts the batch's sessions, and only those that
        // were new (RETURNING skips conflicts) raise `unique_sessions`.
        sqlx::query(
            "WITH new_sessions AS ( \
                 INSERT INTO analytics_daily_sessions (day, name, session_id) \
                 SELECT * FROM UNNEST($4::date[], $5::text[], $6::text[]) \
                 ON CONFLICT DO NOTHING \
                 RETURNING day, name), \
             new_counts AS ( \
                 SELECT day, name, count(*) AS n FROM new_sessions GROUP BY day, name) \
             INSERT INTO analytics_daily AS d (day, name, count, unique_sessions, updated_at) \
             SELECT c.day, c.name, c.count, COALESCE(s.n, 0), $7 \
               FROM UNNEST($1::date[], $2::text[], $3::bigint[]) AS c(day, name, count) \
               LEFT JOIN new_counts s ON s.day = c.day AND s.name = c.name \
             ON CONFLICT (day, name) DO UPDATE \
                SET count = d.count + EXCLUDED.count, \
                    unique_sessions = d.unique_sessions + EXCLUDED.unique_sessions, \
                    updated_at = $7",
        )
        .bind(count_days)
        .bind(count_names)
        .bind(counts)
        .bind(session_days)
        .bind(session_names)
        .bind(session_ids)
        // The log's time, not the clock's: a rebuild must produce the same rows.
        .bind(event.recorded_at)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use events::analytics::TrackedEvent;

    use super::*;

    fn tracked(name: &str, session: Option<&str>, at: &str) -> TrackedEvent {
        TrackedEvent {
            name: name.into(),
            properties: serde_json::Map::new(),
            session_id: session.map(str::to_owned),
            user_id: None,
            occurred_at: DateTime::parse_from_rfc3339(at)
                .expect("valid time")
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_batch_is_reduced_per_utc_day_and_name_with_distinct_sessions() {
        let day = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d").expect("valid day");
        let delta = DailyDelta::of(&[
            tracked("view", Some("s1"), "2026-01-31T23:30:00Z"),
            tracked("view", Some("s1"), "2026-01-31T10:00:00Z"),
            // 00:30 at +02:00 is still the 31st in UTC.
            tracked("view", Some("s2"), "2026-02-01T00:30:00+02:00"),
            tracked("view", None, "2026-02-01T00:30:00Z"),
        ]);
        assert_eq!(
            delta.counts,
            BTreeMap::from([
                ((day("2026-01-31"), "view".to_owned()), 3),
                ((day("2026-02-01"), "view".to_owned()), 1),
            ])
        );
        assert_eq!(delta.sessions.len(), 2);
    }
}
