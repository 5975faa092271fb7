//! The contract every `Connection<Kanban>` honours, run against each adapter:
//! `kanban_contract!(make)` expands to one test per clause.

use std::sync::Arc;
use std::time::Duration;

use boardsync_core::{
    ActingUser, Connection, Delivery, DomainError, Durability, ErrorKind, EventStream, Page, ScopeKey,
};
use boardsync_kanban::{BoardItem, Kanban, KanbanCommand, KanbanEvent};
use futures::StreamExt;
use uuid::Uuid;

pub type Conn = Arc<dyn Connection<Kanban>>;

fn board() -> ScopeKey {
    ScopeKey::parse("roadmap").unwrap()
}

pub async fn run(conn: &Conn, command: KanbanCommand) -> Result<KanbanEvent, DomainError> {
    conn.apply(&board(), &ActingUser::member("alice"), command, Durability::Cache).await
}

async fn column(conn: &Conn, name: &str, after: Option<Uuid>, wip_limit: Option<u32>) -> Uuid {
    let id = Uuid::new_v4();
    run(conn, KanbanCommand::CreateColumn { id, name: name.into(), wip_limit, after }).await.expect("column created");
    id
}

async fn card(conn: &Conn, column: Uuid, title: &str, after: Option<Uuid>) -> Result<Uuid, DomainError> {
    let id = Uuid::new_v4();
    let command = KanbanCommand::CreateCard {
        id,
        column,
        title: title.into(),
        description: String::new(),
        assignees: vec!["bob".into()],
        labels: vec![],
        after,
    };
    run(conn, command).await.map(|_| id)
}

/// The board as `(column name, [card titles])`, in board order.
async fn layout(conn: &Conn) -> Vec<(String, Vec<String>)> {
    let items = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();
    let mut columns: Vec<(Uuid, String, Vec<String>)> = Vec::new();
    for item in items {
        match item {
            BoardItem::Column(c) => columns.push((c.id, c.name, Vec::new())),
            BoardItem::Card(card) => {
                let column =
                    columns.iter_mut().find(|(id, _, _)| *id == card.column).expect("cards follow their columns");
                column.2.push(card.title);
            }
        }
    }
    columns.into_iter().map(|(_, name, cards)| (name, cards)).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn assert_refused(result: Result<impl std::fmt::Debug, DomainError>, kind: ErrorKind, code: &str) {
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (kind, code), "{error}");
}

pub async fn columns_and_cards_are_placed_where_asked(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    column(&conn, "done", None, None).await;
    column(&conn, "doing", Some(todo), None).await;
    let first = card(&conn, todo, "first", None).await.unwrap();
    card(&conn, todo, "last", None).await.unwrap();
    card(&conn, todo, "second", Some(first)).await.unwrap();
    assert_eq!(
        layout(&conn).await,
        vec![
            ("todo".to_string(), strings(&["first", "second", "last"])),
            ("doing".to_string(), vec![]),
            ("done".to_string(), vec![]),
        ]
    );
}

pub async fn moves_reorder_within_and_across_columns_without_renumbering(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    let done = column(&conn, "done", None, None).await;
    let a = card(&conn, todo, "a", None).await.unwrap();
    let b = card(&conn, todo, "b", None).await.unwrap();
    let c = card(&conn, todo, "c", None).await.unwrap();
    let before = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();

    run(&conn, KanbanCommand::MoveCard { id: c, column: todo, after: None }).await.unwrap();
    run(&conn, KanbanCommand::MoveCard { id: a, column: done, after: None }).await.unwrap();
    run(&conn, KanbanCommand::ReorderColumn { id: done, after: None }).await.unwrap();

    assert_eq!(
        layout(&conn).await,
        vec![("done".to_string(), strings(&["a"])), ("todo".to_string(), strings(&["c", "b"]))]
    );
    let after = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();
    let version = |items: &[BoardItem], id: Uuid| {
        items.iter().find_map(|i| match i {
            BoardItem::Card(card) if card.id == id => Some((card.version, card.position.clone())),
            _ => None,
        })
    };
    assert_eq!(version(&before, b), version(&after, b), "the card that did not move was not renumbered");
}

