//! One read-model row served by id: id check, consistency wait, version-only revalidation,
//! 404, ETag.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::HeaderMap;
use axum::http::header::IF_NONE_MATCH;
use axum::response::{IntoResponse, Response};
use events::LogPosition;
use uuid::Uuid;

use crate::announced::Mark;
use crate::checkpoint::Checkpoint;
use crate::consistency;
use crate::error::ApiError;
use crate::etag::{Audience, ETag};
use crate::read::page::ReadModel;
use crate::read::scope::Scope;
use crate::state::AppState;

/// A read model of an aggregate, served by id and tagged with the aggregate version.
pub trait Item: ReadModel {
    /// What a 404 calls it: `no {NOUN} with id ...`.
    const NOUN: &'static str;

    /// The aggregate version the row reflects: its strong ETag.
    fn version(&self) -> i64;
}

/// Answers `GET <collection>/{id}` for `T`: checks the id is a UUID, waits for the request's
/// consistency token, and answers the row with its version as strong ETag, or 304 when
/// `If-None-Match` matches that version: the version announced by the projector when it can
/// vouch for it, else the one read from the database.
///
/// # Errors
///
/// [`ApiError::InvalidPath`] for an id that is not a UUID; [`ApiError::NotFound`] when no
/// visible row has it; as [`consistency::honour`]; the database fails.
pub async fn item_response<T: Item>(
    state: &AppState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    item_response_scoped::<T>(state, headers, id, None).await
}

/// [`item_response`] for a model accounts own: a row outside `scope` answers 404, exactly
/// like a missing one, and is never revalidated from the announcements (which say nothing
/// about owners).
///
/// # Errors
///
/// As [`item_response`].
pub async fn item_response_scoped<T: Item>(
    state: &AppState,
    headers: &HeaderMap,
    id: Result<Path<String>, PathRejection>,
    scope: Option<Scope>,
) -> Result<Response, ApiError> {
    let restricted = scope.and_then(|scope| scope.owner.map(|owner| (scope.column, owner)));
    let owner_clause = restricted
        .map(|(column, _)| format!(" AND {column} = $2"))
        .unwrap_or_default();
    let invalid_id = || ApiError::InvalidPath {
        field: "id",
        message: "must be a UUID",
    };
    let Path(raw) = id.map_err(|_| invalid_id())?;
    let id = Uuid::try_parse(&raw).map_err(|_| invalid_id())?;
    let token = consistency::requested_token(headers)?;
    let waited = match &token {
        Some(token) => Some(
            consistency::wait_for(
                state,
                T::PROJECTION,
                token,
                state.settings().consistency_wait,
            )
            .await?,
        ),
        None => None,
    };
    let audience = Audience::of(T::PUBLIC, headers);
    let not_found = || ApiError::NotFound(format!("no {} with id {id}", T::NOUN));

    if headers.contains_key(IF_NONE_MATCH) {
        // First from what the projector announced, without a query (see `crate::announced`
        // for why an announced version is current). Only an exact tag: `*` claims the row is
        // visible, which a version does not say (a deleted post has one too).
        if restricted.is_none()
            && let Some(version) =
                announced_version::<T>(state, id, token.as_ref().map(|t| t.position), waited)
        {
            let etag = ETag::strong(version);
            if etag.listed_in_if_none_match(headers) {
                metrics::counter!(service_kit::metric_names::QUERY_ITEM_REVALIDATIONS_TOTAL, "answered_by" => "announcements")
                    .increment(1);
                return Ok(etag.not_modified(audience));
            }
        }
        // Else from the version alone, without reading the whole row.
        let mark = state.announced().mark(T::PROJECTION);
        let sql = format!(
            "SELECT version FROM {} WHERE id = $1 AND {}{owner_clause}",
            T::TABLE,
            T::VISIBLE
        );
        let mut query = sqlx::query_scalar(&sql).bind(id);
        if let Some((_, owner)) = restricted {
            query = query.bind(owner);
        }
        let mut connection = state.lane().acquire().await?;
        let read = query.fetch_optional(&mut *connection).await;
        let version: Option<i64> = connection.settle(read)?;
        let version = version.ok_or_else(not_found)?;
        learn::<T>(state, mark, id, version);
        let etag = ETag::strong(version);
        if etag.matches_if_none_match(headers) {
            metrics::counter!(service_kit::metric_names::QUERY_ITEM_REVALIDATIONS_TOTAL, "answered_by" => "database")
                .increment(1);
            return Ok(etag.not_modified(audience));
        }
    }

    let sql = format!(
        "SELECT {} FROM {} WHERE id = $1 AND {}{owner_clause}",
        T::COLUMNS,
        T::TABLE,
        T::VISIBLE
    );
    let mut query = sqlx::query_as(&sql).bind(id);
    if let Some((_, owner)) = restricted {
        query = query.bind(owner);
    }
    let mut connection = state.lane().acquire().await?;
    let mark = state.announced().mark(T::PROJECTION);
    let read = query.fetch_optional(&mut *connection).await;
    let item: T = connection.settle(read)?.ok_or_else(not_found)?;
    learn::<T>(state, mark, id, item.version());
    Ok(ETag::strong(item.version()).decorate(audience, Json(item).into_response()))
}

/// Feeds the version map with row `id` of `T` read at `version` by a read sent after `mark`
/// (see [`crate::announced`] for when that is sound), when the state reads from the primary.
fn learn<T: Item>(state: &AppState, mark: Mark, id: Uuid, version: i64) {
    if state.learns_from_reads() {
        let mut text = Uuid::encode_buffer();
        let id = id.hyphenated().encode_lower(&mut text);
        state.announced().learn(T::PROJECTION, mark, id, version);
    }
}

/// The version of row `id` the announcements vouch for, if the request may rely on them: a
/// request with a consistency token only when the announcements have reached the token, and
/// in the generation the wait saw (an unannounced rebuild swap makes them stale).
fn announced_version<T: Item>(
    state: &AppState,
    id: Uuid,
    token: Option<LogPosition>,
    waited: Option<Checkpoint>,
) -> Option<i64> {
    let announced = state.announced();
    if let Some(token) = token {
        let seen = announced.seen(T::PROJECTION)?;
        let current_generation = waited.is_none_or(|waited| waited.generation == seen.generation);
        if seen.position < token || !current_generation {
            return None;
        }
    }
    let mut text = Uuid::encode_buffer();
    announced.version(T::PROJECTION, id.hyphenated().encode_lower(&mut text))
}
