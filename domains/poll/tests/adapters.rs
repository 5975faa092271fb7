//! The poll contract on both adapters, against real PostgreSQL and SpacetimeDB.

mod contract;

use std::sync::Arc;

use boardsync_core::cache::Cache;
use boardsync_core::{AdapterContext, DomainAdapters};
use boardsync_poll::spacetime::SpacetimePoll;
use boardsync_poll::Poll;
use boardsync_testkit::{default_domain_settings, wait_until, TestPostgres, TestSpacetime};

async fn postgres_poll() -> contract::Conn {
    let db = TestPostgres::create(&[Poll::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Poll>() };
    Poll::postgres(context).await.expect("the PostgreSQL adapter starts")
}

async fn spacetimedb_poll() -> contract::Conn {
    let db = TestPostgres::create(&[Poll::migrator()]).await;
    let stdb = TestSpacetime::publish("poll").await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Poll>() };
    let poll = Arc::new(SpacetimePoll::connect(context, stdb.target()));
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