pub async fn a_full_column_refuses_cards_and_unknown_targets_are_404(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    let wip = column(&conn, "wip", None, Some(1)).await;
    card(&conn, wip, "busy", None).await.unwrap();
    assert_refused(card(&conn, wip, "one too many", None).await, ErrorKind::Conflict, "column_full");
    let waiting = card(&conn, todo, "waiting", None).await.unwrap();
    assert_refused(
        run(&conn, KanbanCommand::MoveCard { id: waiting, column: wip, after: None }).await,
        ErrorKind::Conflict,
        "column_full",
    );
    run(&conn, KanbanCommand::SetWipLimit { id: wip, wip_limit: Some(2) }).await.unwrap();
    run(&conn, KanbanCommand::MoveCard { id: waiting, column: wip, after: None }).await.unwrap();

    let nowhere = Uuid::new_v4();
    assert_refused(card(&conn, nowhere, "lost", None).await, ErrorKind::NotFound, "column_not_found");
    assert_refused(
        run(&conn, KanbanCommand::MoveCard { id: waiting, column: nowhere, after: None }).await,
        ErrorKind::NotFound,
        "column_not_found",
    );
    assert_refused(
        run(
            &conn,
            KanbanCommand::EditCard {
                id: nowhere,
                title: Some("x".into()),
                description: None,
                assignees: None,
                labels: None,
            },
        )
        .await,
        ErrorKind::NotFound,
        "card_not_found",
    );
}

pub async fn deleting_a_column_with_cards_needs_force(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    card(&conn, todo, "pending", None).await.unwrap();
    assert_refused(
        run(&conn, KanbanCommand::DeleteColumn { id: todo, force: false }).await,
        ErrorKind::Conflict,
        "column_not_empty",
    );
    let deleted = run(&conn, KanbanCommand::DeleteColumn { id: todo, force: true }).await.unwrap();
    assert!(matches!(deleted, KanbanEvent::ColumnDeleted { column } if column.deleted));
    assert!(layout(&conn).await.is_empty());
}

pub async fn retries_are_idempotent_and_reused_ids_conflict(conn: Conn) {
    let id = Uuid::new_v4();
    let create = || KanbanCommand::CreateColumn { id, name: "todo".into(), wip_limit: None, after: None };
    let created = run(&conn, create()).await.unwrap();
    assert_eq!(run(&conn, create()).await.unwrap(), created, "a retry answers with the column as it is");
    assert_eq!(layout(&conn).await.len(), 1);
    let reused =
        run(&conn, KanbanCommand::CreateColumn { id, name: "other".into(), wip_limit: None, after: None }).await;
    assert_refused(reused, ErrorKind::Conflict, "id_conflict");
    let other_limit = KanbanCommand::CreateColumn { id, name: "todo".into(), wip_limit: Some(3), after: None };
    assert_refused(run(&conn, other_limit).await, ErrorKind::Conflict, "id_conflict");
    let by_another = run_as(&conn, ActingUser::member("bob"), create()).await;
    assert_refused(by_another, ErrorKind::Conflict, "id_conflict");

    let card_id = Uuid::new_v4();
    let create_card = |title: &str| KanbanCommand::CreateCard {
        id: card_id,
        column: id,
        title: title.into(),
        description: "why".into(),
        assignees: vec!["bob".into()],
        labels: vec![],
        after: None,
    };
    let card = run(&conn, create_card("task")).await.unwrap();
    assert_eq!(run(&conn, create_card("task")).await.unwrap(), card, "a retry answers with the card as it is");
    assert_refused(run(&conn, create_card("another task")).await, ErrorKind::Conflict, "id_conflict");
    assert_eq!(layout(&conn).await, vec![("todo".to_string(), strings(&["task"]))]);
}

