//! The boardsync server.
//!
//! - [`settings`]: typed, layered configuration (`settings/` files plus environment).
//! - [`startup`]: [`startup::Application`] builds everything from settings (database
//!   pool, migrations, adapters, HTTP server); the binary and the tests share it.
//! - [`routes`]: the HTTP surface: `/health`, `/metrics`.
//! - [`metrics`]: the Prometheus registry an operator scrapes.
//! - [`telemetry`]: structured logs with `tracing`.

pub mod metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
