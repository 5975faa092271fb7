//! The actors that do boardsync's work, generic over any [`Domain`]: nothing here
//! knows about chat, Kanban or whiteboards, and adding a domain changes nothing here.
//!
//! - [`adapter`]: [`AdapterActor<D>`] owns a domain's connection, serves commands and
//!   snapshots, and fans each scope's live events out to its subscribers.
//! - [`service`]: [`DomainService`], the JSON-level, type-erased face of a running
//!   domain that the API routes by name, and [`Domains`], the registry of them.
//!
//! [`Domain`]: boardsync_core::Domain

pub mod adapter;
pub mod service;

pub use adapter::{AdapterActor, Live, SubscriberId};
pub use service::{DomainService, Domains, PageLimits};
