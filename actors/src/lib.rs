//! The actors that do boardsync's work, generic over any [`Domain`]: nothing here
//! knows about chat, Kanban or whiteboards, and adding a domain changes nothing here.
//!
//! - [`adapter`]: [`AdapterActor<D>`] owns a domain's connection, serves commands and
//!   snapshots, and fans each scope's live events out to its subscribers.
//! - [`warmup`]: a WarmupActor per scope loads PostgreSQL's data into the cache,
//!   coordinated per domain, bounded and prioritised across domains.
//! - [`outbox`]: the OutboxPoller drains the cache's `sync_outbox` into PostgreSQL,
//!   exactly once, in order per entity.
//! - [`drainer`]: which node drains each outbox: a lease in PostgreSQL, taken over
//!   when its holder dies.
//! - [`liveness`]: which nodes run each domain on the cache now, so that the first
//!   node up after none ran does not trust the cache's record of warm scopes.
//! - [`metrics`]: warm-up progress, outbox depth, age and lag, per domain.
//! - [`frames`]: what a live socket sends, as types the API document describes.
//! - [`frame_queue`]: a socket's bounded queue of frames, small while empty.
//! - [`presence`]: who is connected to a scope, with a small state each, fanned out
//!   over the live sockets and never stored.
//! - [`presence_relay`]: presence across nodes, through PostgreSQL's LISTEN/NOTIFY.
//! - [`service`]: [`DomainService`], the JSON-level, type-erased face of a running
//!   domain that the API routes by name, and [`Domains`], the registry of them.
//!
//! [`Domain`]: boardsync_core::Domain

pub mod adapter;
pub mod drainer;
pub mod frame_queue;
pub mod frames;
pub mod liveness;
pub mod metrics;
pub mod moving;
pub mod outbox;
pub mod presence;
pub mod presence_relay;
pub mod routed;
pub mod scope_lock;
pub mod service;
pub mod warmup;

pub use adapter::{AdapterActor, Live, SubscriberId};
pub use frames::{ClientSignal, Reply, ServerFrame};
pub use metrics::CacheMetrics;
pub use service::{CacheRuntime, DomainDescription, DomainService, Domains, PageLimits};
