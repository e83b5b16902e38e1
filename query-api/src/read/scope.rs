//! What an account may read of the models accounts own (ACCOUNTS.md, "Who may call what"):
//! its own rows, or every row for an admin. Another account's row answers exactly like a
//! missing one (404), and a list is narrowed to the caller's rows in SQL, through the owner
//! column's index.

use std::borrow::Cow;

use service_kit::Caller;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::checkpoint::Checkpoint;
use crate::error::ApiError;
use crate::etag::{ETag, list_etag};
use crate::pagination::PageRequest;
use crate::read::page::ListRequest;

/// The rows of an owned model a caller may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// The column naming a row's owner.
    pub column: &'static str,
    /// Only rows this account owns; `None` for every row (an admin).
    pub owner: Option<Uuid>,
}

impl Scope {
    /// The scope of `caller` over a model whose owner is in `column`.
    ///
    /// # Errors
    ///
    /// The caller is anonymous (the route layer answers first; this keeps it so).
    pub fn of(caller: &Caller, column: &'static str) -> Result<Self, ApiError> {
        let account = caller.account().ok_or(ApiError::Unauthenticated)?;
        Ok(Self {
            column,
            owner: (!account.is_admin()).then_some(account.account_id),
        })
    }

    /// Adds the owner condition to a `WHERE` clause.
    pub fn push(&self, query: &mut QueryBuilder<'_, Postgres>) {
        if let Some(owner) = self.owner {
            query
                .push(format!(" AND {} = ", self.column))
                .push_bind(owner);
        }
    }
}

/// A list request narrowed to a scope. Its links stay the client's own query; its `ETag`
/// names the scope, so one account's tag never revalidates another's page.
#[derive(Debug)]
pub struct Scoped<'a, R> {
    /// The request as the client sent it.
    pub request: &'a R,
    /// Whose rows it may see.
    pub scope: Scope,
}

impl<R: ListRequest> ListRequest for Scoped<'_, R> {
    type Item = R::Item;

    fn page(&self) -> PageRequest {
        self.request.page()
    }

    fn order_by(&self) -> String {
        self.request.order_by()
    }

    fn push_filters(&self, query: &mut QueryBuilder<'_, Postgres>) {
        self.scope.push(query);
        self.request.push_filters(query);
    }

    fn path(&self) -> Cow<'_, str> {
        self.request.path()
    }

    fn query_string(&self, page: i64) -> String {
        self.request.query_string(page)
    }

    fn totals_key(&self) -> String {
        match self.scope.owner {
            Some(owner) => format!("{}&scope={owner}", self.request.totals_key()),
            None => self.request.totals_key(),
        }
    }

    fn etag(&self, at: Checkpoint) -> ETag {
        let canonical = self.query_string(self.page().page);
        match self.scope.owner {
            Some(owner) => list_etag(at, &format!("{canonical}&scope={owner}")),
            None => list_etag(at, &canonical),
        }
    }
}
