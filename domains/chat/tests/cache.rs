//! The cache's guarantees, against a real SpacetimeDB and a real PostgreSQL: warm-up
//! never undoes a pending write, the outbox reaches PostgreSQL exactly once, and a
//! crash between PostgreSQL's commit and the ack applies nothing twice.

use std::sync::Arc;

use boardsync_actors::outbox::{acknowledge, commit_batch};
use boardsync_actors::CacheMetrics;
use boardsync_chat::{Chat, ChatCommand, Message};
use boardsync_core::cache::Cache;
use boardsync_core::cache_adapter::CacheAdapter;
use boardsync_core::pg_adapter::PostgresAdapter;
use boardsync_core::{
    ActingUser, AdapterContext, Connection, DomainAdapters, DomainSettings, Durability, Page, ScopeKey,
};
use boardsync_testkit::{default_domain_settings, wait_until, TestPostgres, TestSpacetime};
use uuid::Uuid;

struct Setup {
    db: TestPostgres,
    stdb: TestSpacetime,
    chat: Arc<CacheAdapter<Chat>>,
    metrics: CacheMetrics,
}

async fn setup() -> Setup {
    setup_with(default_domain_settings::<Chat>()).await
}

async fn setup_with(settings: DomainSettings<Chat>) -> Setup {
    let db = TestPostgres::create(&[Chat::migrator()]).await;
    let stdb = TestSpacetime::publish("chat").await;
    let context = AdapterContext { pool: db.pool.clone(), settings };
    let chat = Arc::new(CacheAdapter::<Chat>::connect(context, stdb.target()).unwrap());
    wait_until("the cache connects", || Cache::<Chat>::epoch(chat.as_ref()).is_some()).await;
    let metrics = CacheMetrics::register(&prometheus::Registry::new()).unwrap();
    Setup { db, stdb, chat, metrics }
}

fn general() -> ScopeKey {
    ScopeKey::parse("general").unwrap()
}

impl Setup {
    async fn run(&self, who: &str, command: ChatCommand) -> Message {
        let event = self.chat.apply(&general(), &ActingUser::member(who), command, Durability::Cache).await.unwrap();
        event.message().clone()
    }

    async fn cached(&self) -> Vec<Message> {
        self.chat.snapshot(&general(), Page { limit: 100, before: None }).await.unwrap()
    }

    /// What PostgreSQL holds, read through the PostgreSQL adapter.
    async fn stored(&self) -> Vec<Message> {
        let context = AdapterContext { pool: self.db.pool.clone(), settings: default_domain_settings::<Chat>() };
        let postgres = PostgresAdapter::<Chat>::connect(context).await.unwrap();
        postgres.snapshot(&general(), Page { limit: 100, before: None }).await.unwrap()
    }

