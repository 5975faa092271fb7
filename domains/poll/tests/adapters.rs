//! The poll contract on both adapters, against real PostgreSQL and SpacetimeDB.

mod contract;

use std::sync::Arc;

use boardsync_core::cache::Cache;
use boardsync_core::cache_adapter::CacheAdapter;
use boardsync_core::pg_adapter::PostgresAdapter;
use boardsync_core::{AdapterContext, DomainAdapters, DomainSettings};
use boardsync_poll::Poll;
use boardsync_testkit::{wait_until, TestPostgres, TestSpacetime};

async fn postgres_poll(settings: DomainSettings<Poll>) -> contract::Conn {
    let db = TestPostgres::create(&[Poll::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings };
    Arc::new(PostgresAdapter::<Poll>::connect(context).await.expect("the PostgreSQL adapter starts"))
}

async fn spacetimedb_poll(settings: DomainSettings<Poll>) -> contract::Conn {
    let db = TestPostgres::create(&[Poll::migrator()]).await;
    let stdb = TestSpacetime::publish("poll").await;
    let context = AdapterContext { pool: db.pool, settings };
    let poll = Arc::new(CacheAdapter::<Poll>::connect(context, stdb.target()).expect("the cache adapter starts"));
    wait_until("the cache connects", || Cache::<Poll>::epoch(poll.as_ref()).is_some()).await;
    poll
}

mod on_postgres {
    use super::*;
    poll_contract!(postgres_poll);
}

mod on_spacetimedb {
    use super::*;
    poll_contract!(spacetimedb_poll);
}
