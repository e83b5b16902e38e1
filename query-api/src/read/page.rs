//! One page of a read-model list: the page query (rows and total in one statement) and the
//! list answer (consistency wait, list ETag, 304, page, `Link`).

use std::borrow::Cow;

use axum::Json;
use axum::http::header::LINK;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row as _};
use utoipa::ToSchema;

use crate::checkpoint::Checkpoint;
use crate::consistency;
use crate::error::ApiError;
use crate::etag::{Audience, ETag, list_etag};
use crate::pagination::{self, PageRequest};
use crate::read::totals::Totals;
use crate::state::AppState;

/// A read-model table whose rows are `Self`.
pub trait ReadModel: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin {
    /// The projection (its `projection_checkpoints` row) that fills the table.
    const PROJECTION: &'static str;
    /// The table.
    const TABLE: &'static str;
    /// The columns `Self` is read from, in SQL.
    const COLUMNS: &'static str;
    /// The SQL condition a row must meet to be served at all, listed or by id (posts hide
    /// their deleted rows, which the projector keeps).
    const VISIBLE: &'static str = "TRUE";
    /// Whether the rows are public (the status history, community posts): anonymous answers
    /// may then be stored by shared caches ([`Audience::of`]).
    const PUBLIC: bool = false;
}

/// A validated list request over the table of [`ListRequest::Item`].
pub trait ListRequest: Sync {
    /// The rows listed.
    type Item: ReadModel;

    /// The page asked for.
    fn page(&self) -> PageRequest;

    /// The `ORDER BY` terms: constants, never request text. They must order rows totally, or
    /// pages could repeat or skip rows.
    fn order_by(&self) -> String;

    /// Appends the request's filters to a statement that ends in `WHERE <condition>`, each as
    /// ` AND ...` with its values bound.
    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>);

    /// The collection's path, from which `Link` URLs are built.
    fn path(&self) -> Cow<'_, str>;

    /// The canonical query string of this request at page `page`: equal requests give equal
    /// strings however the client spelled them, so it serves both as the `Link` target and as
    /// the input of the list ETag.
    fn query_string(&self, page: i64) -> String;

    /// What the total of this request depends on, as a key of
    /// [`Totals`]: by default the path and the canonical query
    /// string of page 1, which between them name every filter (a service's history has its
    /// service in the path), and the sort and page size, which do not change the total but
    /// only make a key less shared. A request narrowed to a scope must name it.
    fn totals_key(&self) -> String {
        format!("{}?{}", self.path(), self.query_string(1))
    }

    /// The list ETag at checkpoint `at` (see [`list_etag`] for why it is sound without
    /// reading the rows).
    fn etag(&self, at: Checkpoint) -> ETag {
        list_etag(at, &self.query_string(self.page().page))
    }
}

/// One page of a list, as every list answers it.
// Documented once, generically: `body = Page<Item>` in a path names the schema `Page_<Item>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items on this page (empty past the last page).
    pub items: Vec<T>,
    /// How many items match the filters, over all pages.
    pub total: i64,
    /// This page's number, from 1.
    pub page: i64,
    /// The page size asked for.
    pub page_size: i64,
    /// How many pages the matches fill (0 when none match).
    pub pages: i64,
}

/// A row, the count that came with it (when the page query counted) and the checkpoint its
/// statement saw.
struct Counted<T> {
    item: T,
    total: Option<i64>,
    checkpoint: Option<Vec<i64>>,
}

impl<'r, T: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Counted<T> {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            item: T::from_row(row)?,
            total: row.try_get("total")?,
            checkpoint: row.try_get("read_at")?,
        })
    }
}

/// One page of `request`, with the projection's checkpoint in the same snapshot, and the
/// total when `count` is set.
async fn page_query<R: ListRequest>(
    pool: &PgPool,
    request: &R,
    count: bool,
) -> Result<Vec<Counted<R::Item>>, sqlx::Error> {
    let page = request.page();
    let mut query = QueryBuilder::new(format!("SELECT {}, ", R::Item::COLUMNS));
    event_store::checkpoints::push_in_statement(&mut query, R::Item::PROJECTION, "read_at");
    if count {
        // The total is an uncorrelated subquery, computed once per statement in the page's own
        // snapshot. A `count(*) OVER ()` window instead makes the page query read and sort
        // every matching row before its LIMIT (43 ms against 4 ms at 40k projects,
        // docs/PERFORMANCE.md).
        query.push(format!(
            ", (SELECT count(*) FROM {} WHERE {}",
            R::Item::TABLE,
            R::Item::VISIBLE
        ));
        request.push_filters(&mut query);
        query.push(") AS total");
    } else {
        query.push(", NULL::bigint AS total");
    }
    query.push(format!(
        " FROM {} WHERE {}",
        R::Item::TABLE,
        R::Item::VISIBLE
    ));
    request.push_filters(&mut query);
    query.push(format!(" ORDER BY {} LIMIT ", request.order_by()));
    query
        .push_bind(page.page_size)
        .push(" OFFSET ")
        .push_bind(page.offset());
    query.build_query_as().fetch_all(pool).await
}

