//! The `boardsync` command line: `serve` runs the server; `token` prints a bearer
//! token for local use; `warmup` re-warms the cache with a progress bar; `outbox
//! drain` empties the cache's outboxes into PostgreSQL; `members` manages a scope's
//! members; `openapi` prints the API document.

use anyhow::Context;
use clap::{Parser, Subcommand};

use boardsync::settings::Settings;
use boardsync::startup::Application;
use boardsync::warmup_command::WarmupCommand;

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
    /// Print a bearer token signed with `auth.jwt_secret` (a local run's generated one).
    Token {
        /// The user id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Grant the admin routes.
        #[arg(long)]
        admin: bool,
    },
    /// Re-warm the cache from PostgreSQL through a running server, with progress.
    Warmup {
        /// Only this domain (default: every domain).
        #[arg(long)]
        domain: Option<String>,
        /// Only this scope (needs --domain).
        #[arg(long, requires = "domain")]
        scope: Option<String>,
        /// The server (default: http://<server.host>:<server.port>).
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// A scope's members, through a running server.
    Members {
        #[command(subcommand)]
        action: MembersCli,
        /// The server (default: http://<server.host>:<server.port>).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Print the API document (OpenAPI 3.0), as `GET /api/openapi.json` serves it.
    Openapi,
    /// The cache's outbox of writes on their way to PostgreSQL.
    Outbox {
        #[command(subcommand)]
        action: OutboxAction,
    },
}

#[derive(Subcommand)]
enum MembersCli {
    /// List the members and their roles.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Add a member, or change their role (owner, editor or viewer).
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Remove a member (their live sockets on the scope close).
    Remove {
        #[command(flatten)]
        scope: ScopeArgs,
        #[arg(long)]
        user: String,
    },
}

/// Which scope.
#[derive(clap::Args)]
struct ScopeArgs {
    #[arg(long)]
    domain: String,
    #[arg(long)]
    scope: String,
}

#[derive(Subcommand)]
enum OutboxAction {
    /// Drain every domain's outbox into PostgreSQL and exit (before a module's schema
    /// change clears its cache; run it with the boardsync that matches the published
    /// modules). Refuses while PostgreSQL is unreachable.
    Drain {
        /// Only this domain (default: every domain).
        #[arg(long)]
        domain: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    match cli.command {
        Command::Serve => {
            boardsync::telemetry::init(&settings.log);
            // Room for every live socket, the pool, and a margin for the rest (the
            // cache connections, listeners, files).
            let needed = settings.limits.live_sockets as u64 + u64::from(settings.database.max_connections) + 256;
            boardsync::limits::raise_open_file_limit(needed);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.context("serving")?;
            tracing::info!("boardsync stopped");
        }
        Command::Warmup { domain, scope, url, timeout_secs } => {
            let url = url.unwrap_or_else(|| format!("http://{}:{}", settings.server.host, settings.server.port));
            let command = WarmupCommand { url, domain, scope, timeout: std::time::Duration::from_secs(timeout_secs) };
            command.run(&settings).await?;
        }
        Command::Outbox { action: OutboxAction::Drain { domain, timeout_secs } } => {
            let timeout = std::time::Duration::from_secs(timeout_secs);
            let drained = boardsync::drain_command::drain(&settings, domain.as_deref(), timeout).await?;
            for (domain, entries) in drained {
                println!("{domain}: {entries} outbox entries drained into PostgreSQL");
            }
        }
        Command::Members { action, url } => {
            use boardsync::members_command::{run, MembersAction};
            let url = url.unwrap_or_else(|| format!("http://{}:{}", settings.server.host, settings.server.port));
            let (scope, action) = match action {
                MembersCli::List { scope } => (scope, MembersAction::List),
                MembersCli::Set { scope, user, role } => (scope, MembersAction::Set { user, role }),
                MembersCli::Remove { scope, user } => (scope, MembersAction::Remove { user }),
            };
            let answer = run(&settings, &url, &scope.domain, &scope.scope, action).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        Command::Openapi => {
            let document = boardsync::routes::openapi::document_of_wired_domains(&settings).await;
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        Command::Token { user, admin } => {
            anyhow::ensure!(!user.trim().is_empty(), "--user must not be empty");
            println!("{}", boardsync::auth::issue_token(&settings.auth, &user, admin)?);
        }
    }
    Ok(())
}
