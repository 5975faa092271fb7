//! Typed settings, layered: `settings/default.toml`, then `settings/<env>.toml`
//! (`BOARDSYNC_ENV`: local, test or production), then `BOARDSYNC__SECTION__KEY`
//! environment variables, then the conventional `DATABASE_URL` and `SPACETIMEDB_URL`.
//! An unknown or malformed key stops start-up with an error that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use boardsync_core::factory::SpacetimeTarget;
use boardsync_core::spacetime::Backoff;
use boardsync_core::AdapterKind;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where the settings files are when neither `BOARDSYNC_SETTINGS_DIR` is set nor
/// `./settings` exists (tests run from the crate's folder).
const SOURCE_SETTINGS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../settings");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown environment {0:?} in BOARDSYNC_ENV: use local, test or production")]
    UnknownEnvironment(String),
    #[error("settings folder {0} not found (set BOARDSYNC_SETTINGS_DIR)")]
    MissingDir(PathBuf),
    #[error("invalid settings: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid setting `{key}`: {reason}")]
    Rejected { key: &'static str, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Local,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

impl TryFrom<String> for Environment {
    type Error = SettingsError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.to_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            _ => Err(SettingsError::UnknownEnvironment(value)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub spacetimedb: SpacetimedbSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
    pub api: ApiSettings,
    pub presence: PresenceSettings,
    pub web: WebSettings,
    pub warmup: WarmupLimits,
    /// The framework's per-domain defaults (live events, outbox, warm-up), which each
    /// `[domains.<name>]` section may override key by key.
    pub framework: serde_json::Value,
    /// Each domain's `[domains.<name>]` section, parsed by the domain at start-up
    /// (so its errors name the domain's own keys).
    pub domains: HashMap<String, serde_json::Value>,
}

/// `[web]`: the demo apps and the admin console, as built files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// The built front end (`web/dist`), served under `/app/`; empty: not served.
    pub dir: PathBuf,
}

/// `[presence]`: the ephemeral who-is-here state of live sockets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSettings {
    /// Most updates per second a socket passes on; faster ones are coalesced.
    pub updates_per_sec: u32,
    /// Largest state, as JSON bytes.
    pub max_state_bytes: usize,
    /// How often this node tells the others (through PostgreSQL) that it is alive.
    pub node_heartbeat_ms: u64,
    /// How long a node goes unheard before the others drop its connections.
    pub node_timeout_ms: u64,
    /// How long changes gather before they go to the other nodes together (a
    /// connection's latest state only): bounds the notifications a busy node sends.
    pub relay_gather_ms: u64,
}

impl PresenceSettings {
    pub fn relay(&self) -> boardsync_actors::presence_relay::RelaySettings {
        boardsync_actors::presence_relay::RelaySettings {
            heartbeat: std::time::Duration::from_millis(self.node_heartbeat_ms),
            node_timeout: std::time::Duration::from_millis(self.node_timeout_ms),
            gather: std::time::Duration::from_millis(self.relay_gather_ms),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub max_body_bytes: usize,
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub ws_heartbeat_secs: u64,
    pub ws_client_timeout_secs: u64,
    /// Commands a live socket reads ahead of their replies; at least 1.
    pub ws_max_pipelined_commands: usize,
    /// Browser origins allowed to call the API (CORS); empty: none.
    pub cors_allowed_origins: Vec<String>,
}

/// Per-user limits, and the live sockets of the whole process (each server process
/// keeps its own counts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Commands (HTTP and live) per second per user; 0: unlimited.
    pub commands_per_sec: f64,
    /// Commands a user may send at once before the rate applies.
    pub command_burst: u32,
    /// Open live WebSockets per user; 0: unlimited.
    pub live_sockets_per_user: usize,
    /// Open live WebSockets in the whole process; 0: unlimited.
    pub live_sockets: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// After SIGTERM/SIGINT: how long requests in flight get to finish. It must cover
    /// a command's longest wait, `spacetimedb.reducer_timeout_ms` plus
    /// `spacetimedb.durable_timeout_ms`.
    pub shutdown_timeout_secs: u64,
    /// Then: how long each domain's outbox gets to drain into PostgreSQL.
    pub drain_timeout_secs: u64,
    /// This process among the nodes on one PostgreSQL, as `/health` and the admin
    /// API show it (who drains which outbox). Empty: `<host name>:<port>`.
    #[serde(default)]
    pub node_name: String,
}

impl ServerSettings {
    /// `node_name`, or `<host name>:<port>` when it is empty.
    pub fn node(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into());
        let port = format!(":{}", self.port);
        // A long host name loses its end, not the port that tells nodes apart.
        let mut host: String = host.chars().filter(char::is_ascii).collect();
        host.truncate(MAX_NODE_NAME_BYTES - port.len());
        format!("{host}{port}")
    }
}

