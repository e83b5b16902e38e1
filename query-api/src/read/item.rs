//! One read-model row served by id: id check, consistency wait, version-only revalidation,
//! 404, ETag.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::HeaderMap;
use axum::http::header::IF_NONE_MATCH;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::consistency;
use crate::error::ApiError;
use crate::etag::{Audience, ETag};
use crate::read::page::ReadModel;
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
/// `If-None-Match` matches that version.
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
    let invalid_id = || ApiError::InvalidPath {
        field: "id",
        message: "must be a UUID",
    };
    let Path(raw) = id.map_err(|_| invalid_id())?;
    let id = Uuid::try_parse(&raw).map_err(|_| invalid_id())?;
    consistency::honour(state, headers, T::PROJECTION).await?;
    let audience = Audience::of(T::PUBLIC, headers);
    let not_found = || ApiError::NotFound(format!("no {} with id {id}", T::NOUN));

    // A revalidation is answered from the version alone, without reading the whole row.
    if headers.contains_key(IF_NONE_MATCH) {
        let version: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT version FROM {} WHERE id = $1 AND {}",
            T::TABLE,
            T::VISIBLE
        ))
        .bind(id)
        .fetch_optional(state.pool())
        .await?;
        let etag = ETag::strong(version.ok_or_else(not_found)?);
        if etag.matches_if_none_match(headers) {
            return Ok(etag.not_modified(audience));
        }
    }

    let item: T = sqlx::query_as(&format!(
        "SELECT {} FROM {} WHERE id = $1 AND {}",
        T::COLUMNS,
        T::TABLE,
        T::VISIBLE
    ))
    .bind(id)
    .fetch_optional(state.pool())
    .await?
    .ok_or_else(not_found)?;
    Ok(ETag::strong(item.version()).decorate(audience, Json(item).into_response()))
}