    /// A message's channel, author and text in PostgreSQL.
    async fn row(&self, id: Uuid) -> (String, String, String) {
        sqlx::query_as("SELECT channel, author, text FROM chat_messages WHERE id = $1")
            .bind(id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Drains the outbox the way the OutboxPoller does: commit, then ack.
    async fn drain(&self) {
        while let Some(committed) =
            commit_batch::<Chat>(self.chat.as_ref(), &mut self.db.pool.acquire().await.unwrap(), 1000, &self.metrics)
                .await
                .unwrap()
        {
            acknowledge::<Chat>(self.chat.as_ref(), &committed).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_never_undoes_a_pending_edit_delete_or_reaction() {
    let s = setup().await;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut stale = Vec::new();
    for id in [a, b, c] {
        stale.push(s.run("alice", ChatCommand::Send { id, text: "original".into() }).await);
    }
    // These stay pending: nothing drains the outbox in this test.
    s.run("alice", ChatCommand::Edit { id: a, text: "edited".into() }).await;
    s.run("alice", ChatCommand::Delete { id: b }).await;
    s.run("bob", ChatCommand::React { id: c, emoji: "👍".into() }).await;
    assert!(Cache::<Chat>::pending_count(s.chat.as_ref()) >= 6);

    // Warm-up brings what PostgreSQL would have had before those writes.
    s.chat.warm(&general(), stale).await.unwrap();

    let cached = s.cached().await;
    let by_id = |id: Uuid| cached.iter().find(|m| m.id == id).unwrap();
    assert_eq!(by_id(a).text, "edited", "a pending edit is not reverted");
    assert!(by_id(b).deleted, "a pending delete is not resurrected");
    assert_eq!(by_id(c).reactions.len(), 1, "a pending reaction is not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_never_replaces_a_newer_cached_version_but_does_load_newer_ones() {
    let s = setup().await;
    let id = Uuid::new_v4();
    let original = s.run("alice", ChatCommand::Send { id, text: "v1".into() }).await;
    s.run("alice", ChatCommand::Edit { id, text: "v2".into() }).await;
    s.drain().await;
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 0);

    // Read from PostgreSQL before the edit was acked: an older version, no pending entry.
    s.chat.warm(&general(), vec![original.clone()]).await.unwrap();
    assert_eq!(s.cached().await[0].text, "v2");

    // A newer version from PostgreSQL (written while the cache was not in front) wins.
    let newer = Message { text: "v3 from postgres".into(), version: 10, ..original };
    s.chat.warm(&general(), vec![newer]).await.unwrap();
    assert_eq!(s.cached().await[0].text, "v3 from postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_reaches_postgres_exactly_once_row_by_row() {
    let s = setup().await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = Uuid::new_v4();
        s.run("alice", ChatCommand::Send { id, text: format!("m{i}") }).await;
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        match i % 4 {
            0 => s.run("alice", ChatCommand::Edit { id: *id, text: format!("edited {i}") }).await,
            1 => s.run("alice", ChatCommand::Delete { id: *id }).await,
            2 => s.run("bob", ChatCommand::React { id: *id, emoji: "🎉".into() }).await,
            _ => s.run("carol", ChatCommand::React { id: *id, emoji: ":tada:".into() }).await,
        };
    }
    s.run("bob", ChatCommand::Unreact { id: ids[2], emoji: "🎉".into() }).await;

    s.drain().await;

    let cached = s.cached().await;
    let stored = s.stored().await;
    assert_eq!(stored.len(), 20, "one row per message, no duplicates");
    assert_eq!(cached, stored, "PostgreSQL holds exactly what the cache holds");
    let applied: i64 = sqlx::query_scalar("SELECT last_applied_seq FROM outbox_progress WHERE domain = 'chat'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(applied, 41, "20 sends, 20 changes and 1 unreact, each applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_ack_applies_nothing_twice() {
    let s = setup().await;
    for i in 0..5 {
        s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: format!("m{i}") }).await;
    }
    // The backend commits a batch in PostgreSQL and dies before acking it.
    let committed = commit_batch::<Chat>(s.chat.as_ref(), &mut s.db.pool.acquire().await.unwrap(), 1000, &s.metrics)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(committed.applied, 5);
    let before = s.stored().await;

    // After the restart the same entries are still pending in the cache.
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 5);
    let again = commit_batch::<Chat>(s.chat.as_ref(), &mut s.db.pool.acquire().await.unwrap(), 1000, &s.metrics)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.entries.len(), again.applied), (5, 0), "found already applied: skipped, not re-applied");
    acknowledge::<Chat>(s.chat.as_ref(), &again).await.unwrap();

    wait_until("the ack empties the outbox", || Cache::<Chat>::pending_count(s.chat.as_ref()) == 0).await;
    assert_eq!(s.stored().await, before);
    assert_eq!(s.metrics.outbox_skipped.with_label_values(&["chat"]).get(), 5);
    assert_eq!(s.metrics.outbox_applied.with_label_values(&["chat"]).get(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_ack_for_an_earlier_cache_incarnation_deletes_nothing_of_the_new_one() {
    let s = setup().await;
    for i in 0..3 {
        s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: format!("old {i}") }).await;
    }
    // Committed in PostgreSQL from the first incarnation, not yet acknowledged ...
    let committed = commit_batch::<Chat>(s.chat.as_ref(), &mut s.db.pool.acquire().await.unwrap(), 1000, &s.metrics)
        .await
        .unwrap()
        .unwrap();
    let first = Cache::<Chat>::epoch(s.chat.as_ref()).unwrap();
    // ... when the cache database is recreated: its sequence numbers start over.
    boardsync_testkit::publish(&s.stdb.url, &s.stdb.token, &s.stdb.database, "chat", true).await;
    wait_until("the new incarnation is connected", || {
        Cache::<Chat>::epoch(s.chat.as_ref()).is_some_and(|epoch| epoch != first)
    })
    .await;
    for i in 0..3 {
        s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: format!("new {i}") }).await;
    }
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 3);

