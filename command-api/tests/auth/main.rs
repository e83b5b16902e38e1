//! Accounts' write side against the real PostgreSQL and RabbitMQ: one database per test, mail
//! read from `chronicle.mail` as an outside mail service would.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod admin;
mod enumeration;
mod helpers;
mod journey;
mod metrics;
mod passkeys;
mod rate_limits;
mod reset;
mod secrets;
mod sessions;
mod tickets;
mod totp;
