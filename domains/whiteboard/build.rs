//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it
//! found and watches only those, so a new file alone would leave a stale migrator.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