/// Reads one page of `request` and the total matching its filters. `tagged` is the
/// checkpoint the answer is tagged with, read before the page: when `totals` holds the total
/// counted at it, and the page's own statement still sees it, the total is not counted again.
/// A total counted with a page is kept for the checkpoint that statement saw.
///
/// # Errors
///
/// The database fails.
pub async fn fetch_page<R: ListRequest>(
    pool: &PgPool,
    totals: &Totals,
    request: &R,
    tagged: Checkpoint,
) -> Result<Page<R::Item>, sqlx::Error> {
    let page = request.page();
    let key = totals.enabled().then(|| request.totals_key());
    let kept = key
        .as_deref()
        .and_then(|key| totals.get(R::Item::TABLE, key, tagged));
    let mut rows = page_query(pool, request, kept.is_none()).await?;
    let read_at = |rows: &[Counted<R::Item>]| {
        rows.first()
            .and_then(|row| event_store::checkpoints::from_array(row.checkpoint.as_deref()))
    };
    let mut counted = rows.first().and_then(|row| row.total);
    if counted.is_none() && !rows.is_empty() && read_at(&rows) != Some(tagged) {
        // The projection moved between the tag and the page: the kept total is not this
        // page's. Rare (a write in that millisecond); read the page again, counted.
        rows = page_query(pool, request, true).await?;
        counted = rows.first().and_then(|row| row.total);
    }
    if let (Some(key), Some(total), Some(at)) = (key, counted, read_at(&rows)) {
        totals.put(R::Item::TABLE, key, at, total);
    }

    // The count comes with the rows, or was kept for their checkpoint; a page past the end
    // has no rows to carry a count, so only then is the total counted on its own.
    let total = match counted.or(kept) {
        Some(total) => total,
        None if page.page > 1 => {
            let mut count = QueryBuilder::new(format!(
                "SELECT count(*) FROM {} WHERE {}",
                R::Item::TABLE,
                R::Item::VISIBLE
            ));
            request.push_filters(&mut count);
            count.build_query_scalar().fetch_one(pool).await?
        }
        None => 0,
    };
    Ok(Page {
        items: rows.into_iter().map(|row| row.item).collect(),
        total,
        page: page.page,
        page_size: page.page_size,
        pages: page.pages(total),
    })
}

/// Answers a list request: waits for the request's consistency token, tags the answer with
/// the list ETag of the projection's checkpoint, answers 304 when `If-None-Match` matches,
/// and otherwise reads the page and answers it with `ETag`, `Cache-Control`, `Vary` and
/// `Link`.
///
/// # Errors
///
/// As [`consistency::tag_checkpoint`] and [`fetch_page`].
pub async fn list_response<R: ListRequest>(
    state: &AppState,
    headers: &HeaderMap,
    request: &R,
) -> Result<Response, ApiError> {
    let checkpoint = consistency::tag_checkpoint(state, headers, R::Item::PROJECTION).await?;
    let etag = request.etag(checkpoint);
    let audience = Audience::of(R::Item::PUBLIC, headers);
    if etag.matches_if_none_match(headers) {
        return Ok(etag.not_modified(audience));
    }

    let page = fetch_page(state.pool(), state.totals(), request, checkpoint).await?;
    let path = request.path();
    let link = pagination::link_header(page.page, page.pages, |n| {
        format!("{path}?{}", request.query_string(n))
    });
    let mut response = etag.decorate(audience, Json(page).into_response());
    // Always valid: every component is percent-encoded to visible ASCII.
    if let Ok(value) = HeaderValue::from_str(&link) {
        response.headers_mut().insert(LINK, value);
    }
    Ok(response)
}
