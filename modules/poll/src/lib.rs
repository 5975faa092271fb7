//! SpacetimeDB module for the poll domain (the worked example of
//! `docs/adding-a-domain.md`): the warm cache in front of PostgreSQL. The contract
//! with the backend (owner, epoch, settings, outbox, warm-up, acks) is
//! `modules/contract.rs`; the commands and limits are the domain's own `rules.rs`.
//! What is here: the cached row and what each command does to it.

#[macro_use]
#[path = "../../contract.rs"]
mod contract;
#[path = "../../../domains/poll/src/rules.rs"]
mod rules;

use contract::{refusal, Rules, Write};
use rules::{check, check_room_for_option, id_conflict, not_author, option_not_found, PollCommand, PollSettings};
use spacetimedb::{table, ReducerContext, Table, Timestamp};

/// One option of a poll, its voters embedded (in the order they voted).
#[table(name = poll_option)]
#[derive(Clone)]
pub struct PollOption {
    #[primary_key]
    pub id: String,
    #[index(btree)]
    pub poll: String,
    pub label: String,
    pub author: String,
    pub updated_by: String,
    pub created_at: Timestamp,
    pub removed: bool,
    pub voters: Vec<String>,
    pub version: u64,
}

pub type Row = PollOption;

pub struct Module;

fn live(w: &Write<'_>, id: &str) -> Result<PollOption, refusal::Refusal> {
    match w.ctx.db.poll_option().id().find(id.to_string()) {
        Some(o) if !o.removed && o.poll == w.scope => Ok(o),
        _ => Err(option_not_found(id)),
    }
}

impl Rules for Module {
    type Command = PollCommand;
    type Settings = PollSettings;

    fn apply(w: &Write<'_>, settings: &PollSettings, command: PollCommand) -> Result<(), String> {
        check(&command, settings)?;
        let id = command.option_id().to_string();
        let mut option = match command {
            PollCommand::AddOption { label, .. } => match w.ctx.db.poll_option().id().find(&id) {
                // A retried add is idempotent; any other reuse of the id is a conflict.
                Some(o) if o.poll == w.scope && o.author == w.user && o.label == label && !o.removed => {
                    w.record_unchanged(id, o);
                    return Ok(());
                }
                Some(_) => return Err(id_conflict(&id).into()),
                None => {
                    let scope = w.scope.to_string();
                    let live = w.ctx.db.poll_option().poll().filter(&scope).filter(|o| !o.removed).count();
                    check_room_for_option(live, settings)?;
                    PollOption {
                        id,
                        poll: w.scope.to_string(),
                        label,
                        author: w.user.to_string(),
                        updated_by: w.user.to_string(),
                        created_at: w.ctx.timestamp,
                        removed: false,
                        voters: Vec::new(),
                        version: 0,
                    }
                }
            },
            PollCommand::Vote { .. } => {
                let mut o = live(w, &id)?;
                if !o.voters.iter().any(|v| v == w.user) {
                    o.voters.push(w.user.to_string());
                }
                o
            }
            PollCommand::Unvote { .. } => {
                let mut o = live(w, &id)?;
                o.voters.retain(|v| v != w.user);
                o
            }
            PollCommand::RemoveOption { .. } => {
                let mut o = live(w, &id)?;
                if o.author != w.user {
                    return Err(not_author().into());
                }
                o.removed = true;
                o.voters.clear();
                o
            }
        };
        option.version += 1;
        // Whoever writes a state changed it last.
        option.updated_by = w.user.to_string();
        w.record(option);
        Ok(())
    }

    rows_in!(poll_option);
}
