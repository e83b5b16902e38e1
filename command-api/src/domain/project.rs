//! The Project aggregate: create, update, archive, restore.

use events::project::{AGGREGATE_TYPE, ProjectEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::text::{TextError, checked};
use super::{Decide, StreamEnds};

/// A project's name: trimmed, 1 to 120 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    /// Validates a raw name.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 120, false).map(Self)
    }
}

/// A project's description: at most 2000 characters, may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    /// Validates a raw description.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 0, 2000, true).map(Self)
    }
}

/// What can be asked of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectCommand {
    /// Create the project.
    Create {
        /// Its name.
        name: ProjectName,
        /// Its description, empty when none.
        description: Option<Description>,
        /// Its owner.
        owner_id: Option<Uuid>,
        /// Who asks: the request's actor.
        created_by: String,
    },
    /// Change its name and/or description.
    Update {
        /// The new name.
        name: Option<ProjectName>,
        /// The new description.
        description: Option<Description>,
    },
    /// Archive it.
    Archive,
    /// Restore it from the archive.
    Restore,
}

/// A project rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectError {
    /// The project does not exist.
    #[error("project not found")]
    NotFound,
    /// A create named an id that is taken.
    #[error("a project with this id already exists")]
    AlreadyExists,
    /// Archived projects take no updates.
    #[error("the project is archived; restore it first")]
    Archived,
    /// Archive of an archived project.
    #[error("the project is already archived")]
    AlreadyArchived,
    /// Restore of a project that is not archived.
    #[error("the project is not archived")]
    NotArchived,
}

/// A project's state, as far as its rules need it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    created: bool,
    name: String,
    description: String,
    archived: bool,
    /// The owning account: `owner_id` of the creation, else its creator when that was an
    /// account. Projects made before accounts have none and only admins see them.
    #[serde(default)]
    owner: Option<Uuid>,
}

impl Project {
    /// Whether `account` may see this project: its owner, or any admin. A project the caller
    /// may not see answers exactly like one that does not exist (404), checked before
    /// `If-Match` so a version never leaks either.
    ///
    /// # Errors
    ///
    /// [`ProjectError::NotFound`] for anyone else.
    pub fn visible_to(&self, account: Uuid, admin: bool) -> Result<(), ProjectError> {
        if !self.created || admin || self.owner == Some(account) {
            Ok(())
        } else {
            Err(ProjectError::NotFound)
        }
    }
}

impl Decide for Project {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = ProjectError;

    fn decide(&self, command: ProjectCommand) -> Result<Vec<ProjectEvent>, ProjectError> {
        use ProjectCommand as C;
        match command {
            C::Create { .. } if self.created => Err(ProjectError::AlreadyExists),
            C::Create {
                name,
                description,
                owner_id,
                created_by,
            } => Ok(vec![ProjectEvent::ProjectCreated {
                name: name.0,
                description: description.map(|d| d.0).unwrap_or_default(),
                owner_id,
                created_by,
            }]),
            _ if !self.created => Err(ProjectError::NotFound),
            C::Update { .. } if self.archived => Err(ProjectError::Archived),
            C::Update { name, description } => {
                // Only what really changes is recorded; an update changing nothing is a no-op.
                let name = name.map(|n| n.0).filter(|n| *n != self.name);
                let description = description.map(|d| d.0).filter(|d| *d != self.description);
                if name.is_none() && description.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![ProjectEvent::ProjectUpdated { name, description }])
            }
            C::Archive if self.archived => Err(ProjectError::AlreadyArchived),
            C::Archive => Ok(vec![ProjectEvent::ProjectArchived {}]),
            C::Restore if !self.archived => Err(ProjectError::NotArchived),
            C::Restore => Ok(vec![ProjectEvent::ProjectRestored {}]),
        }
    }

    fn evolve(&mut self, event: ProjectEvent) {
        match event {
            ProjectEvent::ProjectCreated {
                name,
                description,
                owner_id,
                created_by,
            } => {
                self.created = true;
                self.owner = owner_id.or_else(|| created_by.parse().ok());
                self.name = name;
                self.description = description;
            }
            ProjectEvent::ProjectUpdated { name, description } => {
                if let Some(name) = name {
                    self.name = name;
                }
                if let Some(description) = description {
                    self.description = description;
                }
            }
            ProjectEvent::ProjectArchived {} => self.archived = true,
            ProjectEvent::ProjectRestored {} => self.archived = false,
        }
    }

    /// The query API's `Project`: the owner is the creation's `owner_id` (not its creator),
    /// the times are those the log recorded for the first and the last event.
    fn current(&self, id: &str, ends: &StreamEnds) -> Option<serde_json::Value> {
        if !self.created {
            return None;
        }
        // Stored as cqrs-es writes an event: `{"ProjectCreated": {...}}`.
        let owner_id = ends
            .first_payload
            .get("ProjectCreated")
            .and_then(|created| created.get("owner_id"))
            .and_then(|owner| serde_json::from_value::<Uuid>(owner.clone()).ok());
        Some(serde_json::json!({
            "id": id,
            "name": self.name,
            "description": self.description,
            "owner_id": owner_id,
            "archived": self.archived,
            "created_at": ends.created_at,
            "updated_at": ends.updated_at,
            "version": ends.version,
        }))
    }
}

