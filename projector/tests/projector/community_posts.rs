//! The `community_posts` projection built from events appended to the real log.

use event_store::append::append;
use events::post::{self, PostEvent};
use projector::projections::CommunityPostsProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{domain_event as event, settle_projection as settle};

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn posts_are_projected_and_a_deleted_post_is_marked_not_removed(pool: PgPool) {
    let kept = Uuid::now_v7().to_string();
    let gone = Uuid::now_v7().to_string();
    let p = post::AGGREGATE_TYPE;
    let author = Uuid::now_v7();
    let published = |title: &str| PostEvent::PostPublished {
        title: title.into(),
        content: "c".into(),
        author: "ada".into(),
        author_id: Some(author),
    };
    append(
        &pool,
        &[
            event(p, &kept, 1, &published("Kept")),
            event(
                p,
                &kept,
                2,
                &PostEvent::PostEdited {
                    title: None,
                    content: Some("new".into()),
                },
            ),
            event(p, &gone, 1, &published("Gone")),
            event(p, &gone, 2, &PostEvent::PostDeleted {}),
        ],
        None,
    )
    .await
    .unwrap();

    assert_eq!(settle(&pool, &CommunityPostsProjection).await, 4);

    let rows: Vec<(String, String, String, i64, bool)> = sqlx::query_as(
        "SELECT id::text, title, content, version, deleted_at IS NOT NULL \
           FROM community_posts ORDER BY title DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (kept.clone(), "Kept".into(), "new".into(), 2, false),
            (gone.clone(), "Gone".into(), "c".into(), 2, true),
        ]
    );
    let authors: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT author_id FROM community_posts ORDER BY title DESC")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(authors, vec![Some(author), Some(author)]);
}
