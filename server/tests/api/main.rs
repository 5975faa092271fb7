//! API tests: one binary, one module per feature (keeps link time down).

mod health;
mod helpers;
mod postgres;
