//! The generic core of boardsync.
//!
//! - [`adapter`]: which adapter serves the domains ([`AdapterKind`]) and the rule the
//!   factory uses to pick it once at start-up.
//! - [`migrations`]: the framework's own PostgreSQL schema (scopes), run before each
//!   domain's migrations.

pub mod adapter;
pub mod migrations;

pub use adapter::AdapterKind;
