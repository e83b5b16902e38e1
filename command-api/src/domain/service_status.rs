//! The ServiceStatus aggregate: one stream per service, its id the service's slug; every report
//! of the service's status is accepted and recorded.

use events::status::{AGGREGATE_TYPE, ServiceHealth, ServiceStatusEvent};
pub use events::status::{ServiceId, ServiceIdError};
use serde::{Deserialize, Serialize};

use super::Decide;
use super::text::{TextError, checked};

/// What a reporter says is going on: at most 2000 characters, may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusDescription(String);

impl StatusDescription {
    /// Validates a raw description.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 0, 2000, true).map(Self)
    }
}

/// What can be asked of a service's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatusCommand {
    /// Report the service's current status.
    Report {
        /// The level.
        status: ServiceHealth,
        /// What is going on, if the reporter says.
        description: Option<StatusDescription>,
    },
}

/// A service status rule a command broke. Reports are always accepted, so there is none yet;
/// the type exists for the `Aggregate` contract and cannot be constructed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceStatusError {}

/// A service's status stream, as far as its rules need it: its last reported level.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    current: Option<ServiceHealth>,
}

impl Decide for ServiceStatus {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = ServiceStatusCommand;
    type Event = ServiceStatusEvent;
    type Error = ServiceStatusError;

    fn decide(
        &self,
        command: ServiceStatusCommand,
    ) -> Result<Vec<ServiceStatusEvent>, ServiceStatusError> {
        match command {
            // Every report is recorded, even one repeating the current level: the history is
            // a record of what was said and when, and a repeat with a new description is news.
            ServiceStatusCommand::Report {
                status,
                description,
            } => Ok(vec![ServiceStatusEvent::StatusReported {
                status,
                // An empty description is no description.
                description: description.map(|d| d.0).filter(|d| !d.is_empty()),
            }]),
        }
    }

    fn evolve(&mut self, event: ServiceStatusEvent) {
        match event {
            ServiceStatusEvent::StatusReported { status, .. } => self.current = Some(status),
        }
    }
}

impl_aggregate!(ServiceStatus);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Given = TestFramework<ServiceStatus>;

    fn report(status: ServiceHealth, description: Option<&str>) -> ServiceStatusCommand {
        ServiceStatusCommand::Report {
            status,
            description: description.map(|d| StatusDescription::parse(d).expect("valid")),
        }
    }

    #[test]
    fn a_first_report_starts_the_services_stream() {
        Given::with(())
            .given_no_previous_events()
            .when(report(ServiceHealth::Operational, None))
            .then_expect_events(vec![ServiceStatusEvent::StatusReported {
                status: ServiceHealth::Operational,
                description: None,
            }]);
    }

    #[test]
    fn a_later_report_is_recorded_with_its_trimmed_description() {
        Given::with(())
            .given(vec![ServiceStatusEvent::StatusReported {
                status: ServiceHealth::Operational,
                description: None,
            }])
            .when(report(
                ServiceHealth::MajorOutage,
                Some("  database down \n"),
            ))
            .then_expect_events(vec![ServiceStatusEvent::StatusReported {
                status: ServiceHealth::MajorOutage,
                description: Some("database down".into()),
            }]);
    }

    #[test]
    fn a_report_repeating_the_current_level_is_still_recorded() {
        let degraded = ServiceStatusEvent::StatusReported {
            status: ServiceHealth::DegradedPerformance,
            description: None,
        };
        Given::with(())
            .given(vec![degraded.clone()])
            .when(report(ServiceHealth::DegradedPerformance, None))
            .then_expect_events(vec![degraded]);
    }

    #[test]
    fn an_empty_description_is_no_description() {
        Given::with(())
            .given_no_previous_events()
            .when(report(ServiceHealth::UnderMaintenance, Some("   ")))
            .then_expect_events(vec![ServiceStatusEvent::StatusReported {
                status: ServiceHealth::UnderMaintenance,
                description: None,
            }]);
    }

    #[test]
    fn service_ids_are_lowercase_slugs_of_1_to_64_characters() {
        for ok in ["api", "eu-west-1", "0", &"a".repeat(64)] {
            assert!(ServiceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "API",
            "eu_west",
            "a b",
            " api",
            "api\0",
            "é",
            &"a".repeat(65),
        ] {
            assert_eq!(ServiceId::parse(bad), Err(ServiceIdError), "{bad:?}");
        }
    }

    #[test]
    fn descriptions_are_at_most_2000_characters() {
        assert!(StatusDescription::parse(&"d".repeat(2000)).is_ok());
        assert!(StatusDescription::parse(&"d".repeat(2001)).is_err());
        assert!(StatusDescription::parse("a\0b").is_err());
    }
}