    let late = acknowledge::<Chat>(s.chat.as_ref(), &committed).await;
    assert_eq!(late.unwrap_err().code, "stale_epoch", "the module refuses an ack for another incarnation");
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 3, "the new writes are still pending");
    s.drain().await;
    let texts: Vec<String> = s.stored().await.into_iter().map(|m| m.text).collect();
    assert_eq!(texts.iter().filter(|t| t.starts_with("new")).count(), 3, "and reach PostgreSQL: {texts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_pending_limit_writes_are_refused_until_postgres_catches_up() {
    let mut settings = default_domain_settings::<Chat>();
    settings.framework.outbox_max_pending = 5;
    let s = setup_with(settings).await;
    // Nothing drains: as while PostgreSQL is down.
    for i in 0..5 {
        s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: format!("m{i}") }).await;
    }
    let send = ChatCommand::Send { id: Uuid::new_v4(), text: "one too many".into() };
    let refused = s.chat.apply(&general(), &ActingUser::member("alice"), send.clone(), Durability::Cache).await;
    assert_eq!(refused.unwrap_err().code, "outbox_full");
    assert_eq!(s.cached().await.len(), 5, "the refused write is not in the cache");

    s.drain().await;
    wait_until("the ack empties the outbox", || Cache::<Chat>::pending_count(s.chat.as_ref()) == 0).await;
    s.chat.apply(&general(), &ActingUser::member("alice"), send, Durability::Cache).await.expect("accepted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_number_used_again_after_a_cache_crash_is_still_applied() {
    let s = setup().await;
    s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: "first".into() }).await;
    s.drain().await;
    // SpacetimeDB acknowledges commits before its fsync; after a crash it can hand out
    // sequence numbers this incarnation already used and PostgreSQL already recorded.
    sqlx::query("UPDATE outbox_progress SET last_applied_seq = 1000 WHERE domain = 'chat'")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let reused = s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: "after the crash".into() }).await;
    s.drain().await;
    assert!(s.stored().await.contains(&reused), "an entry below the recorded sequence reaches PostgreSQL");
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_postgres_holds_with_other_content_is_set_aside_not_dropped() {
    let s = setup().await;
    let id = Uuid::new_v4();
    s.run("alice", ChatCommand::Send { id, text: "original".into() }).await;
    s.drain().await;
    // PostgreSQL holds the next version with other content (as when a cache crash lost
    // a write PostgreSQL already had, and the cache handed the version out again).
    sqlx::query("UPDATE chat_messages SET text = 'from elsewhere', version = 2 WHERE id = $1")
        .bind(id)
        .execute(&s.db.pool)
        .await
        .unwrap();
    let edited = s.run("alice", ChatCommand::Edit { id, text: "edited in the cache".into() }).await;
    assert_eq!(edited.version, 2);
    s.drain().await;

    let error: String = sqlx::query_scalar("SELECT error FROM outbox_dead_letters WHERE entity = $1")
        .bind(id.to_string())
        .fetch_one(&s.db.pool)
        .await
        .expect("the conflicting write is kept as a dead letter");
    assert!(error.contains("version_conflict"), "{error}");
    assert_eq!(s.metrics.outbox_dead_letters.with_label_values(&["chat"]).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_write_postgres_refuses_for_good_is_set_aside_and_warm_up_goes_on() {
    let s = setup().await;
    s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: "fine".into() }).await;
    s.run("alice", ChatCommand::Send { id: Uuid::new_v4(), text: "poison".into() }).await;
    // A rule PostgreSQL has and the cache does not.
    sqlx::query("ALTER TABLE chat_messages ADD CONSTRAINT no_poison CHECK (text <> 'poison')")
        .execute(&s.db.pool)
        .await
        .unwrap();
    // What warm-up does first after a cache crash: write the kept writes into PostgreSQL.
    let restored = Cache::<Chat>::restore(s.chat.as_ref(), &s.db.pool, &general()).await;
    assert_eq!(restored.expect("the scope can still be warmed"), 1);
    assert_eq!(Cache::<Chat>::retained(s.chat.as_ref()), 0);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_dead_letters WHERE error LIKE '%no_poison%'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(dead, 1, "the refused write is kept as a dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_write_onto_another_channels_message_never_overwrites_it_and_is_set_aside() {
    let s = setup().await;
    let theirs = Uuid::new_v4();
    // The cache takes the send: no message has the id yet.
    s.run("mallory", ChatCommand::Send { id: theirs, text: "taken over".into() }).await;
    // Another writer puts a message of another channel at that id straight into
    // PostgreSQL before the outbox drains; PostgreSQL must neither move nor overwrite it.
    sqlx::query("INSERT INTO chat_messages (id, channel, author, text, created_at, version) VALUES ($1, 'private', 'bob', 'secret', now(), 1)")
        .bind(theirs)
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.drain().await;
    assert_eq!(s.row(theirs).await, ("private".into(), "bob".into(), "secret".into()));
    let error: String = sqlx::query_scalar("SELECT error FROM outbox_dead_letters WHERE entity = $1")
        .bind(theirs.to_string())
        .fetch_one(&s.db.pool)
        .await
        .expect("the conflicting write is kept as a dead letter, not dropped");
    assert!(error.contains("version_conflict"), "{error}");
}

/// The takeover issue 11 reported: a message outside the warm window is not absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_cache_lacks_is_read_from_postgres_so_nobody_takes_it_over() {
    let s = setup().await;
    // Old messages, in PostgreSQL only (the cache never loaded them): alice's in this
    // channel, bob's in another.
    let (alices, bobs) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, channel, author) in [(alices, "general", "alice"), (bobs, "private", "bob")] {
        sqlx::query("INSERT INTO chat_messages (id, channel, author, text, created_at, version) VALUES ($1, $2, $3, 'mine', now() - interval '1 day', 3)")
            .bind(id)
            .bind(channel)
            .bind(author)
            .execute(&s.db.pool)
            .await
            .unwrap();
    }
    let mallory = ActingUser::member("mallory");
    let refused =
        |command| async { s.chat.apply(&general(), &mallory, command, Durability::Cache).await.unwrap_err().code };
    assert_eq!(refused(ChatCommand::Send { id: alices, text: "taken over".into() }).await, "id_conflict");
    assert_eq!(refused(ChatCommand::Send { id: bobs, text: "taken over".into() }).await, "id_conflict");
    assert_eq!(refused(ChatCommand::Edit { id: alices, text: "taken over".into() }).await, "not_author");
    assert_eq!(refused(ChatCommand::Edit { id: bobs, text: "taken over".into() }).await, "message_not_found");

    // Alice edits her old message on the cache adapter; it reaches PostgreSQL.
    let edited = s.run("alice", ChatCommand::Edit { id: alices, text: "still mine".into() }).await;
    assert_eq!(edited.version, 4, "the edit follows PostgreSQL's version");
    s.drain().await;
    assert_eq!(s.row(alices).await, ("general".into(), "alice".into(), "still mine".into()));
    assert_eq!(s.row(bobs).await, ("private".into(), "bob".into(), "mine".into()));
}

