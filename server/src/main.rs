//! The `boardsync` command line: `serve` runs the server.

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
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    boardsync::telemetry::init(&settings.log);
    match cli.command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.context("serving")?;
            tracing::info!("boardsync stopped");
        }
    }
    Ok(())
}
