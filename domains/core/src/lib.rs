//! The generic core of boardsync: everything a domain plugs into, and nothing that
//! knows about chat, Kanban or whiteboards.
//!
//! - [`domain`]: the [`Domain`] trait: a domain's name, what its scope is called, and
//!   its item, command, event, settings and scope-config types, plus validation.
//! - [`connection`]: the [`Connection<D>`] trait both adapters of every domain
//!   implement (snapshot, apply, subscribe), and the live [`EventStream`].
//! - [`factory`]: [`DomainAdapters`], how a domain builds each adapter, and
//!   [`factory::connect`], which builds one once at start-up: SpacetimeDB when a
//!   target is configured ([`AdapterKind::select`]), PostgreSQL otherwise.
//! - [`scope`]: scopes (a chat channel, a board) as rows in PostgreSQL, with their
//!   per-scope `config`.
//! - [`live`]: per-scope fan-out of events inside an adapter.
//! - [`index`]: per-scope indexes of cached rows, for snapshots from the SpacetimeDB cache.
//! - [`cache`]: [`cache::Cache`], what warm-up and the outbox poller need from a
//!   domain's SpacetimeDB adapter, and [`cache::OutboxEntry`].
//! - [`spacetime`]: what every SpacetimeDB adapter shares, around
//!   [`spacetime::Link`]: the connection and its epoch, matching reducer outcomes to
//!   calls, durable-write waiters, the reconnect loop with backoff.
//! - [`dead_letters`]: outbox entries PostgreSQL refused, listed, replayed or discarded.
//! - [`access`]: who may see and change a scope (members, roles, open scopes).
//! - [`outside`]: rows outside writers change in PostgreSQL reach the cache and live
//!   clients.
//! - [`purge`]: a scope's items deleted for good, and no write of it landing after.
//! - [`postgres`]: the PostgreSQL adapters' shared machinery (event log with
//!   LISTEN/NOTIFY plus a safety-net poll).
//! - [`warmup`]: warm-up tuning, domain defaults layered with per-scope overrides.
//! - [`error`]: [`DomainError`], the one error type, with a kind the API maps to an
//!   HTTP status and a stable code.
//! - [`migrations`]: the framework's own PostgreSQL schema.
//! - [`ordering`]: fractional ordering keys (positions, z-order) without renumbering;
//!   dependency-free so SpacetimeDB modules include the same file.

pub mod access;
pub mod adapter;
pub mod cache;
pub mod cache_adapter;
pub mod connection;
pub mod dead_letters;
pub mod domain;
pub mod error;
pub mod factory;
pub mod forgetful;
pub mod index;
pub mod live;
pub mod migrations;
pub mod ordering;
pub mod outside;
pub mod pg_adapter;
pub mod postgres;
pub mod purge;
pub mod refusal;
pub mod scope;
pub mod shards;
pub mod spacetime;
pub mod warmup;

pub use adapter::AdapterKind;
pub use connection::{Connection, Delivery, Durability, EventStream, Page};
pub use domain::{ActingUser, Domain, UserId};
pub use error::{DomainError, ErrorBody, ErrorDetail, ErrorKind};
pub use factory::DomainAdapters;
pub use factory::{Adapter, AdapterContext, DomainSettings};
pub use scope::{Scope, ScopeKey, ScopeStore};

/// What [`spacetime_module!`] expands to needs, reachable from any domain crate.
#[doc(hidden)]
pub mod __private {
    pub use spacetimedb_client_api_messages::websocket::CallReducerFlags;
    pub use spacetimedb_sdk as sdk;
    pub use tracing;
}
