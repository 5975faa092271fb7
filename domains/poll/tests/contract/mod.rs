//! The contract every `Connection<Poll>` honours, run against each adapter:
//! `poll_contract!(make)` expands to one test per clause.

use std::sync::Arc;
use std::time::Duration;

use boardsync_core::{
    ActingUser, Connection, Delivery, DomainError, Durability, ErrorKind, EventStream, Page, ScopeKey,
};
use boardsync_poll::{Poll, PollCommand, PollEvent, PollOption};
use futures::StreamExt;
use uuid::Uuid;

pub type Conn = Arc<dyn Connection<Poll>>;

pub async fn apply(conn: &Conn, poll: &str, who: &str, command: PollCommand) -> Result<PollEvent, DomainError> {
    conn.apply(&ScopeKey::parse(poll).unwrap(), &ActingUser::member(who), command, Durability::Cache).await
}

async fn add(conn: &Conn, poll: &str, who: &str, label: &str) -> Uuid {
    let id = Uuid::new_v4();
    apply(conn, poll, who, PollCommand::AddOption { id, label: label.into() }).await.expect("add succeeds");
    id
}

async fn options(conn: &Conn, poll: &str) -> Vec<PollOption> {
    conn.snapshot(&ScopeKey::parse(poll).unwrap(), Page { limit: 50, before: None }).await.unwrap()
}

fn assert_error(result: Result<PollEvent, DomainError>, kind: ErrorKind, code: &str) {
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (kind, code));
}

/// Far past the default (200) and past the cap the poll module once hard-coded (1,000).
pub const RAISED_LABEL_LIMIT: u32 = 1_500;

/// Raised in settings, a limit holds on both adapters alike: what is now allowed is
/// accepted, and one character past it is refused with the same error.
pub async fn labels_follow_the_configured_limit(conn: Conn) {
    let long = "a".repeat(1_200);
    add(&conn, "limits", "alice", &long).await;
    assert_eq!(options(&conn, "limits").await[0].label, long);
    let limit = RAISED_LABEL_LIMIT as usize;
    add(&conn, "limits", "alice", &"b".repeat(limit)).await;
    let past = PollCommand::AddOption { id: Uuid::new_v4(), label: "c".repeat(limit + 1) };
    assert_error(apply(&conn, "limits", "alice", past).await, ErrorKind::Invalid, "label_too_long");
}

pub async fn options_are_listed_newest_first_and_retries_are_idempotent(conn: Conn) {
    let pizza = add(&conn, "lunch", "alice", "pizza").await;
    let retry = apply(&conn, "lunch", "alice", PollCommand::AddOption { id: pizza, label: "pizza".into() }).await;
    assert_eq!(retry.unwrap().option().label, "pizza");
    let sushi = add(&conn, "lunch", "bob", "sushi").await;
    add(&conn, "dinner", "bob", "elsewhere").await;
    let listed: Vec<Uuid> = options(&conn, "lunch").await.iter().map(|o| o.id).collect();
    assert_eq!(listed, vec![sushi, pizza]);
    let reused = apply(&conn, "lunch", "bob", PollCommand::AddOption { id: pizza, label: "pasta".into() }).await;
    assert_error(reused, ErrorKind::Conflict, "id_conflict");
    let by_another = apply(&conn, "lunch", "bob", PollCommand::AddOption { id: pizza, label: "pizza".into() }).await;
    assert_error(by_another, ErrorKind::Conflict, "id_conflict");
    let listed = options(&conn, "lunch").await;
    assert_eq!(listed.iter().find(|o| o.id == pizza).unwrap().version, 1, "a retried add changes nothing");
}

