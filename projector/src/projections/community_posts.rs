//! The `community_posts` read model: one row per post with its title, content, author,
//! timestamps and the stream revision it reflects. A deleted post keeps its row, marked with
//! `deleted_at`, and the query side never serves it.

use async_trait::async_trait;
use events::RecordedEvent;
use events::post::{self, PostEvent};
use sqlx::{Postgres, Transaction};

use super::decode::{RowPerStream, decode, uuid_id};
use crate::subscription::{Projection, ProjectionError};
use event_store::catalogue::{self, ReadModel};

const ROWS: RowPerStream = RowPerStream {
    table: "community_posts",
    noun: "post",
};

/// Projects `CommunityPost` streams into the `community_posts` table.
#[derive(Debug, Clone, Copy, Default)]
pub struct CommunityPostsProjection;

impl CommunityPostsProjection {
    /// The projection's name, the key of its checkpoint.
    pub const NAME: &'static str = catalogue::COMMUNITY_POSTS.name;
}

#[async_trait]
impl Projection for CommunityPostsProjection {
    fn model(&self) -> ReadModel {
        catalogue::COMMUNITY_POSTS
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let decoded: PostEvent = decode(event, Some(post::EVENT_VERSION))?;
        let id = uuid_id(event)?;
        let at = event.recorded_at;
        let version = event.version;
        match decoded {
            PostEvent::PostPublished {
                title,
                content,
                author,
                author_id,
            } => {
                // A publish is revision 1 of its stream; a conflict can only be a replay.
                sqlx::query(
                    "INSERT INTO community_posts \
                         (id, title, content, author, created_at, updated_at, version, \
                          author_id) \
                     VALUES ($1, $2, $3, $4, $5, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(title)
                .bind(content)
                .bind(author)
                .bind(at)
                .bind(version)
                .bind(author_id)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
            PostEvent::PostEdited { title, content } => {
                let updated = sqlx::query(
                    "UPDATE community_posts \
                        SET title = COALESCE($2, title), content = COALESCE($3, content), \
                            updated_at = $4, version = $5 \
                      WHERE id = $1 AND version < $5",
                )
                .bind(id)
                .bind(title)
                .bind(content)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                ROWS.ensure_applied(tx, id, version, updated.rows_affected())
                    .await
            }
            PostEvent::PostDeleted {} => {
                let updated = sqlx::query(
                    "UPDATE community_posts SET deleted_at = $2, updated_at = $2, version = $3 \
                      WHERE id = $1 AND version < $3",
                )
                .bind(id)
                .bind(at)
                .bind(version)
                .execute(&mut **tx)
                .await?;
                ROWS.ensure_applied(tx, id, version, updated.rows_affected())
                    .await
            }
        }
    }
}
