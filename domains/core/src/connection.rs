//! The interface every adapter implements. Nothing above it knows which adapter it has.

use std::pin::Pin;

use async_trait::async_trait;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::{ActingUser, AdapterKind, Domain, DomainError, ScopeKey};

/// A page of a scope's snapshot: newest first, at most `limit` items, older than
/// the item whose cursor is `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub before: Option<String>,
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Once the adapter's primary store has it (SpacetimeDB for the cache adapter).
    #[default]
    Cache,
    /// Once it is committed in PostgreSQL.
    Durable,
}

/// What a live subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery<E> {
    Event(E),
    /// The subscriber fell behind and events were dropped: refetch the snapshot.
    Lagged,
}

pub type EventStream<E> = Pin<Box<dyn Stream<Item = Delivery<E>> + Send>>;

#[async_trait]
pub trait Connection<D: Domain>: Send + Sync + 'static {
    /// Which adapter this is (for `/health`; never for behaviour).
    fn kind(&self) -> AdapterKind;

    /// A page of the scope's items, newest first.
    async fn snapshot(&self, scope: &ScopeKey, page: Page) -> Result<Vec<D::Item>, DomainError>;

    /// Applies a validated command on behalf of `actor` and returns what happened.
    async fn apply(
        &self,
        scope: &ScopeKey,
        actor: &ActingUser,
        command: D::Command,
        durability: Durability,
    ) -> Result<D::Event, DomainError>;

    /// The scope's events from now on.
    async fn subscribe(&self, scope: &ScopeKey) -> Result<EventStream<D::Event>, DomainError>;
}
