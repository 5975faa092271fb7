//! API tests: one binary, one module per feature (keeps link time down).

mod access;
mod admin;
mod chat;
mod errors;
mod faults;
mod health;
mod helpers;
mod identity;
mod kanban;
mod live;
mod nodes;
mod poll;
mod postgres;
mod presence;
mod process;
mod purge;
mod shards;
mod spacetimedb;
mod web;
mod whiteboard;
