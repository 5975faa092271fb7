//! The contract every `Connection<Whiteboard>` honours, run against each adapter:
//! `whiteboard_contract!(make)` expands to one test per clause.

use std::sync::Arc;
use std::time::Duration;

use boardsync_core::{
    ActingUser, Connection, Delivery, DomainError, Durability, ErrorKind, EventStream, Page, ScopeKey,
};
use boardsync_whiteboard::rules::Position;
use boardsync_whiteboard::{Element, Whiteboard, WhiteboardCommand, WhiteboardEvent};
use futures::StreamExt;
use uuid::Uuid;

pub type Conn = Arc<dyn Connection<Whiteboard>>;

fn board() -> ScopeKey {
    ScopeKey::parse("sketch").unwrap()
}

pub async fn run(conn: &Conn, command: WhiteboardCommand) -> Result<WhiteboardEvent, DomainError> {
    conn.apply(&board(), &ActingUser::member("alice"), command, Durability::Cache).await
}

fn add(id: Uuid, kind: &str) -> WhiteboardCommand {
    WhiteboardCommand::Add {
        id,
        kind: kind.into(),
        x: 1.0,
        y: 2.0,
        width: 10.0,
        height: 20.0,
        rotation: 0.0,
        style: "{}".into(),
        points: if kind == "stroke" { vec![0.0, 0.0, 1.5, 2.5] } else { vec![] },
    }
}

fn move_to(ids: &[Uuid], x: f64, y: f64) -> WhiteboardCommand {
    WhiteboardCommand::Move { to: ids.iter().map(|&id| Position { id, x, y }).collect() }
}

async fn element(conn: &Conn, kind: &str) -> Uuid {
    let id = Uuid::new_v4();
    run(conn, add(id, kind)).await.expect("element added");
    id
}

async fn elements(conn: &Conn) -> Vec<Element> {
    conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap()
}

async fn order(conn: &Conn) -> Vec<Uuid> {
    elements(conn).await.iter().map(|e| e.id).collect()
}

fn update_x(id: Uuid, x: f64) -> WhiteboardCommand {
    WhiteboardCommand::Update {
        id,
        x: Some(x),
        y: None,
        width: None,
        height: None,
        rotation: None,
        style: None,
        points: None,
        locked: None,
    }
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, DomainError>, kind: ErrorKind, code: &str) {
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (kind, code), "{error}");
}

pub async fn elements_are_layered_and_change_layers(conn: Conn) {
    let a = element(&conn, "rect").await;
    let b = element(&conn, "ellipse").await;
    let c = element(&conn, "stroke").await;
    assert_eq!(order(&conn).await, [a, b, c], "new elements go on top");
    run(&conn, WhiteboardCommand::Reorder { id: a, above: Some(b) }).await.unwrap();
    assert_eq!(order(&conn).await, [b, a, c]);
    run(&conn, WhiteboardCommand::Reorder { id: c, above: Some(b) }).await.unwrap();
    assert_eq!(order(&conn).await, [b, c, a]);
    run(&conn, WhiteboardCommand::Reorder { id: b, above: None }).await.unwrap();
    assert_eq!(order(&conn).await, [b, c, a], "the back element stays at the back");
    assert_eq!(elements(&conn).await[1].points, vec![0.0, 0.0, 1.5, 2.5]);
}

pub async fn updates_and_moves_write_new_versions_all_or_nothing(conn: Conn) {
    let a = element(&conn, "rect").await;
    let b = element(&conn, "text").await;
    let style = r#"{"fill":"red"}"#;
    let updated = run(
        &conn,
        WhiteboardCommand::Update {
            id: a,
            x: None,
            y: None,
            width: Some(50.0),
            height: None,
            rotation: Some(0.5),
            style: Some(style.into()),
            points: None,
            locked: None,
        },
    )
    .await
    .unwrap();
    let element = &updated.elements()[0];
    assert_eq!((element.width, element.rotation, element.style.as_str(), element.version), (50.0, 0.5, style, 2));

    let moved = run(&conn, move_to(&[a, b], 11.0, 0.0)).await.unwrap();
    assert_eq!(moved.elements().len(), 2);
    let now = elements(&conn).await;
    assert!(now.iter().all(|e| e.x == 11.0 && e.y == 0.0), "{now:?}");

    let unknown = Uuid::new_v4();
    assert_refused(run(&conn, move_to(&[a, unknown], 1.0, 1.0)).await, ErrorKind::NotFound, "element_not_found");
    assert!(elements(&conn).await.iter().all(|e| e.x == 11.0), "a refused move moves nothing");
}

