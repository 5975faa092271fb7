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
use rules::{
    changes_nothing, check, check_room_for_option, id_conflict, is_same_add, not_author, option_not_found, OptionView,
    PollCommand, PollSettings,
};
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

/// An option of the command's poll, removed or not.
fn in_poll(w: &Write<'_>, id: &str) -> Result<PollOption, refusal::Refusal> {
    match w.ctx.db.poll_option().id().find(id.to_string()) {
        Some(o) if o.poll == w.scope => Ok(o),
        _ => Err(option_not_found(id)),
    }
}

/// A live (not removed) option of the command's poll.
fn live(w: &Write<'_>, id: &str) -> Result<PollOption, refusal::Refusal> {
    match in_poll(w, id)? {
        o if o.removed => Err(option_not_found(id)),
        o => Ok(o),
    }
}

/// An option as the shared retry rules see it.
fn view(o: &PollOption) -> OptionView<'_> {
    OptionView { poll: &o.poll, author: &o.author, label: &o.label, removed: o.removed, voters: &o.voters }
}

impl Rules for Module {
    type Command = PollCommand;
    type Settings = PollSettings;

    fn apply(w: &Write<'_>, settings: &PollSettings, command: PollCommand) -> Result<(), String> {
        check(&command, settings)?;
        let id = command.option_id().to_string();
        let mut option = match &command {
            PollCommand::AddOption { label, .. } => match w.ctx.db.poll_option().id().find(&id) {
                // A retried add changes nothing; any other reuse of the id is a conflict.
                Some(o) if is_same_add(&view(&o), w.scope, w.user, label) => return Ok(()),
                Some(_) => return Err(id_conflict(&id).into()),
                None => {
                    let scope = w.scope.to_string();
                    let live = w.ctx.db.poll_option().poll().filter(&scope).filter(|o| !o.removed).count();
                    check_room_for_option(live, settings)?;
                    PollOption {
                        id,
                        poll: w.scope.to_string(),
                        label: label.clone(),
                        author: w.user.to_string(),
                        updated_by: w.user.to_string(),
                        created_at: w.ctx.timestamp,
                        removed: false,
                        voters: Vec::new(),
                        version: 0,
                    }
                }
            },
            PollCommand::Vote { .. } | PollCommand::Unvote { .. } => live(w, &id)?,
            // A removed option is found too: removing it again changes nothing.
            PollCommand::RemoveOption { .. } => {
                let o = in_poll(w, &id)?;
                if o.author != w.user {
                    return Err(not_author().into());
                }
                o
            }
        };
        if changes_nothing(&command, &view(&option), w.user) {
            return Ok(());
        }
        match command {
            // A new option is complete as built.
            PollCommand::AddOption { .. } => {}
            PollCommand::Vote { .. } => option.voters.push(w.user.to_string()),
            PollCommand::Unvote { .. } => option.voters.retain(|v| v != w.user),
            PollCommand::RemoveOption { .. } => {
                option.removed = true;
                option.voters.clear();
            }
        }
        option.version += 1;
        // Whoever writes a state changed it last.
        option.updated_by = w.user.to_string();
        w.record(option);
        Ok(())
    }

    rows_in!(poll_option, poll);
}
