//! Polls in PostgreSQL: the PostgreSQL adapter's SQL, and what warm-up reads and the
//! outbox writes for the cache adapter.

use std::collections::HashMap;

use async_trait::async_trait;
use boardsync_core::pg_adapter::{Applied, PostgresBinding};
use boardsync_core::{ActingUser, DomainError, Page, ScopeKey, UserId};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Poll, PollCommand, PollEvent, PollOption, PollSettings};
use crate::rules::{
    changes_nothing, check_room_for_option, id_conflict, is_same_add, not_author, option_not_found, OptionView,
};

#[derive(sqlx::FromRow)]
struct OptionRow {
    id: Uuid,
    poll: String,
    label: String,
    author: String,
    updated_by: String,
    created_at: DateTime<Utc>,
    removed: bool,
    version: i64,
}

const COLUMNS: &str = "id, poll, label, author, updated_by, created_at, removed, version";

fn not_found(id: Uuid) -> DomainError {
    option_not_found(&id.to_string()).into()
}

/// Options with their voters, in the order the rows came.
async fn with_voters(db: &mut PgConnection, rows: Vec<OptionRow>) -> Result<Vec<PollOption>, DomainError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let votes: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT option_id, user_id FROM poll_votes WHERE option_id = ANY($1) ORDER BY position")
            .bind(&ids)
            .fetch_all(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?;
    let mut voters: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (id, user) in votes {
        voters.entry(id).or_default().push(user);
    }
    Ok(rows
        .into_iter()
        .map(|r| PollOption {
            voters: voters.remove(&r.id).unwrap_or_default(),
            id: r.id,
            poll: r.poll,
            label: r.label,
            author: r.author,
            updated_by: r.updated_by,
            created_at: r.created_at,
            removed: r.removed,
            version: r.version.max(0) as u64,
        })
        .collect())
}

/// A poll's options, newest first: at most `limit`, older than option `before`,
/// created no earlier than `since`.
pub(crate) async fn load_options(
    db: &mut PgConnection,
    poll: &ScopeKey,
    limit: i64,
    before: Option<Uuid>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<PollOption>, DomainError> {
    let rows: Vec<OptionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM poll_options WHERE poll = $1
           AND ($2::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM poll_options WHERE id = $2))
           AND ($4::timestamptz IS NULL OR created_at >= $4)
         ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
    .bind(poll.as_str())
    .bind(before)
    .bind(limit)
    .bind(since)
    .fetch_all(&mut *db)
    .await
    .map_err(DomainError::from_sqlx)?;
    with_voters(db, rows).await
}

async fn load(db: &mut PgConnection, id: Uuid) -> Result<PollOption, DomainError> {
    let row: OptionRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM poll_options WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?
        .ok_or_else(|| not_found(id))?;
    Ok(with_voters(db, vec![row]).await?.remove(0))
}

