//! Helpers shared by Chronicle's test binaries, written once instead of copied into each:
//!
//! - [`exposition`]: a `/metrics` answer checked against docs/metrics.md and promtool;
//! - [`http`]: call a router in-process and read the whole answer ([`Call`], [`send`],
//!   [`Answer`]);
//! - [`poll`]: wait, bounded, until a condition holds ([`eventually`]);
//! - [`metadata`]: the audit metadata test events carry ([`metadata::json`]);
//! - [`auth`]: a signing key per process and access tokens for any account ([`TestAccount`]);
//! - [`broker`]: a queue of the test's own on a relay's exchange in the local RabbitMQ;
//! - [`init_logging`]: `TEST_LOG=1` shows the system's logs in tests.
//!
//! A dev-dependency only (`publish = false`); it never reaches a release build.

pub mod auth;
pub mod broker;
pub mod exposition;
pub mod http;
pub mod metadata;
pub mod poll;

pub use auth::TestAccount;
pub use http::{Answer, Call, acting_as, send};
pub use poll::eventually;

/// Turns on log output in tests when `TEST_LOG` is set (`TEST_LOG=1 cargo test`; `RUST_LOG`
/// filters), and does nothing otherwise. Call it first in a test; later calls are no-ops.
pub fn init_logging() {
    service_kit::telemetry::init_test_logging();
}
