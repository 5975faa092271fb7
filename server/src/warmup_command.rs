//! `boardsync warmup`: re-warms scopes through a running server's admin API and
//! shows progress until they are done.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::auth::issue_token;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum WarmupCommandError {
    #[error("cannot reach the server at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("{0} scope(s) failed to warm")]
    Failed(usize),
    #[error("warm-up did not finish within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Token(#[from] crate::auth::AuthSetupError),
}

#[derive(Deserialize)]
struct Status {
    domain: String,
    scope: String,
    state: String,
    rows_loaded: u64,
    rows_total: u64,
    duration_ms: Option<u64>,
    error: Option<String>,
    runs: u64,
}

#[derive(Deserialize)]
struct Board {
    domains: HashMap<String, serde_json::Value>,
    scopes: Vec<Status>,
}

pub struct WarmupCommand {
    pub url: String,
    pub domain: Option<String>,
    pub scope: Option<String>,
    pub timeout: Duration,
}

fn domains_phrase(domains: &[String]) -> String {
    if domains.is_empty() {
        "every domain runs".to_string()
    } else {
        format!("{} runs", domains.join(", "))
    }
}

impl WarmupCommand {
    pub async fn run(&self, settings: &Settings) -> Result<(), WarmupCommandError> {
        let http = reqwest::Client::new();
        let token = issue_token(&settings.auth, "boardsync-cli", true)?;
        let url = self.url.trim_end_matches('/');
        let board = |http: reqwest::Client, token: String| async move {
            let response = http
                .get(format!("{url}/api/admin/warmup"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|source| WarmupCommandError::Unreachable { url: url.to_string(), source })?;
            if !response.status().is_success() {
                return Err(WarmupCommandError::Refused(response.text().await.unwrap_or_default()));
            }
            response
                .json::<Board>()
                .await
                .map_err(|source| WarmupCommandError::Unreachable { url: url.to_string(), source })
        };

        let before = board(http.clone(), token.clone()).await?;
        // Only domains on the cache have anything to warm.
        let cached = |name: &String| before.domains.get(name).is_some_and(|d| d["adapter"] == "spacetimedb");
        let domains: Vec<String> = match &self.domain {
            Some(domain) => vec![domain.clone()],
            None => before.domains.keys().filter(|name| cached(name)).cloned().collect(),
        };
        if domains.iter().all(|name| before.domains.contains_key(name) && !cached(name)) {
            println!("nothing to warm: {} on the PostgreSQL adapter, which has no cache", domains_phrase(&domains));
            return Ok(());
        }
        let runs_before: HashMap<(String, String), u64> =
            before.scopes.iter().map(|s| ((s.domain.clone(), s.scope.clone()), s.runs)).collect();
        for domain in &domains {
            let path = match &self.scope {
                Some(scope) => format!("{url}/api/admin/warmup/{domain}/{scope}"),
                None => format!("{url}/api/admin/warmup/{domain}"),
            };
            let response = http
                .post(path)
                .bearer_auth(&token)
                .send()
                .await
                .map_err(|source| WarmupCommandError::Unreachable { url: url.to_string(), source })?;
            if !response.status().is_success() {
                return Err(WarmupCommandError::Refused(response.text().await.unwrap_or_default()));
            }
        }

        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = board(http.clone(), token.clone()).await?;
            let wanted: Vec<&Status> = now
                .scopes
                .iter()
                .filter(|s| domains.contains(&s.domain) && self.scope.as_ref().is_none_or(|scope| &s.scope == scope))
                .collect();
            let finished = |s: &&&Status| {
                let ran = s.runs > runs_before.get(&(s.domain.clone(), s.scope.clone())).copied().unwrap_or(0);
                ran || s.state == "disabled"
            };
            let done = wanted.iter().filter(finished).count();
            let (loaded, total) = wanted.iter().fold((0, 0), |(l, t), s| (l + s.rows_loaded, t + s.rows_total));
            render(done, wanted.len(), loaded, total);
            if !wanted.is_empty() && done == wanted.len() {
                if std::io::stderr().is_terminal() {
                    eprintln!();
                }
                for status in &wanted {
                    println!(
                        "{:<12} {:<24} {:<9} {:>8} rows {:>7} ms {}",
                        status.domain,
                        status.scope,
                        status.state,
                        status.rows_loaded,
                        status.duration_ms.unwrap_or(0),
                        status.error.as_deref().unwrap_or("")
                    );
                }
                let failed = wanted.iter().filter(|s| s.state == "failed").count();
                return if failed == 0 { Ok(()) } else { Err(WarmupCommandError::Failed(failed)) };
            }
            if started.elapsed() > self.timeout {
                eprintln!();
                return Err(WarmupCommandError::TimedOut(self.timeout));
            }
        }
    }
}

/// Redraws the progress bar in place; nothing when stderr is not a terminal.
fn render(done: usize, scopes: usize, loaded: u64, total: u64) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    const WIDTH: usize = 30;
    let fraction = if scopes == 0 { 0.0 } else { done as f64 / scopes as f64 };
    let filled = (fraction * WIDTH as f64).round() as usize;
    eprint!(
        "\r[{}{}] {done}/{scopes} scopes, {loaded}/{total} rows",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled.min(WIDTH))
    );
    let _ = std::io::stderr().flush();
}
