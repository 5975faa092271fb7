//! SpacetimeDB module for the poll domain (the worked example of
//! `docs/adding-a-domain.md`): the warm cache in front of PostgreSQL.
//!
//! - `poll_option`: one row per option of a poll, its voters embedded.
//! - `sync_outbox` (private), `owner` (private), `cache_epoch`: the same contract as
//!   every boardsync module (see `modules/chat`): each write appends the entity's full
//!   state to the outbox in the same transaction; only the backend may write; a new
//!   epoch means a recreated database.
//!
//! Every reducer takes the caller's `request_id` first; errors are `kind|code|message`.

use spacetimedb::{reducer, table, Identity, ReducerContext, Table, Timestamp};

#[table(name = owner)]
pub struct Owner {
    #[primary_key]
    pub id: u8,
    pub identity: Identity,
}

#[table(name = cache_epoch, public)]
pub struct CacheEpoch {
    #[primary_key]
    pub id: u8,
    pub epoch: u64,
}

#[table(name = poll_option, public)]
#[derive(Clone)]
pub struct PollOption {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub poll: String,
    pub label: String,
    pub author: String,
    pub created_at: Timestamp,
    pub removed: bool,
    pub voters: Vec<String>,
    pub version: u64,
}

#[table(name = sync_outbox)]
pub struct SyncOutbox {
    #[primary_key]
    #[auto_inc]
    pub seq: u64,
    #[index(btree)]
    pub entity: String,
    pub kind: String,
    pub payload: String,
    pub request_id: String,
    pub created_at: Timestamp,
}

/// Hard bound on a label; the backend applies the configured limit.
const MAX_LABEL_CHARS: usize = 1_000;

fn err(kind: &str, code: &str, message: impl std::fmt::Display) -> String {
    format!("{kind}|{code}|{message}")
}

fn require_owner(ctx: &ReducerContext) -> Result<(), String> {
    match ctx.db.owner().id().find(0) {
        Some(owner) if owner.identity == ctx.sender => Ok(()),
        _ => Err(err("forbidden", "not_owner", "only the backend may call this reducer")),
    }
}

#[reducer(init)]
pub fn init(ctx: &ReducerContext) {
    ctx.db.owner().insert(Owner { id: 0, identity: ctx.sender });
    ctx.db.cache_epoch().insert(CacheEpoch { id: 0, epoch: ctx.timestamp.to_micros_since_unix_epoch() as u64 });
}

fn find_live(ctx: &ReducerContext, poll: &str, id: &str) -> Result<PollOption, String> {
    match ctx.db.poll_option().id().find(id.to_string()) {
        Some(o) if !o.removed && o.poll == poll => Ok(o),
        _ => Err(err("not_found", "option_not_found", format!("option {id} not found"))),
    }
}

fn state_json(o: &PollOption) -> String {
    serde_json::json!({
        "id": o.id,
        "poll": o.poll,
        "label": o.label,
        "author": o.author,
        "created_at_micros": o.created_at.to_micros_since_unix_epoch(),
        "removed": o.removed,
        "voters": o.voters,
        "version": o.version,
    })
    .to_string()
}

fn append_outbox(ctx: &ReducerContext, kind: &str, request_id: String, o: &PollOption) {
    ctx.db.sync_outbox().insert(SyncOutbox {
        seq: 0,
        entity: o.id.clone(),
        kind: kind.to_string(),
        payload: state_json(o),
        request_id,
        created_at: ctx.timestamp,
    });
}

fn write(ctx: &ReducerContext, kind: &str, request_id: String, mut o: PollOption) {
    o.version += 1;
    let o = if ctx.db.poll_option().id().find(o.id.clone()).is_some() {
        ctx.db.poll_option().id().update(o)
    } else {
        ctx.db.poll_option().insert(o)
    };
    append_outbox(ctx, kind, request_id, &o);
}

#[reducer]
pub fn add_option(
    ctx: &ReducerContext,
    request_id: String,
    poll: String,
    id: String,
    author: String,
    label: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    if label.trim().is_empty() || label.chars().count() > MAX_LABEL_CHARS {
        return Err(err("invalid", "invalid_label", "the label is empty or too long"));
    }
    if let Some(existing) = ctx.db.poll_option().id().find(id.clone()) {
        if existing.poll == poll && existing.author == author && existing.label == label && !existing.removed {
            append_outbox(ctx, "add_option", request_id, &existing);
            return Ok(());
        }
        return Err(err("conflict", "id_conflict", format!("option id {id} is already used")));
    }
    let option = PollOption {
        id,
        poll,
        label,
        author,
        created_at: ctx.timestamp,
        removed: false,
        voters: Vec::new(),
        version: 0,
    };
    write(ctx, "add_option", request_id, option);
    Ok(())
}

#[reducer]
pub fn vote(ctx: &ReducerContext, request_id: String, poll: String, id: String, user: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut option = find_live(ctx, &poll, &id)?;
    if !option.voters.contains(&user) {
        option.voters.push(user);
    }
    write(ctx, "vote", request_id, option);
    Ok(())
}

#[reducer]
pub fn unvote(ctx: &ReducerContext, request_id: String, poll: String, id: String, user: String) -> Result<(), String> {
    require_owner(ctx)?;
    let mut option = find_live(ctx, &poll, &id)?;
    option.voters.retain(|v| v != &user);
    write(ctx, "unvote", request_id, option);
    Ok(())
}

#[reducer]
pub fn remove_option(
    ctx: &ReducerContext,
    request_id: String,
    poll: String,
    id: String,
    user: String,
) -> Result<(), String> {
    require_owner(ctx)?;
    let mut option = find_live(ctx, &poll, &id)?;
    if option.author != user {
        return Err(err("forbidden", "not_author", "only the option's author may remove it"));
    }
    option.removed = true;
    option.voters.clear();
    write(ctx, "remove_option", request_id, option);
    Ok(())
}

/// Warm-up: never touches a row with a pending outbox entry or a newer cached version.
#[reducer]
pub fn warm_options(ctx: &ReducerContext, request_id: String, rows: Vec<PollOption>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    for row in rows {
        if ctx.db.sync_outbox().entity().filter(&row.id).next().is_some() {
            continue;
        }
        match ctx.db.poll_option().id().find(row.id.clone()) {
            Some(cached) if cached.version > row.version => {}
            Some(_) => {
                ctx.db.poll_option().id().update(row);
            }
            None => {
                ctx.db.poll_option().insert(row);
            }
        }
    }
    Ok(())
}

/// The barrier after a warm-up batch (see `modules/chat`).
#[reducer]
pub fn warm_done(ctx: &ReducerContext, request_id: String) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)
}

#[reducer]
pub fn ack_outbox(ctx: &ReducerContext, request_id: String, seqs: Vec<u64>) -> Result<(), String> {
    let _ = request_id;
    require_owner(ctx)?;
    for seq in seqs {
        ctx.db.sync_outbox().seq().delete(seq);
    }
    Ok(())
}