/// The longest node name PostgreSQL keeps whole in the drainer lock's
/// `application_name` (63 bytes, with its prefix), through which every node reads
/// who drains.
pub const MAX_NODE_NAME_BYTES: usize = 63 - boardsync_actors::drainer::APPLICATION_PREFIX.len();

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
}

impl DatabaseSettings {
    /// A pool of at most `max_connections`, connected as a backend connects (see
    /// `boardsync_core::postgres::backend_connect_options`).
    pub async fn connect(&self, max_connections: u32) -> Result<sqlx::PgPool, sqlx::Error> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(self.connect_timeout_secs))
            .connect_with(boardsync_core::postgres::backend_connect_options(self.url.expose_secret())?)
            .await
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpacetimedbSettings {
    pub url: String,
    pub token: SecretString,
    pub database_prefix: String,
    pub connect_timeout_secs: u64,
    pub reducer_timeout_ms: u64,
    pub durable_timeout_ms: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub compression: bool,
    /// The name of the shard at `url` (the first shard: scopes created before there
    /// were others live on it).
    pub shard_name: String,
    /// How long moving a scope waits for its writes to reach PostgreSQL (and then for
    /// its warm-up on the new shard) before calling the move off.
    pub move_drain_timeout_ms: u64,
    /// More SpacetimeDB servers to spread scopes over, by shard name. A scope's shard
    /// is chosen when it is created and stored with it, so adding one moves nothing.
    pub shards: std::collections::BTreeMap<String, ShardSettings>,
}

/// One more SpacetimeDB server (`[spacetimedb.shards.<name>]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSettings {
    pub url: String,
    /// The backend's identity token there; empty: `spacetimedb.token`.
    #[serde(default)]
    pub token: SecretString,
}

/// The longest shard name (it is part of lock keys, logs and metric labels).
pub const MAX_SHARD_NAME_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupLimits {
    /// How many scopes (of all domains) warm at once.
    pub max_concurrent_scopes: usize,
}

impl SpacetimedbSettings {
    /// The configured URL, or `None` when it is empty.
    pub fn url(&self) -> Option<&str> {
        Some(self.url.trim()).filter(|url| !url.is_empty())
    }

    /// The SpacetimeDB database name of one domain's module.
    pub fn database_name(&self, domain: &str) -> String {
        format!("{}-{}", self.database_prefix, domain)
    }

    /// Where `domain`'s module is on each shard, the first shard first; none when
    /// SpacetimeDB is not configured.
    pub fn targets(&self, domain: &str) -> Vec<SpacetimeTarget> {
        let Some(url) = self.url() else { return Vec::new() };
        let first = self.target(domain, &self.shard_name, url, self.token.expose_secret(), true);
        let others = self.shards.iter().map(|(name, shard)| {
            let token = Some(shard.token.expose_secret()).filter(|t| !t.trim().is_empty());
            self.target(domain, name, &shard.url, token.unwrap_or(self.token.expose_secret()), false)
        });
        std::iter::once(first).chain(others).collect()
    }

    /// Every shard's name, the first shard first.
    pub fn shard_names(&self) -> Vec<String> {
        std::iter::once(self.shard_name.clone()).chain(self.shards.keys().cloned()).collect()
    }

