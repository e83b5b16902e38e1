//! Events of the ServiceStatus aggregate (one stream per service, its id the service's slug),
//! and the service health levels both sides share.

use std::fmt;
use std::str::FromStr;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// The aggregate type under which service status streams are stored.
pub const AGGREGATE_TYPE: &str = "ServiceStatus";

/// The schema version of every service status event type.
pub const EVENT_VERSION: &str = "1";

/// Why a service id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of a-z, 0-9 and -")]
pub struct ServiceIdError;

/// A service's id: a slug of 1 to 64 characters `[a-z0-9-]`, used as the stream's aggregate id
/// and in URLs as it is (so it is never trimmed or case-folded: a different spelling is a
/// different, refused, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceId(String);

impl ServiceId {
    /// Validates a raw service id.
    pub fn parse(raw: &str) -> Result<Self, ServiceIdError> {
        let slug = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if (1..=64).contains(&raw.len()) && raw.chars().all(slug) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ServiceIdError)
        }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a service is doing. Serialized in snake case (`degraded_performance`).
///
/// The declaration order is the severity order, least severe first, so `Ord` ranks them and
/// the worst of several is their `max`:
/// `operational < under_maintenance < degraded_performance < partial_outage < major_outage`.
/// Maintenance ranks just above operational: it is planned and announced, so it should show on
/// the status page, yet it is less alarming than any unplanned degradation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceHealth {
    /// Working normally.
    Operational,
    /// Planned maintenance.
    UnderMaintenance,
    /// Working, but slowly.
    DegradedPerformance,
    /// Some functions are down.
    PartialOutage,
    /// Down.
    MajorOutage,
}

impl ServiceHealth {
    /// Every level, least severe first.
    pub const ALL: [Self; 5] = [
        Self::Operational,
        Self::UnderMaintenance,
        Self::DegradedPerformance,
        Self::PartialOutage,
        Self::MajorOutage,
    ];

    /// The wire and column form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::UnderMaintenance => "under_maintenance",
            Self::DegradedPerformance => "degraded_performance",
            Self::PartialOutage => "partial_outage",
            Self::MajorOutage => "major_outage",
        }
    }
}

impl fmt::Display for ServiceHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that is not a service health level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be one of operational, degraded_performance, partial_outage, major_outage, \
     under_maintenance"
)]
pub struct UnknownServiceHealth;

impl FromStr for ServiceHealth {
    type Err = UnknownServiceHealth;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|health| health.as_str() == raw)
            .ok_or(UnknownServiceHealth)
    }
}

/// Something that happened to a service's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceStatusEvent {
    /// Someone reported the service's current status.
    StatusReported {
        /// The reported level.
        status: ServiceHealth,
        /// What is going on (at most 2000 characters), when the reporter said.
        description: Option<String>,
    },
}

impl DomainEvent for ServiceStatusEvent {
    fn event_type(&self) -> String {
        match self {
            Self::StatusReported { .. } => "StatusReported",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_ranks_maintenance_above_operational_and_below_degradation() {
        use ServiceHealth as H;
        assert!(H::Operational < H::UnderMaintenance);
        assert!(H::UnderMaintenance < H::DegradedPerformance);
        assert!(H::DegradedPerformance < H::PartialOutage);
        assert!(H::PartialOutage < H::MajorOutage);
    }

    #[test]
    fn levels_round_trip_through_their_wire_form() {
        for health in ServiceHealth::ALL {
            assert_eq!(health.as_str().parse(), Ok(health));
            assert_eq!(
                serde_json::to_value(health).ok(),
                Some(serde_json::Value::from(health.as_str()))
            );
        }
        assert_eq!(
            "Operational".parse::<ServiceHealth>(),
            Err(UnknownServiceHealth)
        );
    }
}