/// A vote or unvote that changes the voters raises the version; a second vote, or an
/// unvote without a vote, changes nothing: it answers with the option as it is, keeps
/// the version and tells no subscriber.
pub async fn votes_are_per_user_and_a_repeated_vote_changes_nothing(conn: Conn) {
    let mut events = subscribe(&conn, "lunch").await;
    let id = add(&conn, "lunch", "alice", "pizza").await;
    let before = options(&conn, "lunch").await[0].version;
    let voted = apply(&conn, "lunch", "bob", PollCommand::Vote { id }).await.unwrap();
    assert!(voted.option().version > before, "a vote raises the version");
    let again = apply(&conn, "lunch", "bob", PollCommand::Vote { id }).await.unwrap();
    assert!(matches!(&again, PollEvent::Voted { user, .. } if user == "bob"), "{again:?}");
    assert_eq!(again.option(), voted.option(), "a second vote changes nothing, the version included");
    apply(&conn, "lunch", "carol", PollCommand::Vote { id }).await.unwrap();
    let event = apply(&conn, "lunch", "carol", PollCommand::Unvote { id }).await.unwrap();
    let PollEvent::Unvoted { option, user } = event else { panic!("expected unvoted") };
    assert_eq!(user, "carol");
    assert_eq!(option.voters, ["bob"]);
    for who in ["carol", "dave"] {
        let unvoted = apply(&conn, "lunch", who, PollCommand::Unvote { id }).await.unwrap();
        assert_eq!(unvoted.option(), &option, "an unvote without a vote changes nothing");
    }
    assert_eq!(options(&conn, "lunch").await[0], option);
    expect_kinds(&mut events, &["added", "voted", "voted", "unvoted"]).await;
    next_is_the_marker(&conn, &mut events).await;
}

/// Removing a removed option is a retry: it answers as the first removal did, raises
/// no version and tells no subscriber; only its author may, and an id that never
/// existed stays 404.
pub async fn a_retried_removal_answers_as_the_first(conn: Conn) {
    let mut events = subscribe(&conn, "lunch").await;
    let id = add(&conn, "lunch", "alice", "pizza").await;
    let first = apply(&conn, "lunch", "alice", PollCommand::RemoveOption { id }).await.unwrap();
    expect_kinds(&mut events, &["added", "removed"]).await;
    let retried = apply(&conn, "lunch", "alice", PollCommand::RemoveOption { id }).await.unwrap();
    assert_eq!(retried, first, "the same removed state, at the same version");
    let by_another = apply(&conn, "lunch", "bob", PollCommand::RemoveOption { id }).await;
    assert_error(by_another, ErrorKind::Forbidden, "not_author");
    let never = apply(&conn, "lunch", "alice", PollCommand::RemoveOption { id: Uuid::new_v4() }).await;
    assert_error(never, ErrorKind::NotFound, "option_not_found");
    next_is_the_marker(&conn, &mut events).await;
}

async fn subscribe(conn: &Conn, poll: &str) -> EventStream<PollEvent> {
    conn.subscribe(&ScopeKey::parse(poll).unwrap()).await.unwrap()
}

async fn next(events: &mut EventStream<PollEvent>) -> PollEvent {
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap() {
        Delivery::Event(event) => event,
        Delivery::Lagged => panic!("no lag expected"),
    }
}

fn kind_of(event: &PollEvent) -> &'static str {
    match event {
        PollEvent::OptionAdded { .. } => "added",
        PollEvent::Voted { .. } => "voted",
        PollEvent::Unvoted { .. } => "unvoted",
        PollEvent::OptionRemoved { .. } => "removed",
        PollEvent::OptionChanged { .. } => "changed",
    }
}

/// The next events' kinds are `kinds`.
async fn expect_kinds(events: &mut EventStream<PollEvent>, kinds: &[&str]) {
    for kind in kinds {
        let event = next(events).await;
        assert_eq!(kind_of(&event), *kind, "{event:?}");
    }
}

/// Adds a marker option to `lunch` and checks that it is the next event: a command
/// that changed nothing before it told subscribers nothing.
async fn next_is_the_marker(conn: &Conn, events: &mut EventStream<PollEvent>) {
    let marker = add(conn, "lunch", "alice", "marker").await;
    match next(events).await {
        PollEvent::OptionAdded { option } if option.id == marker => {}
        other => panic!("a command that changed nothing told subscribers: {other:?}"),
    }
}

pub async fn only_the_author_removes_and_removed_options_take_no_votes(conn: Conn) {
    let id = add(&conn, "lunch", "alice", "pizza").await;
    assert_error(
        apply(&conn, "lunch", "bob", PollCommand::RemoveOption { id }).await,
        ErrorKind::Forbidden,
        "not_author",
    );
    let removed = apply(&conn, "lunch", "alice", PollCommand::RemoveOption { id }).await.unwrap();
    assert!(removed.option().removed);
    assert_error(apply(&conn, "lunch", "bob", PollCommand::Vote { id }).await, ErrorKind::NotFound, "option_not_found");
    let elsewhere = add(&conn, "dinner", "alice", "tacos").await;
    assert_error(
        apply(&conn, "lunch", "bob", PollCommand::Vote { id: elsewhere }).await,
        ErrorKind::NotFound,
        "option_not_found",
    );
}