    fn target(&self, domain: &str, shard: &str, url: &str, token: &str, first: bool) -> SpacetimeTarget {
        SpacetimeTarget {
            shard: boardsync_core::shards::Shard::new(domain, shard, first),
            url: url.trim().trim_end_matches('/').to_string(),
            token: token.to_string(),
            database: self.database_name(domain),
            reducer_timeout: Duration::from_millis(self.reducer_timeout_ms),
            durable_timeout: Duration::from_millis(self.durable_timeout_ms),
            backoff: Backoff::new(
                Duration::from_millis(self.reconnect_initial_ms),
                Duration::from_millis(self.reconnect_max_ms),
            ),
            compression: self.compression,
        }
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let valid = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_SHARD_NAME_BYTES
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        if !valid(&self.shard_name) {
            return Err(SettingsError::Rejected {
                key: "spacetimedb.shard_name",
                reason: format!("must be 1 to {MAX_SHARD_NAME_BYTES} lowercase letters, digits, '-' or '_'"),
            });
        }
        for (name, shard) in &self.shards {
            if !valid(name) || *name == self.shard_name {
                return Err(SettingsError::Rejected {
                    key: "spacetimedb.shards",
                    reason: format!(
                        "shard {name:?}: names must be 1 to {MAX_SHARD_NAME_BYTES} lowercase letters, digits, '-' or '_', \
                         and differ from spacetimedb.shard_name"
                    ),
                });
            }
            if shard.url.trim().is_empty() {
                return Err(SettingsError::Rejected {
                    key: "spacetimedb.shards",
                    reason: format!("shard {name:?} needs a url"),
                });
            }
        }
        if self.url().is_none() && !self.shards.is_empty() {
            return Err(SettingsError::Rejected {
                key: "spacetimedb.shards",
                reason: "more shards need a first one: set spacetimedb.url".into(),
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret of the tokens `boardsync token` signs. Empty: a local run
    /// generates one into `secret_file`; elsewhere HS256 tokens are then refused.
    pub jwt_secret: SecretString,
    /// Where a local run keeps the secret it generated (relative to the working
    /// folder; `.data/` is gitignored).
    pub secret_file: PathBuf,
    pub token_ttl_secs: u64,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Identity providers whose RS256/ES256 tokens are accepted.
    #[serde(default)]
    pub issuers: Vec<IssuerSettings>,
    /// `POST /api/dev/login` mints a token for any typed-in user name, so two browser
    /// windows can be two people in the demo apps. Local and test runs only: a
    /// production start with it on is refused.
    pub dev_login: bool,
}

/// An identity provider: its tokens must name it in `iss` and this backend in `aud`,
/// and verify with one of its public keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSettings {
    pub issuer: String,
    pub audience: String,
    /// A JWKS file (the provider's `jwks_uri` document, saved): each key names its
    /// algorithm, or is RS256 (RSA) or ES256 (P-256).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Or one PEM public key, with `algorithm` (RS256 or ES256).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Whether this provider's boolean `admin` claim opens the admin routes.
    #[serde(default)]
    pub admin_claim: bool,
    /// Put before `sub` to make the user id (e.g. "acme:"): set it when another
    /// provider, or local tokens, could name a different person with the same `sub`.
    #[serde(default)]
    pub user_prefix: String,
}

/// Secrets that shipped in examples or are guessed first: never accepted outside tests.
const KNOWN_SECRETS: [&str; 6] = [
    "boardsync-local-development-secret-change-me",
    "secret",
    "changeme",
    "change-me",
    "jwt-secret",
    "your-256-bit-secret",
];

/// The shortest HS256 secret accepted outside tests (RFC 7518: at least the hash size).
const MIN_SECRET_BYTES: usize = 32;

impl AuthSettings {
    /// Refuses a known or short secret, except in the test harness.
    fn check_secret(&self, environment: Environment) -> Result<(), SettingsError> {
        let secret = self.jwt_secret.expose_secret();
        if environment == Environment::Test || secret.is_empty() {
            return Ok(());
        }
        let known = KNOWN_SECRETS.iter().any(|known| secret.trim().eq_ignore_ascii_case(known));
        if known || secret.len() < MIN_SECRET_BYTES {
            return Err(SettingsError::Rejected {
                key: "auth.jwt_secret",
                reason: format!(
                    "must be at least {MIN_SECRET_BYTES} bytes and not a known default \
                     (leave it empty for a local run to generate one)"
                ),
            });
        }
        Ok(())
    }

    /// A local run without a secret: the one kept in `secret_file`, generated (random,
    /// 256 bits) on first start.
    fn ensure_local_secret(&mut self) -> Result<(), SettingsError> {
        if !self.jwt_secret.expose_secret().is_empty() {
            return Ok(());
        }
        let rejected = |reason: String| SettingsError::Rejected { key: "auth.secret_file", reason };
        let path = &self.secret_file;
        if !path.exists() {
            use rand::Rng;
            let bytes: [u8; 32] = rand::rng().random();
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|e| rejected(format!("{}: {e}", folder.display())))?;
            }
            match write_private(path, &secret) {
                Ok(()) => tracing::info!(file = %path.display(), "generated a signing secret for local tokens"),
                // Another process (a `boardsync token` beside the server) wrote it first.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(rejected(format!("{}: {error}", path.display()))),
            }
        }
        let secret = std::fs::read_to_string(path).map_err(|e| rejected(format!("{}: {e}", path.display())))?;
        self.jwt_secret = SecretString::from(secret.trim().to_string());
        // A file someone edited by hand is held to the same rule as a set secret.
        self.check_secret(Environment::Local)
    }
}

/// Writes `text` to a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub filter: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Settings {
    /// Loads the layers for the environment named by `BOARDSYNC_ENV` (default local),
    /// from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let environment = Environment::try_from(vars.get("BOARDSYNC_ENV").cloned().unwrap_or_else(|| "local".into()))?;
        let mut settings = Self::load_from(&settings_dir(&vars)?, environment, vars)?;
        if environment == Environment::Local {
            settings.auth.ensure_local_secret()?;
        }
        Ok(settings)
    }

    /// Loads the layers from `dir`, with `vars` standing for the environment variables.
    pub fn load_from(
        dir: &Path,
        environment: Environment,
        vars: HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        if !dir.join("default.toml").is_file() {
            return Err(SettingsError::MissingDir(dir.to_path_buf()));
        }
        let database_url = non_empty(vars.get("DATABASE_URL"));
        let spacetimedb_url = vars.get("SPACETIMEDB_URL").cloned();
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")))
            .add_source(config::File::from(dir.join(format!("{}.toml", environment.as_str()))).required(false))
            .add_source(
                config::Environment::with_prefix("BOARDSYNC")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(vars.into_iter().collect())),
            );
        if let Some(url) = database_url {
            builder = builder.set_override("database.url", url)?;
        }
        if let Some(url) = spacetimedb_url {
            // An empty SPACETIMEDB_URL explicitly selects the PostgreSQL adapter.
            builder = builder.set_override("spacetimedb.url", url)?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate(environment)?;
        Ok(settings)
    }

    /// The settings folder of this source tree, for tests and tools.
    pub fn source_dir() -> PathBuf {
        PathBuf::from(SOURCE_SETTINGS_DIR)
    }

    fn validate(&self, environment: Environment) -> Result<(), SettingsError> {
        if self.database.url.expose_secret().trim().is_empty() {
            return Err(SettingsError::Rejected { key: "database.url", reason: "must not be empty".into() });
        }
        if self.database.max_connections == 0 {
            return Err(SettingsError::Rejected {
                key: "database.max_connections",
                reason: "must be at least 1".into(),
            });
        }
        // Each warming scope holds a connection for its run (its lock, and the read of
        // its window), and a second one while it restores writes the cache may have
        // lost; the access listener holds one for good. Short of that, warm-ups (and
        // every request behind them) wait out the pool's timeout, after a cache crash
        // of all times. (The scheduler runs at least one warm-up.)
        let warming = self.warmup.max_concurrent_scopes.max(1);
        let needed = warming.saturating_mul(2).saturating_add(2);
        let pool = self.database.max_connections as usize;
        if self.adapter() == AdapterKind::Spacetimedb && needed > pool {
            return Err(SettingsError::Rejected {
                key: "warmup.max_concurrent_scopes",
                reason: format!(
                    "{warming} warming scopes need up to {needed} of database.max_connections ({pool}): \
                     two each, one for the access listener and one for requests"
                ),
            });
        }
        if self.spacetimedb.url().is_some() && self.spacetimedb.token.expose_secret().trim().is_empty() {
            return Err(SettingsError::Rejected {
                key: "spacetimedb.token",
                reason: "a SpacetimeDB URL is set, so the backend's identity token is needed too".into(),
            });
        }
        self.spacetimedb.validate()?;
        // A page asks the adapter for one item more than its size, to tell whether more follow.
        let pages = &self.api;
        if pages.max_page_size == 0 || pages.max_page_size >= u32::MAX / 2 {
            return Err(SettingsError::Rejected {
                key: "api.max_page_size",
                reason: format!("must be between 1 and {}", u32::MAX / 2 - 1),
            });
        }
        if pages.default_page_size == 0 || pages.default_page_size > pages.max_page_size {
            return Err(SettingsError::Rejected {
                key: "api.default_page_size",
                reason: "must be between 1 and api.max_page_size".into(),
            });
        }
        if self.server.node_name.len() > MAX_NODE_NAME_BYTES || !self.server.node_name.is_ascii() {
            return Err(SettingsError::Rejected {
                key: "server.node_name",
                reason: format!(
                    "must be ASCII and at most {MAX_NODE_NAME_BYTES} bytes (PostgreSQL keeps no more of it, and \
                     every node reads from it which node drains)"
                ),
            });
        }
        if self.api.ws_max_pipelined_commands == 0 {
            return Err(SettingsError::Rejected {
                key: "api.ws_max_pipelined_commands",
                reason: "must be at least 1".into(),
            });
        }
        // A state travels between nodes in one notification (under 8,000 bytes).
        let relay_room = boardsync_actors::presence_relay::MAX_PAYLOAD - 1_000;
        if self.presence.max_state_bytes > relay_room {
            return Err(SettingsError::Rejected {
                key: "presence.max_state_bytes",
                reason: format!(
                    "must be at most {relay_room}, so that a state fits in one notification to other nodes"
                ),
            });
        }
        if self.presence.relay_gather_ms >= self.presence.node_heartbeat_ms {
            return Err(SettingsError::Rejected {
                key: "presence.relay_gather_ms",
                reason: "must be below presence.node_heartbeat_ms (a node gathering longer goes unheard)".into(),
            });
        }
        if self.presence.node_heartbeat_ms == 0 || self.presence.node_timeout_ms < 2 * self.presence.node_heartbeat_ms {
            return Err(SettingsError::Rejected {
                key: "presence.node_timeout_ms",
                reason: "must be at least twice presence.node_heartbeat_ms, which must be above 0".into(),
            });
        }
        let longest_command_ms = self.spacetimedb.reducer_timeout_ms + self.spacetimedb.durable_timeout_ms;
        if self.spacetimedb.url().is_some() && self.server.shutdown_timeout_secs * 1000 < longest_command_ms {
            return Err(SettingsError::Rejected {
                key: "server.shutdown_timeout_secs",
                reason: format!(
                    "must cover spacetimedb.reducer_timeout_ms + spacetimedb.durable_timeout_ms ({longest_command_ms} ms), \
                     so that a shutdown answers every command in flight"
                ),
            });
        }
        self.auth.check_secret(environment)?;
        if environment == Environment::Production && self.auth.dev_login {
            return Err(SettingsError::Rejected {
                key: "auth.dev_login",
                reason: "mints a token for any user name: local and test runs only".into(),
            });
        }
        if self.auth.dev_login && !is_loopback(&self.server.host) {
            return Err(SettingsError::Rejected {
                key: "auth.dev_login",
                reason: format!(
                    "mints a token for anyone who reaches the server: on only while server.host is loopback \
                     (it is {:?}); turn it off (BOARDSYNC__AUTH__DEV_LOGIN=false) to listen elsewhere",
                    self.server.host
                ),
            });
        }
        if environment == Environment::Production
            && self.auth.jwt_secret.expose_secret().is_empty()
            && self.auth.issuers.is_empty()
        {
            return Err(SettingsError::Rejected {
                key: "auth",
                reason: "set auth.jwt_secret or configure an identity provider under auth.issuers".into(),
            });
        }
        Ok(())
    }

    /// The adapter every domain gets, picked once from the settings.
    pub fn adapter(&self) -> AdapterKind {
        AdapterKind::select(self.spacetimedb.url())
    }
}