impl_aggregate!(Project);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Given = TestFramework<Project>;

    fn name(raw: &str) -> ProjectName {
        ProjectName::parse(raw).expect("valid name")
    }

    fn created() -> ProjectEvent {
        ProjectEvent::ProjectCreated {
            name: "Apollo".into(),
            description: String::new(),
            owner_id: None,
            created_by: "ada".into(),
        }
    }

    #[test]
    fn a_new_project_is_created_with_a_trimmed_name() {
        let owner = Uuid::now_v7();
        Given::with(())
            .given_no_previous_events()
            .when(ProjectCommand::Create {
                name: name("  Apollo  "),
                description: Some(Description::parse("to the moon").expect("valid")),
                owner_id: Some(owner),
                created_by: "ada".into(),
            })
            .then_expect_events(vec![ProjectEvent::ProjectCreated {
                name: "Apollo".into(),
                description: "to the moon".into(),
                owner_id: Some(owner),
                created_by: "ada".into(),
            }]);
    }

    #[test]
    fn a_project_cannot_be_created_twice() {
        Given::with(())
            .given(vec![created()])
            .when(ProjectCommand::Create {
                name: name("Again"),
                description: None,
                owner_id: None,
                created_by: "ada".into(),
            })
            .then_expect_error(ProjectError::AlreadyExists);
    }

    #[test]
    fn a_missing_project_cannot_be_updated_archived_or_restored() {
        for command in [
            ProjectCommand::Update {
                name: Some(name("x")),
                description: None,
            },
            ProjectCommand::Archive,
            ProjectCommand::Restore,
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(ProjectError::NotFound);
        }
    }

    #[test]
    fn an_update_records_only_what_changed() {
        Given::with(())
            .given(vec![created()])
            .when(ProjectCommand::Update {
                name: Some(name("Apollo")),
                description: Some(Description::parse("new").expect("valid")),
            })
            .then_expect_events(vec![ProjectEvent::ProjectUpdated {
                name: None,
                description: Some("new".into()),
            }]);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        Given::with(())
            .given(vec![created()])
            .when(ProjectCommand::Update {
                name: Some(name("Apollo")),
                description: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_archived_project_cannot_be_updated() {
        Given::with(())
            .given(vec![created(), ProjectEvent::ProjectArchived {}])
            .when(ProjectCommand::Update {
                name: Some(name("Gemini")),
                description: None,
            })
            .then_expect_error(ProjectError::Archived);
    }

    #[test]
    fn an_archived_project_cannot_be_archived_again() {
        Given::with(())
            .given(vec![created(), ProjectEvent::ProjectArchived {}])
            .when(ProjectCommand::Archive)
            .then_expect_error(ProjectError::AlreadyArchived);
    }

    #[test]
    fn a_live_project_is_archived() {
        Given::with(())
            .given(vec![created()])
            .when(ProjectCommand::Archive)
            .then_expect_events(vec![ProjectEvent::ProjectArchived {}]);
    }

    #[test]
    fn only_an_archived_project_can_be_restored() {
        Given::with(())
            .given(vec![created()])
            .when(ProjectCommand::Restore)
            .then_expect_error(ProjectError::NotArchived);
        Given::with(())
            .given(vec![created(), ProjectEvent::ProjectArchived {}])
            .when(ProjectCommand::Restore)
            .then_expect_events(vec![ProjectEvent::ProjectRestored {}]);
    }

    #[test]
    fn a_restored_project_takes_updates_again() {
        Given::with(())
            .given(vec![
                created(),
                ProjectEvent::ProjectArchived {},
                ProjectEvent::ProjectRestored {},
            ])
            .when(ProjectCommand::Update {
                name: Some(name("Gemini")),
                description: None,
            })
            .then_expect_events(vec![ProjectEvent::ProjectUpdated {
                name: Some("Gemini".into()),
                description: None,
            }]);
    }

    #[test]
    fn names_are_1_to_120_characters_after_trimming() {
        assert!(ProjectName::parse(" ").is_err());
        assert!(ProjectName::parse(&"n".repeat(120)).is_ok());
        assert!(ProjectName::parse(&"n".repeat(121)).is_err());
        assert!(Description::parse(&"d".repeat(2000)).is_ok());
        assert!(Description::parse(&"d".repeat(2001)).is_err());
    }
}