/// The same, within one channel: a write onto another author's message that the cache
/// took while PostgreSQL could not be read is dead-lettered, not acknowledged silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_write_onto_another_authors_message_is_set_aside_not_acknowledged_silently() {
    let s = setup().await;
    let theirs = Uuid::new_v4();
    s.run("mallory", ChatCommand::Send { id: theirs, text: "taken over".into() }).await;
    sqlx::query("INSERT INTO chat_messages (id, channel, author, text, created_at, version) VALUES ($1, 'general', 'alice', 'mine', now(), 3)")
        .bind(theirs)
        .execute(&s.db.pool)
        .await
        .unwrap();
    s.drain().await;
    assert_eq!(s.row(theirs).await, ("general".into(), "alice".into(), "mine".into()));
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox_dead_letters WHERE entity = $1")
        .bind(theirs.to_string())
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(dead, 1, "the conflicting write is kept as a dead letter");
}

/// A retry writes nothing to the outbox, so a durable retry of a write still on its
/// way to PostgreSQL has no entry of its own to wait for: it is answered only once
/// PostgreSQL holds what it answers, and at once when it already does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_retry_of_a_pending_write_waits_until_postgres_has_it() {
    let s = setup().await;
    let id = Uuid::new_v4();
    let send = move || ChatCommand::Send { id, text: "once".into() };
    let sent = s.run("alice", send()).await;
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 1, "the send waits in the outbox");

    let chat = s.chat.clone();
    let retry =
        tokio::spawn(
            async move { chat.apply(&general(), &ActingUser::member("alice"), send(), Durability::Durable).await },
        );
    // Long enough for the retry to commit in the cache; nothing drains the outbox yet.
    const RETRY_COMMITTED: std::time::Duration = std::time::Duration::from_millis(500);
    tokio::time::sleep(RETRY_COMMITTED).await;
    assert!(!retry.is_finished(), "a durable retry is not answered before PostgreSQL has the write");
    assert_eq!(Cache::<Chat>::pending_count(s.chat.as_ref()), 1, "the retry wrote no outbox entry");

    s.drain().await;
    let answered = retry.await.unwrap().expect("answered once PostgreSQL has the write");
    assert_eq!(answered.message(), &sent);
    assert_eq!(s.row(id).await, ("general".into(), "alice".into(), "once".into()));
    let again = s.chat.apply(&general(), &ActingUser::member("alice"), send(), Durability::Durable).await.unwrap();
    assert_eq!(again.message(), &sent, "PostgreSQL has it: answered at once");
}