/// Deleting a deleted card or column is a retry: it answers as the first delete did,
/// raises no version and tells no subscriber; an id that never existed stays 404.
pub async fn a_retried_delete_answers_as_the_first(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let todo = column(&conn, "todo", None, None).await;
    let task = card(&conn, todo, "task", None).await.unwrap();
    let gone = card(&conn, todo, "gone", None).await.unwrap();
    let card_deleted = run(&conn, KanbanCommand::DeleteCard { id: gone }).await.unwrap();
    let column_deleted = run(&conn, KanbanCommand::DeleteColumn { id: todo, force: true }).await.unwrap();
    expect_kinds(&mut events, &["column", "card", "card", "card deleted", "column deleted", "card deleted"]).await;

    assert_eq!(run(&conn, KanbanCommand::DeleteCard { id: gone }).await.unwrap(), card_deleted);
    let deleted_with_its_column = run(&conn, KanbanCommand::DeleteCard { id: task }).await.unwrap();
    assert!(matches!(&deleted_with_its_column, KanbanEvent::CardChanged { card } if card.deleted));
    assert_eq!(run(&conn, KanbanCommand::DeleteColumn { id: todo, force: true }).await.unwrap(), column_deleted);
    assert_eq!(run(&conn, KanbanCommand::DeleteColumn { id: todo, force: false }).await.unwrap(), column_deleted);
    let nowhere = Uuid::new_v4();
    assert_refused(run(&conn, KanbanCommand::DeleteCard { id: nowhere }).await, ErrorKind::NotFound, "card_not_found");
    assert_refused(
        run(&conn, KanbanCommand::DeleteColumn { id: nowhere, force: true }).await,
        ErrorKind::NotFound,
        "column_not_found",
    );
    next_is_the_marker(&conn, &mut events).await;
}

/// A rename to the name a column has, its own WIP limit, an edit to the values a card
/// has, and a reorder or move to where the item is change nothing: each answers with
/// the item as it is, the version stays, and subscribers hear nothing of them.
pub async fn commands_that_change_nothing_keep_the_version_and_tell_nobody(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let todo = column(&conn, "todo", None, Some(3)).await;
    let done = column(&conn, "done", Some(todo), None).await;
    let first = card(&conn, todo, "first", None).await.unwrap();
    let second = card(&conn, todo, "second", Some(first)).await.unwrap();
    expect_kinds(&mut events, &["column", "column", "card", "card"]).await;
    let before = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();
    let item = |id: Uuid| before.iter().find(|item| item.id() == id).cloned().unwrap();

    let no_ops = [
        (done, KanbanCommand::RenameColumn { id: done, name: "done".into() }),
        (todo, KanbanCommand::SetWipLimit { id: todo, wip_limit: Some(3) }),
        (done, KanbanCommand::ReorderColumn { id: done, after: Some(todo) }),
        (todo, KanbanCommand::ReorderColumn { id: todo, after: None }),
        (
            second,
            KanbanCommand::EditCard {
                id: second,
                title: Some("second".into()),
                description: None,
                assignees: Some(vec!["bob".into()]),
                labels: Some(vec![]),
            },
        ),
        (second, KanbanCommand::MoveCard { id: second, column: todo, after: Some(first) }),
        (first, KanbanCommand::MoveCard { id: first, column: todo, after: None }),
    ];
    for (id, command) in no_ops {
        let answer = run(&conn, command.clone()).await.unwrap();
        let answered = match answer {
            KanbanEvent::ColumnChanged { column } => BoardItem::Column(column),
            KanbanEvent::CardChanged { card } => BoardItem::Card(card),
            other => panic!("{command:?} answered {other:?}"),
        };
        assert_eq!(answered, item(id), "{command:?} answers with the item as it is");
    }
    let after = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();
    assert_eq!(after, before, "nothing changed, versions included");
    next_is_the_marker(&conn, &mut events).await;
}

fn kind_of(event: &KanbanEvent) -> &'static str {
    match event {
        KanbanEvent::ColumnChanged { .. } => "column",
        KanbanEvent::CardChanged { card } if card.deleted => "card deleted",
        KanbanEvent::CardChanged { .. } => "card",
        KanbanEvent::ColumnDeleted { .. } => "column deleted",
    }
}

async fn next(events: &mut EventStream<KanbanEvent>) -> KanbanEvent {
    match tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap() {
        Delivery::Event(event) => event,
        Delivery::Lagged => panic!("no lag expected"),
    }
}

/// The next events' kinds are `kinds`.
async fn expect_kinds(events: &mut EventStream<KanbanEvent>, kinds: &[&str]) {
    for kind in kinds {
        let event = next(events).await;
        assert_eq!(kind_of(&event), *kind, "{event:?}");
    }
}

