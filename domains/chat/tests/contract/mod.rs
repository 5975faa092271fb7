//! The contract every `Connection<Chat>` honours, written once and run against each
//! adapter: `chat_contract!(make)` expands to one test per clause, where `make()`
//! returns a fresh connection on databases of its own.

use std::sync::Arc;
use std::time::Duration;

use boardsync_chat::{Chat, ChatCommand, ChatEvent};
use boardsync_core::{ActingUser, Connection, Delivery, Durability, ErrorKind, Page, ScopeKey, UserId};
use futures::StreamExt;
use uuid::Uuid;

pub type Conn = Arc<dyn Connection<Chat>>;

pub fn channel(key: &str) -> ScopeKey {
    ScopeKey::parse(key).unwrap()
}

pub fn user(name: &str) -> UserId {
    UserId(name.into())
}

pub async fn apply(
    conn: &Conn,
    scope: &str,
    who: &str,
    command: ChatCommand,
) -> Result<ChatEvent, boardsync_core::DomainError> {
    conn.apply(&channel(scope), &ActingUser { user: user(who), owns_scope: false }, command, Durability::Cache).await
}

pub async fn send(conn: &Conn, scope: &str, who: &str, text: &str) -> Uuid {
    let id = Uuid::new_v4();
    apply(conn, scope, who, ChatCommand::Send { id, text: text.into() }).await.expect("send succeeds");
    id
}

pub async fn page(conn: &Conn, scope: &str, limit: u32, before: Option<Uuid>) -> Vec<boardsync_chat::Message> {
    conn.snapshot(&channel(scope), Page { limit, before: before.map(|id| id.to_string()) })
        .await
        .expect("snapshot succeeds")
}

pub async fn send_is_listed_newest_first(conn: Conn) {
    let first = send(&conn, "general", "alice", "one").await;
    let second = send(&conn, "general", "bob", "two").await;
    let items = page(&conn, "general", 10, None).await;
    let ids: Vec<Uuid> = items.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![second, first]);
    assert_eq!(items[0].author, "bob");
    assert_eq!(items[0].text, "two");
    assert_eq!(items[0].channel, "general");
    assert!(!items[0].deleted && items[0].edited_at.is_none() && items[0].reactions.is_empty());
}

pub async fn a_retried_send_is_idempotent_and_a_reused_id_conflicts(conn: Conn) {
    let id = Uuid::new_v4();
    let command = || ChatCommand::Send { id, text: "once".into() };
    let original = apply(&conn, "general", "alice", command()).await.unwrap();
    let retried = apply(&conn, "general", "alice", command()).await.unwrap();
    assert_eq!(retried.message(), original.message());
    assert_eq!(page(&conn, "general", 10, None).await.len(), 1);

    let reused = apply(&conn, "general", "alice", ChatCommand::Send { id, text: "other".into() }).await;
    let error = reused.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::Conflict, "id_conflict"));
    let by_another = apply(&conn, "general", "bob", command()).await.unwrap_err();
    assert_eq!((by_another.kind, by_another.code.as_ref()), (ErrorKind::Conflict, "id_conflict"));
}

/// Deleting a deleted message is a retry: it answers as the first delete did, raises
/// no version and tells no subscriber; only its author may, and an id that never
/// existed stays 404.
pub async fn a_retried_delete_answers_as_the_first(conn: Conn) {
    let mut events = conn.subscribe(&channel("general")).await.unwrap();
    let id = send(&conn, "general", "alice", "soon gone").await;
    let first = apply(&conn, "general", "alice", ChatCommand::Delete { id }).await.unwrap();
    expect_kinds(&mut events, &["sent", "deleted"]).await;
    let retried = apply(&conn, "general", "alice", ChatCommand::Delete { id }).await.unwrap();
    assert!(matches!(&retried, ChatEvent::Deleted { .. }), "{retried:?}");
    assert_eq!(retried, first, "the same deleted state, at the same version");
    let error = apply(&conn, "general", "bob", ChatCommand::Delete { id }).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::Forbidden, "not_author"));
    let never = apply(&conn, "general", "alice", ChatCommand::Delete { id: Uuid::new_v4() }).await.unwrap_err();
    assert_eq!((never.kind, never.code.as_ref()), (ErrorKind::NotFound, "message_not_found"));
    assert_eq!(page(&conn, "general", 10, None).await[0], *first.message());
    next_is_the_marker(&conn, &mut events).await;
}

