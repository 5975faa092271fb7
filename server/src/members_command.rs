//! `boardsync members`: lists, sets and removes a scope's members through a running
//! server's admin routes (so its live sockets see the change at once).

use serde_json::{json, Value};

use crate::auth::issue_token;
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum MembersCommandError {
    #[error("cannot reach the server at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("the server refused ({status}): {body}")]
    Refused { status: u16, body: String },
    #[error(transparent)]
    Token(#[from] crate::auth::AuthSetupError),
    #[error("not a server URL: {0}")]
    BadUrl(String),
}

/// What to do with the members of one scope.
pub enum MembersAction {
    List,
    Set { user: String, role: String },
    Remove { user: String },
}

/// Runs `action` on `domain`/`scope` through the server at `url`; returns its answer.
pub async fn run(
    settings: &Settings,
    url: &str,
    domain: &str,
    scope: &str,
    action: MembersAction,
) -> Result<Value, MembersCommandError> {
    let token = issue_token(&settings.auth, "boardsync-cli", true)?;
    // Each part is one path segment, escaped (a user id may hold any character).
    let address = |member: Option<&str>| -> Result<reqwest::Url, MembersCommandError> {
        let mut address = reqwest::Url::parse(url).map_err(|e| MembersCommandError::BadUrl(e.to_string()))?;
        address
            .path_segments_mut()
            .map_err(|()| MembersCommandError::BadUrl(url.to_string()))?
            .pop_if_empty()
            .extend(["api", "admin", "scopes", domain, scope, "members"])
            .extend(member);
        Ok(address)
    };
    let http = reqwest::Client::new();
    let request = match &action {
        MembersAction::List => http.get(address(None)?),
        MembersAction::Set { user, role } => http.put(address(Some(user))?).json(&json!({ "role": role })),
        MembersAction::Remove { user } => http.delete(address(Some(user))?),
    };
    let response = request
        .bearer_auth(token)
        .send()
        .await
        .map_err(|source| MembersCommandError::Unreachable { url: url.to_string(), source })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(MembersCommandError::Refused { status, body });
    }
    Ok(serde_json::from_str(&body).unwrap_or(json!({ "removed": true })))
}
