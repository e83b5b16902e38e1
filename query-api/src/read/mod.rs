//! What the paginated, ETagged read-model resources share, below the routes (which depend on
//! it, never the reverse): the `sort` parameter and text filters ([`sort`]), the page query and
//! list answer ([`page`]) with its totals kept per checkpoint ([`totals`]), the item answer
//! ([`item`]) and what an account may see of the models accounts own ([`scope`]).
//!
//! A resource describes its table once ([`page::ReadModel`], plus [`item::Item`] when it is
//! served by id) and its list request once ([`page::ListRequest`]); its handlers stay thin.

pub mod item;
pub mod page;
pub mod scope;
pub mod sort;
pub mod totals;
