//! The Kanban contract on both adapters, against real PostgreSQL and SpacetimeDB.

mod contract;

use std::sync::Arc;

use boardsync_core::cache::Cache;
use boardsync_core::{AdapterContext, DomainAdapters};
use boardsync_kanban::spacetime::SpacetimeKanban;
use boardsync_kanban::Kanban;
use boardsync_testkit::{default_domain_settings, wait_until, TestPostgres, TestSpacetime};

async fn postgres_kanban() -> contract::Conn {
    let db = TestPostgres::create(&[Kanban::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Kanban>() };
    Kanban::postgres(context).await.expect("the PostgreSQL adapter starts")
}

async fn spacetimedb_kanban() -> contract::Conn {
    let db = TestPostgres::create(&[Kanban::migrator()]).await;
    let stdb = TestSpacetime::publish("kanban").await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Kanban>() };
    let kanban = Arc::new(SpacetimeKanban::connect(context, stdb.target()));
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
