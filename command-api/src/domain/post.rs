//! The CommunityPost aggregate: publish, edit, delete. Nothing is accepted after a delete.

use events::post::{AGGREGATE_TYPE, PostEvent};
use serde::{Deserialize, Serialize};

use super::text::{TextError, checked};
use super::{Decide, StreamEnds};

/// A post's title: trimmed, 1 to 200 characters, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    /// Validates a raw title.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 200, false).map(Self)
    }
}

/// A post's content: trimmed, 1 to 20000 characters, may span lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content(String);

impl Content {
    /// Validates raw content.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 20_000, true).map(Self)
    }
}

/// A post's author as displayed: trimmed, 1 to 80 characters, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author(String);

impl Author {
    /// Validates a raw author name.
    pub fn parse(raw: &str) -> Result<Self, TextError> {
        checked(raw, 1, 80, false).map(Self)
    }
}

/// What can be asked of a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostCommand {
    /// Publish the post.
    Publish {
        /// Its title.
        title: Title,
        /// Its content.
        content: Content,
        /// Who wrote it (the display name).
        author: Author,
        /// The publishing account.
        author_id: Option<uuid::Uuid>,
    },
    /// Change its title and/or content.
    Edit {
        /// The new title.
        title: Option<Title>,
        /// The new content.
        content: Option<Content>,
    },
    /// Delete it.
    Delete,
}

/// A post rule a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The post was never published.
    #[error("post not found")]
    NotFound,
    /// A publish named an id that is taken (also by a deleted post).
    #[error("a post with this id already exists")]
    AlreadyExists,
    /// The post was deleted; it takes no further commands.
    #[error("the post was deleted")]
    Deleted,
    /// Only its author (or an admin) may edit or delete a post (403).
    #[error("only the post's author may change it")]
    NotAuthor,
}

/// A post's state, as far as its rules need it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityPost {
    published: bool,
    deleted: bool,
    title: String,
    content: String,
    /// The publishing account, if known.
    #[serde(default)]
    author_id: Option<uuid::Uuid>,
}

impl CommunityPost {
    /// Whether `account` may edit or delete this post: its author or an admin. Posts are
    /// public, so anyone else is refused with 403, not 404.
    ///
    /// # Errors
    ///
    /// [`PostError::NotAuthor`] for anyone else.
    pub fn changeable_by(&self, account: uuid::Uuid, admin: bool) -> Result<(), PostError> {
        if !self.published || admin || self.author_id == Some(account) {
            Ok(())
        } else {
            Err(PostError::NotAuthor)
        }
    }
}

impl Decide for CommunityPost {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = PostCommand;
    type Event = PostEvent;
    type Error = PostError;

    fn decide(&self, command: PostCommand) -> Result<Vec<PostEvent>, PostError> {
        use PostCommand as C;
        match command {
            C::Publish { .. } if self.published => Err(PostError::AlreadyExists),
            C::Publish {
                title,
                content,
                author,
                author_id,
            } => Ok(vec![PostEvent::PostPublished {
                title: title.0,
                content: content.0,
                author: author.0,
                author_id,
            }]),
            _ if !self.published => Err(PostError::NotFound),
            _ if self.deleted => Err(PostError::Deleted),
            C::Edit { title, content } => {
                // Only what really changes is recorded; an edit changing nothing is a no-op.
                let title = title.map(|t| t.0).filter(|t| *t != self.title);
                let content = content.map(|c| c.0).filter(|c| *c != self.content);
                if title.is_none() && content.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![PostEvent::PostEdited { title, content }])
            }
            C::Delete => Ok(vec![PostEvent::PostDeleted {}]),
        }
    }

    fn evolve(&mut self, event: PostEvent) {
        match event {
            PostEvent::PostPublished {
                title,
                content,
                author_id,
                ..
            } => {
                self.published = true;
                self.author_id = author_id;
                self.title = title;
                self.content = content;
            }
            PostEvent::PostEdited { title, content } => {
                if let Some(title) = title {
                    self.title = title;
                }
                if let Some(content) = content {
                    self.content = content;
                }
            }
            PostEvent::PostDeleted {} => self.deleted = true,
        }
    }

    /// The query API's `Post`: the author's name as published (the first event), the times
    /// the log recorded for the first and the last event; none once deleted (reads answer 404).
    fn current(&self, id: &str, ends: &StreamEnds) -> Option<serde_json::Value> {
        if !self.published || self.deleted {
            return None;
        }
        // Stored as cqrs-es writes an event: `{"PostPublished": {...}}`.
        let published = ends.first_payload.get("PostPublished")?;
        Some(serde_json::json!({
            "id": id,
            "title": self.title,
            "content": self.content,
            "author": published.get("author")?,
            "created_at": ends.created_at,
            "updated_at": ends.updated_at,
            "version": ends.version,
            "author_id": self.author_id,
        }))
    }
}

