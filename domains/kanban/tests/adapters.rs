//! The Kanban contract on both adapters, against real PostgreSQL and SpacetimeDB.

mod contract;

use std::sync::Arc;

use boardsync_core::cache::Cache;
use boardsync_core::cache_adapter::CacheAdapter;
use boardsync_core::pg_adapter::PostgresAdapter;
use boardsync_core::{AdapterContext, DomainAdapters};
use boardsync_kanban::Kanban;
use boardsync_testkit::{default_domain_settings, wait_until, TestPostgres, TestSpacetime};

async fn postgres_kanban() -> contract::Conn {
    let db = TestPostgres::create(&[Kanban::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Kanban>() };
    Arc::new(PostgresAdapter::<Kanban>::connect(context).await.expect("the PostgreSQL adapter starts"))
}

async fn spacetimedb_kanban() -> contract::Conn {
    let db = TestPostgres::create(&[Kanban::migrator()]).await;
    let stdb = TestSpacetime::publish("kanban").await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Kanban>() };
    let kanban = Arc::new(CacheAdapter::<Kanban>::connect(context, stdb.target()).expect("the cache adapter starts"));
    wait_until("the cache connects", || Cache::<Kanban>::epoch(kanban.as_ref()).is_some()).await;
    kanban
}

mod on_postgres {
    use super::*;
    kanban_contract!(postgres_kanban);
}

mod on_spacetimedb {
    use super::*;
    kanban_contract!(spacetimedb_kanban);
}