/// A repeated reaction, an unreact of a reaction not there, an edit to the text the
/// message has and a retried send change nothing: each answers with the message as it
/// is, the version stays, and subscribers hear nothing of them.
pub async fn commands_that_change_nothing_keep_the_version_and_tell_nobody(conn: Conn) {
    let mut events = conn.subscribe(&channel("general")).await.unwrap();
    let id = send(&conn, "general", "alice", "as is").await;
    apply(&conn, "general", "bob", ChatCommand::React { id, emoji: "👍".into() }).await.unwrap();
    expect_kinds(&mut events, &["sent", "reacted"]).await;
    let before = page(&conn, "general", 10, None).await.remove(0);
    let no_ops = [
        ("bob", ChatCommand::React { id, emoji: "👍".into() }),
        ("carol", ChatCommand::Unreact { id, emoji: "👍".into() }),
        ("bob", ChatCommand::Unreact { id, emoji: "🎉".into() }),
        ("alice", ChatCommand::Edit { id, text: "as is".into() }),
        ("alice", ChatCommand::Send { id, text: "as is".into() }),
    ];
    for (who, command) in no_ops {
        let answer = apply(&conn, "general", who, command.clone()).await.unwrap();
        assert_eq!(answer.message(), &before, "{command:?} answers with the message as it is");
    }
    assert_eq!(page(&conn, "general", 10, None).await[0], before, "nothing changed, the version included");
    next_is_the_marker(&conn, &mut events).await;
}

/// The next events' kinds are `kinds`.
async fn expect_kinds(events: &mut boardsync_core::EventStream<ChatEvent>, kinds: &[&str]) {
    for kind in kinds {
        match next(events).await {
            Delivery::Event(event) => assert_eq!(kind_of(&event), *kind, "{event:?}"),
            Delivery::Lagged => panic!("no lag expected"),
        }
    }
}

fn kind_of(event: &ChatEvent) -> &'static str {
    match event {
        ChatEvent::Sent { .. } => "sent",
        ChatEvent::Edited { .. } => "edited",
        ChatEvent::Reacted { .. } => "reacted",
        ChatEvent::Deleted { .. } => "deleted",
        ChatEvent::Unreacted { .. } => "unreacted",
    }
}

/// Sends a marker message to `general` and checks that it is the next event: a
/// command that changed nothing before it told subscribers nothing.
async fn next_is_the_marker(conn: &Conn, events: &mut boardsync_core::EventStream<ChatEvent>) {
    let marker = send(conn, "general", "alice", "marker").await;
    match next(events).await {
        Delivery::Event(ChatEvent::Sent { message }) if message.id == marker => {}
        other => panic!("a command that changed nothing told subscribers: {other:?}"),
    }
}

pub async fn only_the_author_edits_and_deletes(conn: Conn) {
    let id = send(&conn, "general", "alice", "draft").await;

    let error = apply(&conn, "general", "bob", ChatCommand::Edit { id, text: "hijack".into() }).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::Forbidden, "not_author"));
    let error = apply(&conn, "general", "bob", ChatCommand::Delete { id }).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::Forbidden, "not_author"));

    let sent_version = page(&conn, "general", 10, None).await[0].version;
    let edited = apply(&conn, "general", "alice", ChatCommand::Edit { id, text: "final".into() }).await.unwrap();
    assert!(edited.message().version > sent_version, "every write raises the version");
    assert!(matches!(&edited, ChatEvent::Edited { message } if message.text == "final" && message.edited_at.is_some()));
    let stored = &page(&conn, "general", 10, None).await[0];
    assert_eq!(stored.text, "final");

    let deleted = apply(&conn, "general", "alice", ChatCommand::Delete { id }).await.unwrap();
    assert!(matches!(&deleted, ChatEvent::Deleted { message } if message.deleted && message.text.is_empty()));
    let stored = &page(&conn, "general", 10, None).await[0];
    assert!(stored.deleted, "a deleted message stays as a tombstone");
    let error = apply(&conn, "general", "alice", ChatCommand::Edit { id, text: "zombie".into() }).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::NotFound, "message_not_found"));
}

pub async fn reactions_are_per_user_and_idempotent(conn: Conn) {
    let id = send(&conn, "general", "alice", "react to me").await;
    let react = |emoji: &'static str| ChatCommand::React { id, emoji: emoji.into() };
    apply(&conn, "general", "bob", react("👍")).await.unwrap();
    apply(&conn, "general", "bob", react("👍")).await.unwrap();
    let event = apply(&conn, "general", "carol", react("👍")).await.unwrap();
    let ChatEvent::Reacted { message, user, emoji } = event else { panic!("expected reacted") };
    assert_eq!((user.as_str(), emoji.as_str()), ("carol", "👍"));
    let users: Vec<&str> = message.reactions.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(users, vec!["bob", "carol"]);

    let unreacted = apply(&conn, "general", "bob", ChatCommand::Unreact { id, emoji: "👍".into() }).await.unwrap();
    assert!(matches!(&unreacted, ChatEvent::Unreacted { message, .. } if message.reactions.len() == 1));
    assert!(unreacted.message().version > message.version, "every write raises the version");
    assert_eq!(page(&conn, "general", 10, None).await[0].reactions[0].user, "carol");
}