impl_aggregate!(CommunityPost);

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Given = TestFramework<CommunityPost>;

    fn published() -> PostEvent {
        PostEvent::PostPublished {
            title: "Hello".into(),
            content: "First post".into(),
            author: "ada".into(),
            author_id: None,
        }
    }

    fn title(raw: &str) -> Title {
        Title::parse(raw).expect("valid title")
    }

    fn publish() -> PostCommand {
        PostCommand::Publish {
            title: title(" Hello "),
            content: Content::parse("First post\n").expect("valid"),
            author: Author::parse(" ada").expect("valid"),
            author_id: None,
        }
    }

    #[test]
    fn a_new_post_is_published_with_trimmed_values() {
        Given::with(())
            .given_no_previous_events()
            .when(publish())
            .then_expect_events(vec![published()]);
    }

    #[test]
    fn a_post_cannot_be_published_twice() {
        Given::with(())
            .given(vec![published()])
            .when(publish())
            .then_expect_error(PostError::AlreadyExists);
    }

    #[test]
    fn a_deleted_posts_id_cannot_be_published_again() {
        Given::with(())
            .given(vec![published(), PostEvent::PostDeleted {}])
            .when(publish())
            .then_expect_error(PostError::AlreadyExists);
    }

    #[test]
    fn a_missing_post_cannot_be_edited_or_deleted() {
        for command in [
            PostCommand::Edit {
                title: Some(title("x")),
                content: None,
            },
            PostCommand::Delete,
        ] {
            Given::with(())
                .given_no_previous_events()
                .when(command)
                .then_expect_error(PostError::NotFound);
        }
    }

    #[test]
    fn an_edit_records_only_what_changed() {
        Given::with(())
            .given(vec![published()])
            .when(PostCommand::Edit {
                title: Some(title("Hello")),
                content: Some(Content::parse("Edited").expect("valid")),
            })
            .then_expect_events(vec![PostEvent::PostEdited {
                title: None,
                content: Some("Edited".into()),
            }]);
    }

    #[test]
    fn an_edit_that_changes_nothing_records_nothing() {
        Given::with(())
            .given(vec![published()])
            .when(PostCommand::Edit {
                title: Some(title("Hello")),
                content: None,
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_published_post_is_deleted() {
        Given::with(())
            .given(vec![published()])
            .when(PostCommand::Delete)
            .then_expect_events(vec![PostEvent::PostDeleted {}]);
    }

    #[test]
    fn nothing_is_accepted_after_a_delete() {
        for command in [
            PostCommand::Edit {
                title: Some(title("Back")),
                content: None,
            },
            PostCommand::Delete,
        ] {
            Given::with(())
                .given(vec![published(), PostEvent::PostDeleted {}])
                .when(command)
                .then_expect_error(PostError::Deleted);
        }
    }

    #[test]
    fn titles_contents_and_authors_have_their_lengths() {
        assert!(Title::parse(" ").is_err());
        assert!(Title::parse(&"t".repeat(200)).is_ok());
        assert!(Title::parse(&"t".repeat(201)).is_err());
        assert!(Content::parse("").is_err());
        assert!(Content::parse(&"c".repeat(20_000)).is_ok());
        assert!(Content::parse(&"c".repeat(20_001)).is_err());
        assert!(Author::parse(&"a".repeat(80)).is_ok());
        assert!(Author::parse(&"a".repeat(81)).is_err());
        assert!(Author::parse("a\nb").is_err());
    }
}