pub async fn deleted_elements_are_gone_and_unknown_ones_are_404(conn: Conn) {
    let a = element(&conn, "rect").await;
    run(&conn, WhiteboardCommand::Delete { id: a }).await.unwrap();
    assert!(elements(&conn).await.is_empty());
    assert_refused(run(&conn, update_x(a, 3.0)).await, ErrorKind::NotFound, "element_not_found");
    assert_refused(
        run(&conn, WhiteboardCommand::Reorder { id: Uuid::new_v4(), above: None }).await,
        ErrorKind::NotFound,
        "element_not_found",
    );
}

/// A command retried after a timeout whose write had gone through (the caller cannot
/// tell) must not apply twice: moves and layer changes name where, not how far.
pub async fn a_retried_move_or_reorder_lands_in_the_same_place(conn: Conn) {
    let a = element(&conn, "rect").await;
    let b = element(&conn, "rect").await;
    let c = element(&conn, "rect").await;
    for _ in 0..2 {
        run(&conn, move_to(&[a], 5.0, 7.0)).await.unwrap();
        run(&conn, WhiteboardCommand::Reorder { id: a, above: Some(b) }).await.unwrap();
    }
    let now = elements(&conn).await;
    let moved = now.iter().find(|e| e.id == a).unwrap();
    assert_eq!((moved.x, moved.y), (5.0, 7.0));
    assert_eq!(order(&conn).await, [b, a, c]);
    assert_refused(
        run(&conn, WhiteboardCommand::Reorder { id: a, above: Some(Uuid::new_v4()) }).await,
        ErrorKind::NotFound,
        "element_not_found",
    );
}

pub async fn retries_are_idempotent_and_reused_ids_conflict(conn: Conn) {
    let id = Uuid::new_v4();
    let added = run(&conn, add(id, "rect")).await.unwrap();
    assert_eq!(run(&conn, add(id, "rect")).await.unwrap(), added, "a retry answers with the element as it is");
    assert_eq!(elements(&conn).await.len(), 1);
    assert_refused(run(&conn, add(id, "ellipse")).await, ErrorKind::Conflict, "id_conflict");
    let mut elsewhere = add(id, "rect");
    if let WhiteboardCommand::Add { x, .. } = &mut elsewhere {
        *x = 99.0;
    }
    assert_refused(run(&conn, elsewhere).await, ErrorKind::Conflict, "id_conflict");
    let by_another = conn.apply(&board(), &ActingUser::member("bob"), add(id, "rect"), Durability::Cache).await;
    assert_refused(by_another, ErrorKind::Conflict, "id_conflict");
    assert_eq!(elements(&conn).await[0].version, 1, "a retried add changes nothing");
}

/// Deleting a deleted element is a retry: it answers as the first delete did, raises
/// no version and tells no subscriber; an id that never existed stays 404.
pub async fn a_retried_delete_answers_as_the_first(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let a = element(&conn, "rect").await;
    let first = run(&conn, WhiteboardCommand::Delete { id: a }).await.unwrap();
    expect_versions(&mut events, &[(a, 1), (a, 2)]).await;
    let retried = run(&conn, WhiteboardCommand::Delete { id: a }).await.unwrap();
    assert_eq!(retried, first, "the same deleted state, at the same version");
    assert!(retried.elements()[0].deleted);
    assert_refused(
        run(&conn, WhiteboardCommand::Delete { id: Uuid::new_v4() }).await,
        ErrorKind::NotFound,
        "element_not_found",
    );
    next_is_the_marker(&conn, &mut events).await;
}