/// The default `max_reactions_per_message` (200) holds on both adapters.
pub async fn reactions_per_message_are_bounded(conn: Conn) {
    let id = send(&conn, "general", "alice", "popular").await;
    let react = || ChatCommand::React { id, emoji: "👍".into() };
    for n in 0..200 {
        apply(&conn, "general", &format!("fan{n}"), react()).await.unwrap();
    }
    let refused = apply(&conn, "general", "late", react()).await.unwrap_err();
    assert_eq!((refused.kind, refused.code.as_ref()), (ErrorKind::Invalid, "too_many_reactions"));
    apply(&conn, "general", "fan7", react()).await.expect("a reaction the message has is no new one");
}

pub async fn unknown_messages_are_not_found_in_every_command(conn: Conn) {
    let elsewhere = send(&conn, "random", "alice", "other channel").await;
    for id in [Uuid::new_v4(), elsewhere] {
        for command in [
            ChatCommand::Edit { id, text: "x".into() },
            ChatCommand::Delete { id },
            ChatCommand::React { id, emoji: "👍".into() },
            ChatCommand::Unreact { id, emoji: "👍".into() },
        ] {
            let error = apply(&conn, "general", "alice", command).await.unwrap_err();
            assert_eq!((error.kind, error.code.as_ref()), (ErrorKind::NotFound, "message_not_found"));
        }
    }
    assert_eq!(page(&conn, "random", 10, None).await[0].text, "other channel");
}

pub async fn snapshots_page_backwards(conn: Conn) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&conn, "general", "alice", &format!("m{i}")).await);
    }
    send(&conn, "random", "alice", "not here").await;
    let first = page(&conn, "general", 2, None).await;
    assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[4], ids[3]]);
    let second = page(&conn, "general", 2, Some(ids[3])).await;
    assert_eq!(second.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[2], ids[1]]);
    let last = page(&conn, "general", 2, Some(ids[1])).await;
    assert_eq!(last.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[0]]);
}

pub async fn subscribers_see_their_channels_events_in_order(conn: Conn) {
    let mut general = conn.subscribe(&channel("general")).await.unwrap();
    let mut random = conn.subscribe(&channel("random")).await.unwrap();
    let id = send(&conn, "general", "alice", "hello").await;
    apply(&conn, "general", "alice", ChatCommand::Edit { id, text: "hello!".into() }).await.unwrap();
    apply(&conn, "general", "bob", ChatCommand::React { id, emoji: "🎉".into() }).await.unwrap();
    apply(&conn, "general", "alice", ChatCommand::Delete { id }).await.unwrap();
    let other = send(&conn, "random", "bob", "elsewhere").await;

    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        match next(&mut general).await {
            Delivery::Event(event) => {
                assert_eq!(event.message().id, id);
                kinds.push(match event {
                    ChatEvent::Sent { .. } => "sent",
                    ChatEvent::Edited { .. } => "edited",
                    ChatEvent::Reacted { .. } => "reacted",
                    ChatEvent::Deleted { .. } => "deleted",
                    ChatEvent::Unreacted { .. } => "unreacted",
                });
            }
            Delivery::Lagged => panic!("no lag expected"),
        }
    }
    assert_eq!(kinds, ["sent", "edited", "reacted", "deleted"]);
    match next(&mut random).await {
        Delivery::Event(event) => assert_eq!(event.message().id, other),
        Delivery::Lagged => panic!("no lag expected"),
    }
}

async fn next(stream: &mut boardsync_core::EventStream<ChatEvent>) -> Delivery<ChatEvent> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event arrives within 10 s")
        .expect("the stream stays open")
}

#[macro_export]
macro_rules! chat_contract {
    ($make:path) => {
        $crate::chat_contract!(@tests $make;
            send_is_listed_newest_first,
            a_retried_send_is_idempotent_and_a_reused_id_conflicts,
            a_retried_delete_answers_as_the_first,
            commands_that_change_nothing_keep_the_version_and_tell_nobody,
            only_the_author_edits_and_deletes,
            reactions_are_per_user_and_idempotent,
            reactions_per_message_are_bounded,
            unknown_messages_are_not_found_in_every_command,
            snapshots_page_backwards,
            subscribers_see_their_channels_events_in_order,
        );
    };
    (@tests $make:path; $($clause:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $clause() {
                contract::$clause($make().await).await;
            }
        )+
    };
}
