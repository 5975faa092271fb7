//! The one place domains are wired in. Adding a domain is one line in [`start_all`]
//! (and its crate in `Cargo.toml`); nothing in `actors/` or the core changes.

use std::sync::Arc;

use boardsync_actors::{CacheRuntime, Domains, PageLimits};
use boardsync_core::{AdapterContext, DomainAdapters, DomainSettings, ScopeStore};
use sqlx::PgPool;

use crate::settings::Settings;
use crate::startup::StartupError;

/// Starts every domain on the adapter the settings pick.
pub async fn start_all(wiring: &Wiring<'_>) -> Result<Domains, StartupError> {
    let mut domains = Domains::new(wiring.runtime.clone());
    wiring.start::<boardsync_chat::Chat>(&mut domains).await?;
    wiring.start::<boardsync_kanban::Kanban>(&mut domains).await?;
    wiring.start::<boardsync_poll::Poll>(&mut domains).await?;
    wiring.start::<boardsync_whiteboard::Whiteboard>(&mut domains).await?;
    wiring.check_sections(&domains)?;
    Ok(domains)
}

pub struct Wiring<'a> {
    pub pool: PgPool,
    pub scopes: Arc<ScopeStore>,
    pub settings: &'a Settings,
    pub runtime: CacheRuntime,
}

impl Wiring<'_> {
    async fn start<D: DomainAdapters>(&self, domains: &mut Domains) -> Result<(), StartupError> {
        let section = self
            .settings
            .domains
            .get(D::NAME)
            .ok_or_else(|| StartupError::Settings(format!("missing setting `domains.{}`", D::NAME)))?;
        let settings = DomainSettings::<D>::parse(&self.settings.framework, section)
            .map_err(|e| StartupError::Settings(e.to_string()))?;
        let context = AdapterContext { pool: self.pool.clone(), settings };
        let pages = PageLimits { default: self.settings.api.default_page_size, max: self.settings.api.max_page_size };
        let spacetimedb = self.settings.spacetimedb.target(D::NAME);
        let adapter = self.settings.adapter();
        domains
            .start::<D>(context, spacetimedb, self.scopes.clone(), pages)
            .await
            .map_err(|error| StartupError::Domain { domain: D::NAME, error })?;
        tracing::info!(domain = D::NAME, adapter = adapter.as_str(), "domain started");
        Ok(())
    }

    /// A `[domains.x]` section for a domain that is not wired in is a typo.
    fn check_sections(&self, domains: &Domains) -> Result<(), StartupError> {
        let unknown: Vec<&String> = self.settings.domains.keys().filter(|k| domains.get(k).is_none()).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(StartupError::Settings(format!("unknown domain section(s) under `domains`: {unknown:?}")))
        }
    }
}