/// An update to the values an element has, a move to where elements are and a
/// reorder to where one is change nothing: each answers with the elements as they
/// are, the versions stay, and subscribers hear nothing of them.
pub async fn commands_that_change_nothing_keep_the_version_and_tell_nobody(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let a = element(&conn, "rect").await;
    let b = element(&conn, "stroke").await;
    expect_versions(&mut events, &[(a, 1), (b, 1)]).await;
    let before = elements(&conn).await;
    let state = |id: Uuid| before.iter().find(|e| e.id == id).cloned().unwrap();
    let same_values = WhiteboardCommand::Update {
        id: b,
        x: Some(1.0),
        y: Some(2.0),
        width: Some(10.0),
        height: None,
        rotation: Some(0.0),
        style: Some("{}".into()),
        points: Some(vec![0.0, 0.0, 1.5, 2.5]),
        locked: Some(false),
    };
    let no_ops = [
        (vec![b], same_values),
        (vec![a, b], move_to(&[a, b, a], 1.0, 2.0)),
        (vec![b], WhiteboardCommand::Reorder { id: b, above: Some(a) }),
        (vec![a], WhiteboardCommand::Reorder { id: a, above: None }),
    ];
    for (named, command) in no_ops {
        let answer = run(&conn, command.clone()).await.unwrap();
        let expected: Vec<Element> = named.into_iter().map(state).collect();
        assert_eq!(answer.elements(), expected.as_slice(), "{command:?} answers with the elements as they are");
    }
    assert_eq!(elements(&conn).await, before, "nothing changed, versions included");
    next_is_the_marker(&conn, &mut events).await;
}

async fn next(events: &mut EventStream<WhiteboardEvent>) -> WhiteboardEvent {
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap() {
        Delivery::Event(event) => event,
        Delivery::Lagged => panic!("no lag expected"),
    }
}

/// The next events carry exactly these (element, version) pairs, in this order.
async fn expect_versions(events: &mut EventStream<WhiteboardEvent>, expected: &[(Uuid, u64)]) {
    let mut seen: Vec<(Uuid, u64)> = Vec::new();
    while seen.len() < expected.len() {
        seen.extend(next(events).await.elements().iter().map(|e| (e.id, e.version)));
    }
    assert_eq!(seen, expected);
}

/// Adds a marker element and checks that it is the next event: a command that
/// changed nothing before it told subscribers nothing.
async fn next_is_the_marker(conn: &Conn, events: &mut EventStream<WhiteboardEvent>) {
    let marker = element(conn, "rect").await;
    let event = next(events).await;
    assert!(
        event.elements().len() == 1 && event.elements()[0].id == marker,
        "a command that changed nothing told subscribers: {event:?}"
    );
}

/// An element id of another board is a conflict: the element is neither answered nor
/// shown in this board.
pub async fn an_element_id_of_another_board_is_a_conflict(conn: Conn) {
    let theirs = element(&conn, "rect").await;
    let elsewhere = ScopeKey::parse("elsewhere").unwrap();
    let refused = conn.apply(&elsewhere, &ActingUser::member("mallory"), add(theirs, "rect"), Durability::Cache).await;
    assert_refused(refused, ErrorKind::Conflict, "id_conflict");
    let listed = conn.snapshot(&elsewhere, Page { limit: 50, before: None }).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

pub async fn concurrent_updates_to_one_element_end_with_the_last_writer(conn: Conn) {
    let a = element(&conn, "rect").await;
    // Each to an x the element never had: an update to the x it has would change nothing.
    let updates = (0..10).map(|i| run(&conn, update_x(a, 100.0 + i as f64)));
    let replies: Vec<WhiteboardEvent> =
        futures::future::join_all(updates).await.into_iter().map(Result::unwrap).collect();
    // The reply with the highest version is the last write; the stored state is it.
    let last = replies.iter().map(|r| r.elements()[0].clone()).max_by_key(|e| e.version).unwrap();
    assert_eq!(last.version, 11);
    let stored = elements(&conn).await.remove(0);
    assert_eq!((stored.x, stored.version), (last.x, last.version));
}

pub async fn subscribers_see_every_change(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let a = element(&conn, "rect").await;
    let b = element(&conn, "rect").await;
    run(&conn, move_to(&[a, b], 1.0, 1.0)).await.unwrap();
    run(&conn, WhiteboardCommand::Delete { id: a }).await.unwrap();
    let mut seen: Vec<(Uuid, u64)> = Vec::new();
    while seen.len() < 5 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap();
        let Delivery::Event(event) = delivery else { panic!("no lag expected") };
        seen.extend(event.elements().iter().map(|e| (e.id, e.version)));
    }
    // Each element's changes arrive in order; the elements of one write (the move)
    // may come in either order.
    let versions = |id: Uuid| seen.iter().filter(|(e, _)| *e == id).map(|(_, v)| *v).collect::<Vec<_>>();
    assert_eq!((versions(a), versions(b)), (vec![1, 2, 3], vec![1, 2]));
}

