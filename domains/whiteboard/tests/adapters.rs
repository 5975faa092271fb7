//! The whiteboard contract on both adapters, against real PostgreSQL and SpacetimeDB.

mod contract;

use std::sync::Arc;

use boardsync_core::cache::Cache;
use boardsync_core::cache_adapter::CacheAdapter;
use boardsync_core::pg_adapter::PostgresAdapter;
use boardsync_core::{AdapterContext, DomainAdapters};
use boardsync_testkit::{default_domain_settings, wait_until, TestPostgres, TestSpacetime};
use boardsync_whiteboard::Whiteboard;

async fn postgres_whiteboard() -> contract::Conn {
    let db = TestPostgres::create(&[Whiteboard::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Whiteboard>() };
    Arc::new(PostgresAdapter::<Whiteboard>::connect(context).await.expect("the PostgreSQL adapter starts"))
}

async fn spacetimedb_whiteboard() -> contract::Conn {
    let db = TestPostgres::create(&[Whiteboard::migrator()]).await;
    let stdb = TestSpacetime::publish("whiteboard").await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Whiteboard>() };
    let whiteboard =
        Arc::new(CacheAdapter::<Whiteboard>::connect(context, stdb.target()).expect("the cache adapter starts"));
    wait_until("the cache connects", || Cache::<Whiteboard>::epoch(whiteboard.as_ref()).is_some()).await;
    whiteboard
}

mod on_postgres {
    use super::*;
    whiteboard_contract!(postgres_whiteboard);
}

mod on_spacetimedb {
    use super::*;
    whiteboard_contract!(spacetimedb_whiteboard);
}