/// Whether `host` (a listen address or a Host header's name) is this machine only.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty()).cloned()
}

fn settings_dir(vars: &HashMap<String, String>) -> Result<PathBuf, SettingsError> {
    if let Some(dir) = non_empty(vars.get("BOARDSYNC_SETTINGS_DIR")) {
        return Ok(PathBuf::from(dir));
    }
    let local = Path::new("settings");
    if local.join("default.toml").is_file() {
        return Ok(local.to_path_buf());
    }
    Ok(Settings::source_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_from(&Settings::source_dir(), Environment::Local, vars)
    }

    #[test]
    fn defaults_load_and_pick_postgres() {
        let settings = load(&[]).expect("defaults load");
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.adapter(), AdapterKind::Postgres);
    }

    #[test]
    fn environment_variables_override_files() {
        let settings = load(&[
            ("BOARDSYNC__SERVER__PORT", "9090"),
            ("DATABASE_URL", "postgres://elsewhere/db"),
            ("SPACETIMEDB_URL", "http://127.0.0.1:3999"),
            ("BOARDSYNC__SPACETIMEDB__TOKEN", "t"),
        ])
        .expect("overrides load");
        assert_eq!(settings.server.port, 9090);
        assert_eq!(settings.database.url.expose_secret(), "postgres://elsewhere/db");
        assert_eq!(settings.adapter(), AdapterKind::Spacetimedb);
    }

    #[test]
    fn an_empty_spacetimedb_url_selects_postgres() {
        let settings = load(&[("SPACETIMEDB_URL", "")]).expect("loads");
        assert_eq!(settings.adapter(), AdapterKind::Postgres);
    }

    #[test]
    fn a_malformed_value_names_its_key() {
        let error = load(&[("BOARDSYNC__SERVER__PORT", "eighty")]).unwrap_err().to_string();
        assert!(error.contains("server.port"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let error = load(&[("BOARDSYNC__SERVER__PROT", "1")]).unwrap_err().to_string();
        assert!(error.contains("prot"), "{error}");
    }

    #[test]
    fn a_spacetimedb_url_without_a_token_is_refused() {
        let error = load(&[("SPACETIMEDB_URL", "http://127.0.0.1:3999")]).unwrap_err().to_string();
        assert!(error.contains("spacetimedb.token"), "{error}");
    }

    #[test]
    fn warm_ups_must_leave_the_pool_connections_for_other_work() {
        let cache = [("SPACETIMEDB_URL", "http://127.0.0.1:3999"), ("BOARDSYNC__SPACETIMEDB__TOKEN", "t")];
        let with = |pool: &'static str| {
            let mut vars = cache.to_vec();
            vars.extend([
                ("BOARDSYNC__WARMUP__MAX_CONCURRENT_SCOPES", "10"),
                ("BOARDSYNC__DATABASE__MAX_CONNECTIONS", pool),
            ]);
            load(&vars)
        };
        let error = with("21").unwrap_err().to_string();
        assert!(error.contains("warmup.max_concurrent_scopes"), "{error}");
        with("22").expect("two connections per warming scope, and two more");
        load(&[("BOARDSYNC__WARMUP__MAX_CONCURRENT_SCOPES", "10"), ("BOARDSYNC__DATABASE__MAX_CONNECTIONS", "10")])
            .expect("the PostgreSQL adapter warms nothing");
    }

    #[test]
    fn page_sizes_must_leave_room_for_the_extra_row_and_agree() {
        let error = load(&[("BOARDSYNC__API__MAX_PAGE_SIZE", "4294967295")]).unwrap_err().to_string();
        assert!(error.contains("api.max_page_size"), "{error}");
        let error = load(&[("BOARDSYNC__API__DEFAULT_PAGE_SIZE", "100000")]).unwrap_err().to_string();
        assert!(error.contains("api.default_page_size"), "{error}");
    }

    #[test]
    fn node_names_fit_where_every_node_reads_them_and_presence_states_fit_a_notification() {
        let long = "n".repeat(MAX_NODE_NAME_BYTES + 1);
        let error = load(&[("BOARDSYNC__SERVER__NODE_NAME", &long)]).unwrap_err().to_string();
        assert!(error.contains("server.node_name"), "{error}");
        let fits = "n".repeat(MAX_NODE_NAME_BYTES);
        assert!(load(&[("BOARDSYNC__SERVER__NODE_NAME", &fits)]).is_ok());
        let settings = load(&[]).unwrap();
        let default = ServerSettings { port: 65535, ..settings.server.clone() }.node();
        assert!(default.len() <= MAX_NODE_NAME_BYTES && default.ends_with(":65535"), "{default}");
        let error = load(&[("BOARDSYNC__PRESENCE__MAX_STATE_BYTES", "8000")]).unwrap_err().to_string();
        assert!(error.contains("presence.max_state_bytes"), "{error}");
    }

    fn load_in(environment: Environment, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::load_from(&Settings::source_dir(), environment, vars)
    }

    #[test]
    fn a_short_or_known_secret_is_refused_outside_the_test_harness() {
        let shipped = ("BOARDSYNC__AUTH__JWT_SECRET", "boardsync-local-development-secret-change-me");
        let short = ("BOARDSYNC__AUTH__JWT_SECRET", "0123456789abcdef0123456789abcde");
        for environment in [Environment::Local, Environment::Production] {
            for secret in [shipped, short] {
                let error = load_in(environment, &[secret]).unwrap_err().to_string();
                assert!(error.contains("auth.jwt_secret"), "{environment:?}: {error}");
            }
        }
        assert!(load_in(Environment::Test, &[short]).is_ok(), "the harness may use a short secret");
        let long = ("BOARDSYNC__AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef");
        assert!(load_in(Environment::Production, &[long]).is_ok());
        let error = load_in(Environment::Production, &[]).unwrap_err().to_string();
        assert!(error.contains("auth.issuers"), "production needs some way to authenticate: {error}");
    }

    #[test]
    fn the_local_login_is_refused_in_production() {
        let long = ("BOARDSYNC__AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef");
        assert!(!load_in(Environment::Production, &[long]).unwrap().auth.dev_login, "off by default");
        let on = ("BOARDSYNC__AUTH__DEV_LOGIN", "true");
        let error = load_in(Environment::Production, &[long, on]).unwrap_err().to_string();
        assert!(error.contains("auth.dev_login"), "{error}");
        assert!(load_in(Environment::Local, &[]).unwrap().auth.dev_login, "on for local runs");
        let public = ("BOARDSYNC__SERVER__HOST", "0.0.0.0");
        let error = load_in(Environment::Local, &[public]).unwrap_err().to_string();
        assert!(error.contains("auth.dev_login"), "only on loopback: {error}");
        assert!(load_in(Environment::Local, &[public, ("BOARDSYNC__AUTH__DEV_LOGIN", "false")]).is_ok());
        assert!(load_in(Environment::Local, &[("BOARDSYNC__SERVER__HOST", "::1")]).is_ok());
    }

    #[test]
    fn a_local_run_generates_its_secret_once_and_keeps_it_private() {
        let folder = std::env::temp_dir().join(format!("boardsync-secret-{}", uuid::Uuid::new_v4()));
        let file = folder.join("jwt-secret");
        let mut first = load(&[]).unwrap().auth;
        first.secret_file = file.clone();
        first.ensure_local_secret().unwrap();
        let secret = first.jwt_secret.expose_secret().to_string();
        assert_eq!(secret.len(), 64, "256 random bits, hex");
        let mut again = load(&[]).unwrap().auth;
        again.secret_file = file.clone();
        again.ensure_local_secret().unwrap();
        assert_eq!(again.jwt_secret.expose_secret(), secret, "the second start reads the same secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(folder).unwrap();
    }
}