pub async fn subscribers_see_their_polls_events_in_order(conn: Conn) {
    let mut lunch = conn.subscribe(&ScopeKey::parse("lunch").unwrap()).await.unwrap();
    let id = add(&conn, "lunch", "alice", "pizza").await;
    apply(&conn, "lunch", "bob", PollCommand::Vote { id }).await.unwrap();
    apply(&conn, "lunch", "bob", PollCommand::Unvote { id }).await.unwrap();
    apply(&conn, "lunch", "alice", PollCommand::RemoveOption { id }).await.unwrap();
    add(&conn, "dinner", "bob", "not here").await;
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), lunch.next()).await.unwrap().unwrap();
        let Delivery::Event(event) = delivery else { panic!("no lag expected") };
        assert_eq!(event.option().id, id);
        kinds.push(match event {
            PollEvent::OptionAdded { .. } => "added",
            PollEvent::Voted { .. } => "voted",
            PollEvent::Unvoted { .. } => "unvoted",
            PollEvent::OptionRemoved { .. } => "removed",
            PollEvent::OptionChanged { .. } => "changed",
        });
    }
    assert_eq!(kinds, ["added", "voted", "unvoted", "removed"]);
}

/// An option names who added it and who changed it last.
pub async fn options_name_who_added_and_last_changed_them(conn: Conn) {
    let id = add(&conn, "lunch", "alice", "pizza").await;
    let voted = apply(&conn, "lunch", "bob", PollCommand::Vote { id }).await.unwrap();
    assert_eq!((voted.option().author.as_str(), voted.option().updated_by.as_str()), ("alice", "bob"));
    assert_eq!(options(&conn, "lunch").await[0].updated_by, "bob");
}

/// `max_options_per_poll`, lowered to this for the clause below.
pub const LOWERED_OPTION_LIMIT: u32 = 3;

pub async fn options_per_poll_are_bounded(conn: Conn) {
    let mut ids = Vec::new();
    for n in 0..LOWERED_OPTION_LIMIT {
        ids.push(add(&conn, "full", "alice", &format!("option {n}")).await);
    }
    let refused =
        apply(&conn, "full", "alice", PollCommand::AddOption { id: Uuid::new_v4(), label: "one more".into() });
    assert_error(refused.await, ErrorKind::Invalid, "too_many_options");
    let retried = apply(&conn, "full", "alice", PollCommand::AddOption { id: ids[0], label: "option 0".into() }).await;
    assert!(retried.is_ok(), "a retried add is no new option");
    apply(&conn, "full", "alice", PollCommand::RemoveOption { id: ids[0] }).await.unwrap();
    add(&conn, "full", "alice", "in its place").await;
}

#[macro_export]
macro_rules! poll_contract {
    ($make:path) => {
        $crate::poll_contract!(@tests $make;
            options_are_listed_newest_first_and_retries_are_idempotent,
            votes_are_per_user_and_a_repeated_vote_changes_nothing,
            a_retried_removal_answers_as_the_first,
            only_the_author_removes_and_removed_options_take_no_votes,
            subscribers_see_their_polls_events_in_order,
            options_name_who_added_and_last_changed_them,
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn labels_follow_the_configured_limit() {
            let mut settings = boardsync_testkit::default_domain_settings::<boardsync_poll::Poll>();
            settings.domain.max_label_chars = contract::RAISED_LABEL_LIMIT;
            contract::labels_follow_the_configured_limit($make(settings).await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn options_per_poll_are_bounded() {
            let mut settings = boardsync_testkit::default_domain_settings::<boardsync_poll::Poll>();
            settings.domain.max_options_per_poll = contract::LOWERED_OPTION_LIMIT;
            contract::options_per_poll_are_bounded($make(settings).await).await;
        }
    };
    (@tests $make:path; $($clause:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $clause() {
                contract::$clause($make(boardsync_testkit::default_domain_settings()).await).await;
            }
        )+
    };
}
