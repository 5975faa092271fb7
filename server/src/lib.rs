//! The boardsync server.
//!
//! - [`settings`]: typed, layered configuration (`settings/` files plus environment).
//! - [`startup`]: [`startup::Application`] builds everything from settings (database
//!   pool, migrations, adapters, HTTP server); the binary and the tests share it.
//! - [`domains`]: the one place domains are wired in.
//! - [`routes`]: the HTTP surface: `/health`, `/metrics`, the generic domain routes
//!   (`/api/{domain}/{scope}`, its `/live` WebSocket), admin routes, OpenAPI.
//! - [`upgrade`]: HTTP/1 upgrades, routed like any request, then handed the connection.
//! - [`websocket`]: a WebSocket on a connection of its own (the `/live` route's).
//! - [`auth`]: bearer JWTs: local HS256 tokens and identity providers' RS256/ES256.
//! - [`limits`]: per-user command rates and live sockets, the live sockets of the
//!   process, and its open-file limit.
//! - [`error`]: the one mapping from errors to JSON responses and HTTP statuses.
//! - [`metrics`]: the Prometheus registry an operator scrapes.
//! - [`telemetry`]: structured logs with `tracing`.
//! - [`warmup_command`]: `boardsync warmup`, re-warming through the admin API.
//! - [`members_command`]: `boardsync members`, managing a scope's members.

pub mod auth;
pub mod domains;
pub mod drain_command;
pub mod error;
pub mod limits;
pub mod members_command;
pub mod metrics;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod upgrade;
pub mod warmup_command;
pub mod websocket;
