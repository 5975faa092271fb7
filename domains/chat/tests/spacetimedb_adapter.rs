//! The chat contract on the SpacetimeDB adapter, against a real SpacetimeDB server
//! (the module published under a database name of its own) and a real PostgreSQL.

mod contract;

use boardsync_chat::Chat;
use boardsync_testkit::{default_domain_settings, TestPostgres, TestSpacetime};

async fn spacetimedb_chat() -> contract::Conn {
    let db = TestPostgres::create(&[<Chat as boardsync_core::DomainAdapters>::migrator()]).await;
    let stdb = TestSpacetime::publish("chat").await;
    let context = boardsync_core::AdapterContext { pool: db.pool, settings: default_domain_settings::<Chat>() };
    let adapter = boardsync_core::cache_adapter::CacheAdapter::<Chat>::connect(context, stdb.target()).unwrap();
    let chat = std::sync::Arc::new(adapter);
    boardsync_testkit::wait_until("the cache connects", || {
        boardsync_core::cache::Cache::<Chat>::epoch(chat.as_ref()).is_some()
    })
    .await;
    chat
}

chat_contract!(spacetimedb_chat);
