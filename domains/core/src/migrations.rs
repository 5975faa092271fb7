//! The framework's PostgreSQL schema.
//!
//! Each domain ships its own migrations next to its code; all share sqlx's history
//! table, so every migrator runs with `ignore_missing` and versions are timestamps.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::PgPool;

static CORE: Migrator = sqlx::migrate!("./migrations");

/// The framework's migrations, set up to coexist with the domains' ones.
pub fn core() -> Migrator {
    shared(&CORE)
}

/// A copy of `migrator` that tolerates the other migrators' rows in the shared history.
pub fn shared(migrator: &Migrator) -> Migrator {
    let mut migrator = Migrator { migrations: migrator.migrations.clone(), ..Migrator::DEFAULT };
    migrator.set_ignore_missing(true);
    migrator
}

/// Runs the core migrations and then each domain's, in the order given.
pub async fn run_all(pool: &PgPool, domains: &[Migrator]) -> Result<(), MigrateError> {
    core().run(pool).await?;
    for migrator in domains {
        migrator.run(pool).await?;
    }
    Ok(())
}