/// The options of `ids` that PostgreSQL has.
pub(crate) async fn load_some(db: &mut PgConnection, ids: Vec<Uuid>) -> Result<Vec<PollOption>, DomainError> {
    let rows: Vec<OptionRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM poll_options WHERE id = ANY($1)"))
        .bind(&ids)
        .fetch_all(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    with_voters(db, rows).await
}

/// Option `id` of `poll` (removed or not) with its voters, locked for the rest of the
/// transaction.
async fn lock(db: &mut PgConnection, poll: &ScopeKey, id: Uuid) -> Result<PollOption, DomainError> {
    let row: OptionRow =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM poll_options WHERE id = $1 AND poll = $2 FOR UPDATE"))
            .bind(id)
            .bind(poll.as_str())
            .fetch_optional(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?
            .ok_or_else(|| not_found(id))?;
    Ok(with_voters(db, vec![row]).await?.remove(0))
}

/// An option as the shared retry rules see it.
fn view(option: &PollOption) -> OptionView<'_> {
    OptionView {
        poll: &option.poll,
        author: &option.author,
        label: &option.label,
        removed: option.removed,
        voters: &option.voters,
    }
}

async fn execute(db: &mut PgConnection, sql: &str, id: Uuid, user: &str) -> Result<(), DomainError> {
    sqlx::query(sql).bind(id).bind(user).execute(&mut *db).await.map_err(DomainError::from_sqlx)?;
    Ok(())
}

const BUMP: &str = "UPDATE poll_options SET version = version + 1, updated_by = $2 WHERE id = $1";
const VOTE: &str = "INSERT INTO poll_votes (option_id, user_id, position)
    SELECT $1, $2, COALESCE(max(position), 0) + 1 FROM poll_votes WHERE option_id = $1 ON CONFLICT DO NOTHING";
const UNVOTE: &str = "DELETE FROM poll_votes WHERE option_id = $1 AND user_id = $2";
const REMOVE: &str = "UPDATE poll_options SET removed = true WHERE id = $1 AND author = $2";

/// Applies `command`; returns whether it wrote anything (a command that changes
/// nothing writes nothing).
async fn apply_command(
    db: &mut PgConnection,
    poll: &ScopeKey,
    user: &UserId,
    command: &PollCommand,
) -> Result<bool, DomainError> {
    let id = command.option_id();
    if !matches!(command, PollCommand::AddOption { .. }) {
        let option = lock(db, poll, id).await?;
        // A removed option takes nothing but a removal again (which changes nothing).
        let removing = matches!(command, PollCommand::RemoveOption { .. });
        if option.removed && !removing {
            return Err(not_found(id));
        }
        if removing && option.author != user.as_str() {
            return Err(not_author().into());
        }
        if changes_nothing(command, &view(&option), user.as_str()) {
            return Ok(false);
        }
    }
    match command {
        PollCommand::AddOption { label, .. } => {
            let inserted = sqlx::query(
                "INSERT INTO poll_options (id, poll, label, author, updated_by, created_at, version)
                 VALUES ($1, $2, $3, $4, $4, now(), 1) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(poll.as_str())
            .bind(label)
            .bind(user.as_str())
            .execute(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?
            .rows_affected();
            if inserted == 1 {
                return Ok(true);
            }
            if is_same_add(&view(&load(db, id).await?), poll.as_str(), user.as_str(), label) {
                return Ok(false);
            }
            return Err(id_conflict(&id.to_string()).into());
        }
        PollCommand::Vote { .. } => execute(db, VOTE, id, user.as_str()).await?,
        PollCommand::Unvote { .. } => execute(db, UNVOTE, id, user.as_str()).await?,
        PollCommand::RemoveOption { .. } => {
            execute(db, REMOVE, id, user.as_str()).await?;
            sqlx::query("DELETE FROM poll_votes WHERE option_id = $1")
                .bind(id)
                .execute(&mut *db)
                .await
                .map_err(DomainError::from_sqlx)?;
        }
    }
    execute(db, BUMP, id, user.as_str()).await?;
    Ok(true)
}

/// Writes options' full states (from the cache's outbox) unless PostgreSQL already
/// has the same or a newer version; voters are replaced with the state's.
pub(crate) async fn persist_states(db: &mut PgConnection, states: &[PollOption]) -> Result<usize, DomainError> {
    let mut written = 0;
    for option in states {
        let applied = sqlx::query(
            "INSERT INTO poll_options (id, poll, label, author, created_at, removed, version, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label, removed = EXCLUDED.removed, version = EXCLUDED.version,
                 updated_by = EXCLUDED.updated_by
             WHERE poll_options.version < EXCLUDED.version
                 AND poll_options.poll = EXCLUDED.poll AND poll_options.author = EXCLUDED.author",
        )
        .bind(option.id)
        .bind(&option.poll)
        .bind(&option.label)
        .bind(&option.author)
        .bind(option.created_at)
        .bind(option.removed)
        .bind(option.version as i64)
        .bind(&option.updated_by)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?
        .rows_affected();
        if applied == 0 {
            continue;
        }
        written += 1;
        sqlx::query("DELETE FROM poll_votes WHERE option_id = $1")
            .bind(option.id)
            .execute(&mut *db)
            .await
            .map_err(DomainError::from_sqlx)?;
        sqlx::query(
            "INSERT INTO poll_votes (option_id, user_id, position)
             SELECT $1, voter, position FROM unnest($2::text[]) WITH ORDINALITY AS v(voter, position)",
        )
        .bind(option.id)
        .bind(&option.voters)
        .execute(&mut *db)
        .await
        .map_err(DomainError::from_sqlx)?;
    }
    Ok(written)
}

#[async_trait]
impl PostgresBinding for Poll {
    async fn page(db: &mut PgConnection, poll: &ScopeKey, page: Page) -> Result<Vec<PollOption>, DomainError> {
        let before = match page.before.as_deref() {
            Some(cursor) => Some(Uuid::parse_str(cursor).map_err(|_| {
                DomainError::bad_request("invalid_cursor", format!("before={cursor:?} is not an option id"))
            })?),
            None => None,
        };
        load_options(db, poll, i64::from(page.limit), before, None).await
    }

    async fn apply_in(
        tx: &mut PgConnection,
        settings: &PollSettings,
        poll: &ScopeKey,
        actor: &ActingUser,
        command: PollCommand,
    ) -> Result<Applied<PollEvent>, DomainError> {
        let user = &actor.user;
        if let PollCommand::AddOption { id, .. } = &command {
            // Serialises adds per poll, so the count holds until commit.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('poll:' || $1))")
                .bind(poll.as_str())
                .execute(&mut *tx)
                .await
                .map_err(DomainError::from_sqlx)?;
            let (live, exists): (i64, bool) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM poll_options WHERE poll = $1 AND NOT removed),
                        EXISTS (SELECT 1 FROM poll_options WHERE id = $2)",
            )
            .bind(poll.as_str())
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
            if !exists {
                check_room_for_option(live as usize, settings)?;
            }
        }
        let wrote = apply_command(tx, poll, user, &command).await?;
        let event = PollEvent::of(&command, user.as_str(), load(tx, command.option_id()).await?);
        Ok(if wrote { Applied::one(event) } else { Applied::unchanged(event) })
    }

    /// Options and their votes (which cascade).
    async fn purge(tx: &mut PgConnection, scope: &ScopeKey) -> Result<u64, DomainError> {
        let deleted = sqlx::query("DELETE FROM poll_options WHERE poll = $1")
            .bind(scope.as_str())
            .execute(&mut *tx)
            .await
            .map_err(DomainError::from_sqlx)?;
        Ok(deleted.rows_affected())
    }

    async fn stored(db: &mut PgConnection, ids: &[String]) -> Result<Vec<PollOption>, DomainError> {
        load_some(db, boardsync_core::pg_adapter::uuids(ids)).await
    }
    fn changed_outside(option: PollOption, new: bool) -> PollEvent {
        match (new, option.removed) {
            (_, true) => PollEvent::OptionRemoved { option },
            (true, false) => PollEvent::OptionAdded { option },
            (false, false) => PollEvent::OptionChanged { option },
        }
    }
}