fn lock(id: Uuid, locked: bool) -> WhiteboardCommand {
    WhiteboardCommand::Update {
        id,
        x: None,
        y: None,
        width: None,
        height: None,
        rotation: None,
        style: None,
        points: None,
        locked: Some(locked),
    }
}

/// Elements name who created and last changed them; an element its creator locked
/// is changed only by them and the board's owners.
pub async fn a_locked_element_is_changed_only_by_its_creator_or_the_boards_owners(conn: Conn) {
    let as_ = |who: &str| ActingUser::member(who);
    let apply = |actor: ActingUser, command| {
        let conn = conn.clone();
        async move { conn.apply(&board(), &actor, command, Durability::Cache).await }
    };
    let id = element(&conn, "rect").await;
    let first = |event: WhiteboardEvent| event.elements()[0].clone();
    let moved = first(apply(as_("bob"), move_to(&[id], 5.0, 5.0)).await.unwrap());
    assert_eq!((moved.created_by.as_str(), moved.updated_by.as_str()), ("alice", "bob"), "unlocked: anyone moves it");

    let refused = apply(as_("bob"), lock(id, true)).await.unwrap_err();
    assert_eq!(
        (refused.kind, refused.code.as_ref()),
        (ErrorKind::Forbidden, "element_locked"),
        "only its creator locks it"
    );
    let locked = first(apply(as_("alice"), lock(id, true)).await.unwrap());
    assert!(locked.locked);
    for command in [move_to(&[id], 9.0, 9.0), update_x(id, 1.0), WhiteboardCommand::Delete { id }, lock(id, false)] {
        let refused = apply(as_("bob"), command).await.unwrap_err();
        assert_eq!((refused.kind, refused.code.as_ref()), (ErrorKind::Forbidden, "element_locked"));
    }
    let owner_moved = first(apply(ActingUser::owner("olga"), move_to(&[id], 7.0, 7.0)).await.unwrap());
    assert_eq!((owner_moved.x, owner_moved.updated_by.as_str()), (7.0, "olga"), "the board's owner moves it");
    apply(as_("alice"), move_to(&[id], 8.0, 8.0)).await.expect("its creator moves it");
    let unlocked = first(apply(as_("alice"), lock(id, false)).await.unwrap());
    assert!(!unlocked.locked);
    apply(as_("bob"), move_to(&[id], 1.0, 1.0)).await.expect("unlocked again");
}

#[macro_export]
macro_rules! whiteboard_contract {
    ($make:path) => {
        $crate::whiteboard_contract!(@tests $make;
            elements_are_layered_and_change_layers,
            updates_and_moves_write_new_versions_all_or_nothing,
            deleted_elements_are_gone_and_unknown_ones_are_404,
            retries_are_idempotent_and_reused_ids_conflict,
            a_retried_delete_answers_as_the_first,
            commands_that_change_nothing_keep_the_version_and_tell_nobody,
            an_element_id_of_another_board_is_a_conflict,
            a_retried_move_or_reorder_lands_in_the_same_place,
            concurrent_updates_to_one_element_end_with_the_last_writer,
            subscribers_see_every_change,
            a_locked_element_is_changed_only_by_its_creator_or_the_boards_owners,
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
