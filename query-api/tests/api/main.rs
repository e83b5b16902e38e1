//! HTTP tests of the query API: the router is called in-process against a fresh, migrated
//! PostgreSQL database per test (`#[sqlx::test]`).

mod accounts;
mod analytics;
mod announced_versions;
mod audit;
mod authz;
mod caching;
mod community;
mod consistency;
mod generation;
mod helpers;
mod learned_versions;
mod metrics;
mod openapi;
mod plumbing;
mod projections;
mod projects;
mod status;
mod support;