/// Creates a marker column and checks that it is the next event: a command that
/// changed nothing before it told subscribers nothing.
async fn next_is_the_marker(conn: &Conn, events: &mut EventStream<KanbanEvent>) {
    let marker = column(conn, "marker", None, None).await;
    match next(events).await {
        KanbanEvent::ColumnChanged { column } if column.id == marker => {}
        other => panic!("a command that changed nothing told subscribers: {other:?}"),
    }
}

/// Columns and cards share one id space, across boards: an id in use anywhere is a
/// conflict, and the other board's item is neither changed nor shown.
pub async fn an_id_in_use_by_another_item_or_board_is_a_conflict(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    let task = card(&conn, todo, "task", None).await.unwrap();
    let card_on_column = KanbanCommand::CreateCard {
        id: todo,
        column: todo,
        title: "todo".into(),
        description: String::new(),
        assignees: vec![],
        labels: vec![],
        after: None,
    };
    assert_refused(run(&conn, card_on_column).await, ErrorKind::Conflict, "id_conflict");
    let column_on_card = KanbanCommand::CreateColumn { id: task, name: "task".into(), wip_limit: None, after: None };
    assert_refused(run(&conn, column_on_card).await, ErrorKind::Conflict, "id_conflict");

    let elsewhere = ScopeKey::parse("elsewhere").unwrap();
    let mut watching = conn.subscribe(&elsewhere).await.unwrap();
    let mine = Uuid::new_v4();
    let other_column = KanbanCommand::CreateColumn { id: mine, name: "mine".into(), wip_limit: None, after: None };
    conn.apply(&elsewhere, &ActingUser::member("mallory"), other_column, Durability::Cache).await.unwrap();
    let takeover = KanbanCommand::CreateCard {
        id: task,
        column: mine,
        title: "task".into(),
        description: String::new(),
        assignees: vec!["bob".into()],
        labels: vec![],
        after: None,
    };
    let refused = conn.apply(&elsewhere, &ActingUser::member("mallory"), takeover, Durability::Cache).await;
    assert_refused(refused, ErrorKind::Conflict, "id_conflict");
    let seen = tokio::time::timeout(Duration::from_millis(300), async {
        let mut seen = Vec::new();
        while let Some(Delivery::Event(event)) = watching.next().await {
            seen.push(event);
        }
        seen
    })
    .await
    .unwrap_or_default();
    assert!(
        seen.iter().all(|event| !matches!(event, KanbanEvent::CardChanged { card } if card.id == task)),
        "{seen:?}"
    );
}

pub async fn concurrent_moves_converge_to_one_order(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    let done = column(&conn, "done", None, None).await;
    let anchor = card(&conn, done, "anchor", None).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(card(&conn, todo, &format!("card {i}"), None).await.unwrap());
    }
    // Everyone moves their card right after the same anchor at once.
    let moves = ids.iter().map(|id| run(&conn, KanbanCommand::MoveCard { id: *id, column: done, after: Some(anchor) }));
    for result in futures::future::join_all(moves).await {
        result.unwrap();
    }
    let first = layout(&conn).await;
    assert_eq!(first[1].1.len(), 13, "every card once: {first:?}");
    assert_eq!(first[1].1[0], "anchor");
    assert!(first[0].1.is_empty());
    assert_eq!(layout(&conn).await, first, "the order is stable");
}

pub async fn subscribers_see_their_boards_events(conn: Conn) {
    let mut events = conn.subscribe(&board()).await.unwrap();
    let todo = column(&conn, "todo", None, None).await;
    let id = card(&conn, todo, "task", None).await.unwrap();
    run(&conn, KanbanCommand::DeleteCard { id }).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap();
        let Delivery::Event(event) = delivery else { panic!("no lag expected") };
        seen.push(match event {
            KanbanEvent::ColumnChanged { .. } => "column",
            KanbanEvent::CardChanged { card } if card.deleted => "card deleted",
            KanbanEvent::CardChanged { .. } => "card",
            KanbanEvent::ColumnDeleted { .. } => "column deleted",
        });
    }
    assert_eq!(seen, ["column", "card", "card deleted"]);
}