/// A durable retry the cache answers as a no-op, while PostgreSQL holds a newer state
/// (an outside writer's, not yet in the cache), is not told it is durable: the cache
/// takes PostgreSQL's state, and the retry after it applies the command to that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_no_op_over_a_newer_postgres_state_is_not_acknowledged() {
    let s = setup().await;
    let id = Uuid::new_v4();
    let edit = move || ChatCommand::Edit { id, text: "ours".into() };
    s.run("alice", ChatCommand::Send { id, text: "ours".into() }).await;
    s.drain().await;
    // An outside writer changes it in PostgreSQL, and nothing tells this cache: the
    // change is written as the backend would (no change record, which the adapter's
    // outside-change follower would bring into the cache first), with the version jump
    // an outside write gets.
    let mut tx = s.db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL boardsync.origin = 'backend'").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE chat_messages SET text = 'theirs', version = version + 1000000 WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let alice = ActingUser::member("alice");
    let stale = s.chat.apply(&general(), &alice, edit(), Durability::Durable).await.unwrap_err();
    assert_eq!(stale.code, "stale_in_cache", "{stale}");
    let applied =
        s.chat.apply(&general(), &alice, edit(), Durability::Cache).await.expect("applied to PostgreSQL's state");
    assert_eq!(applied.message().text, "ours");
    assert!(applied.message().version > 1_000_000, "built on the outside writer's version");
    s.drain().await;
    assert_eq!(s.row(id).await.2, "ours");
}
