//! The `boardsync` command line: `serve` runs the server; `token` prints a bearer
//! token for local use.

use anyhow::Context;
use clap::{Parser, Subcommand};

use boardsync::settings::Settings;
use boardsync::startup::Application;

#[derive(Parser)]
#[command(
    name = "boardsync",
    version,
    about = "Real-time collaborative domains: SpacetimeDB in front, PostgreSQL as the truth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP/WebSocket server.
    Serve,
    /// Print a bearer token signed with `auth.jwt_secret`.
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Grant the admin routes.
        #[arg(long)]
        admin: bool,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    match cli.command {
        Command::Serve => {
            boardsync::telemetry::init(&settings.log);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.context("serving")?;
            tracing::info!("boardsync stopped");
        }
        Command::Token { user, admin } => {
            anyhow::ensure!(!user.trim().is_empty(), "--user must not be empty");
            println!(
                "{}",
                boardsync::auth::issue_token(&settings.auth, &user, admin)
            );
        }
    }
    Ok(())
}
