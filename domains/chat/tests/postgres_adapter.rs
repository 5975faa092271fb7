//! The chat contract on the PostgreSQL adapter, against a real PostgreSQL.

mod contract;

use std::sync::Arc;

use boardsync_chat::Chat;
use boardsync_core::pg_adapter::PostgresAdapter;
use boardsync_core::{AdapterContext, DomainAdapters};
use boardsync_testkit::{default_domain_settings, TestPostgres};

async fn postgres_chat() -> contract::Conn {
    let db = TestPostgres::create(&[Chat::migrator()]).await;
    let context = AdapterContext { pool: db.pool, settings: default_domain_settings::<Chat>() };
    Arc::new(PostgresAdapter::<Chat>::connect(context).await.expect("the PostgreSQL adapter starts"))
}

chat_contract!(postgres_chat);
