//! The read-model catalogue: each read model declared once — the name of its checkpoint row,
//! the aggregate types it reads, the tables it writes — for the projector that fills it and
//! the query API that serves it and reports its lag.
//!
//! The relay is a subscription too, but to the whole log: it has a checkpoint and no tables.

use events::{account, analytics, post, project, session, status, ticket};

/// A read model: what the projector builds and the query API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadModel {
    /// The stable name: the key of its `projection_checkpoints` row.
    pub name: &'static str,
    /// The aggregate types whose events it reads; a subscription to every event has none here
    /// (see [`Subscription::reads_everything`]).
    pub sources: &'static [&'static str],
    /// The tables it writes, by unqualified name (rebuilds shadow exactly these).
    pub tables: &'static [&'static str],
}

/// `projects`.
pub const PROJECTS: ReadModel = ReadModel {
    name: "projects",
    sources: &[project::AGGREGATE_TYPE],
    tables: &["projects"],
};

/// `support_tickets`.
pub const SUPPORT_TICKETS: ReadModel = ReadModel {
    name: "support_tickets",
    sources: &[ticket::AGGREGATE_TYPE],
    tables: &["support_tickets"],
};

/// `community_posts`.
pub const COMMUNITY_POSTS: ReadModel = ReadModel {
    name: "community_posts",
    sources: &[post::AGGREGATE_TYPE],
    tables: &["community_posts"],
};

/// The status page: the latest report per service and every report.
pub const SERVICE_STATUS: ReadModel = ReadModel {
    name: "service_status",
    sources: &[status::AGGREGATE_TYPE],
    tables: &["service_status_latest", "service_status_history"],
};

/// The daily analytics summary and the session sets behind its distinct counts.
pub const ANALYTICS_DAILY: ReadModel = ReadModel {
    name: "analytics_daily",
    sources: &[analytics::AGGREGATE_TYPE],
    tables: &["analytics_daily", "analytics_daily_sessions"],
};

/// Accounts as `GET /auth/me` and the admin list serve them.
pub const AUTH_ACCOUNTS: ReadModel = ReadModel {
    name: "auth_accounts",
    sources: &[account::AGGREGATE_TYPE],
    tables: &["auth_accounts", "auth_account_passkeys"],
};

/// Sessions as `GET /auth/sessions` serves them.
pub const AUTH_SESSIONS: ReadModel = ReadModel {
    name: "auth_sessions",
    sources: &[session::AGGREGATE_TYPE],
    tables: &["auth_sessions"],
};

/// Every read model, in the order the projector starts them.
pub const READ_MODELS: &[ReadModel] = &[
    PROJECTS,
    SUPPORT_TICKETS,
    COMMUNITY_POSTS,
    SERVICE_STATUS,
    ANALYTICS_DAILY,
    AUTH_ACCOUNTS,
    AUTH_SESSIONS,
];

/// The RabbitMQ relay's checkpoint row: a subscription to every event.
pub const RELAY: &str = "rabbitmq-relay";

/// What a checkpoint row belongs to, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// A read model of the catalogue.
    ReadModel(ReadModel),
    /// Anything else (the relay, a shadow being rebuilt under another name): taken to read
    /// every event, which over- rather than under-states its lag.
    Other,
}

impl Subscription {
    /// The subscription behind checkpoint row `name`.
    pub fn named(name: &str) -> Self {
        READ_MODELS
            .iter()
            .find(|model| model.name == name)
            .map_or(Self::Other, |model| Self::ReadModel(*model))
    }

    /// The aggregate types it reads; empty when it reads everything.
    pub fn sources(self) -> &'static [&'static str] {
        match self {
            Self::ReadModel(model) => model.sources,
            Self::Other => &[],
        }
    }

    /// Whether it reads every event of the log.
    pub fn reads_everything(self) -> bool {
        self.sources().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tables_are_unique_and_every_model_reads_something() {
        let mut names: Vec<_> = READ_MODELS.iter().map(|model| model.name).collect();
        names.push(RELAY);
        let mut tables: Vec<_> = READ_MODELS.iter().flat_map(|model| model.tables).collect();
        let (name_count, table_count) = (names.len(), tables.len());
        names.sort_unstable();
        names.dedup();
        tables.sort_unstable();
        tables.dedup();
        assert_eq!((names.len(), tables.len()), (name_count, table_count));
        assert!(READ_MODELS.iter().all(|model| !model.sources.is_empty()));
    }

    #[test]
    fn an_unknown_checkpoint_reads_everything() {
        assert!(Subscription::named(RELAY).reads_everything());
        assert!(Subscription::named("projects@shadow").reads_everything());
        assert_eq!(Subscription::named("projects").sources(), PROJECTS.sources);
    }
}