async fn run_as(conn: &Conn, actor: ActingUser, command: KanbanCommand) -> Result<KanbanEvent, DomainError> {
    conn.apply(&board(), &actor, command, Durability::Cache).await
}

fn card_of(event: KanbanEvent) -> boardsync_kanban::Card {
    match event {
        KanbanEvent::CardChanged { card } => card,
        other => panic!("expected a card, got {other:?}"),
    }
}

/// Cards and columns name who created and last changed them; only a card's creator
/// or the board's owners delete it.
pub async fn cards_name_their_authors_and_only_creators_or_owners_delete_them(conn: Conn) {
    let todo = column(&conn, "todo", None, None).await;
    let id = Uuid::new_v4();
    let create = KanbanCommand::CreateCard {
        id,
        column: todo,
        title: "bob's".into(),
        description: String::new(),
        assignees: vec![],
        labels: vec![],
        after: None,
    };
    let created = card_of(run_as(&conn, ActingUser::member("bob"), create).await.unwrap());
    assert_eq!((created.created_by.as_str(), created.updated_by.as_str()), ("bob", "bob"));
    let edit =
        KanbanCommand::EditCard { id, title: Some("edited".into()), description: None, assignees: None, labels: None };
    let edited = card_of(run_as(&conn, ActingUser::member("carol"), edit).await.unwrap());
    assert_eq!((edited.created_by.as_str(), edited.updated_by.as_str()), ("bob", "carol"));

    let refused = run_as(&conn, ActingUser::member("carol"), KanbanCommand::DeleteCard { id }).await.unwrap_err();
    assert_eq!((refused.kind, refused.code.as_ref()), (ErrorKind::Forbidden, "not_creator"));
    // Nor by deleting its column.
    let force = KanbanCommand::DeleteColumn { id: todo, force: true };
    let refused = run_as(&conn, ActingUser::member("carol"), force).await.unwrap_err();
    assert_eq!((refused.kind, refused.code.as_ref()), (ErrorKind::Forbidden, "not_creator"));
    let deleted = card_of(run_as(&conn, ActingUser::owner("olga"), KanbanCommand::DeleteCard { id }).await.unwrap());
    assert!(deleted.deleted && deleted.updated_by == "olga", "the board's owner deletes anyone's card");

    let mine = card(&conn, todo, "alice's", None).await.unwrap();
    run(&conn, KanbanCommand::DeleteCard { id: mine }).await.expect("its creator deletes it");
    let columns = conn.snapshot(&board(), Page { limit: 500, before: None }).await.unwrap();
    let BoardItem::Column(todo) = &columns[0] else { panic!("a column first") };
    assert_eq!(todo.created_by, "alice");
}

/// The default `max_columns_per_board` (50) holds on both adapters.
pub async fn columns_per_board_are_bounded(conn: Conn) {
    for n in 0..50 {
        column(&conn, &format!("c{n}"), None, None).await;
    }
    let one_more =
        KanbanCommand::CreateColumn { id: Uuid::new_v4(), name: "51st".into(), wip_limit: None, after: None };
    let refused = run(&conn, one_more).await.unwrap_err();
    assert_eq!((refused.kind, refused.code.as_ref()), (ErrorKind::Invalid, "too_many_columns"));
}

#[macro_export]
macro_rules! kanban_contract {
    ($make:path) => {
        $crate::kanban_contract!(@tests $make;
            columns_and_cards_are_placed_where_asked,
            moves_reorder_within_and_across_columns_without_renumbering,
            a_full_column_refuses_cards_and_unknown_targets_are_404,
            deleting_a_column_with_cards_needs_force,
            retries_are_idempotent_and_reused_ids_conflict,
            a_retried_delete_answers_as_the_first,
            commands_that_change_nothing_keep_the_version_and_tell_nobody,
            an_id_in_use_by_another_item_or_board_is_a_conflict,
            concurrent_moves_converge_to_one_order,
            subscribers_see_their_boards_events,
            cards_name_their_authors_and_only_creators_or_owners_delete_them,
            columns_per_board_are_bounded,
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
