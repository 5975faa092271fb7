//! The one place domains are wired in. Adding a domain is one line in [`for_each`]
//! (and its crate in `Cargo.toml`); nothing in `actors/` or the core changes.

use std::sync::Arc;

use async_trait::async_trait;
use boardsync_actors::{CacheRuntime, Domains, PageLimits};
use boardsync_core::{AdapterContext, DomainAdapters, DomainSettings, ScopeStore};
use sqlx::PgPool;

use crate::settings::Settings;
use crate::startup::StartupError;

/// Something done once for each wired domain (starting it, draining its outbox).
#[async_trait]
pub trait EachDomain: Send {
    type Error: Send;
    async fn visit<D: DomainAdapters>(&mut self) -> Result<(), Self::Error>;
}

/// Every wired domain, in one place: adding a domain is one line here.
pub async fn for_each<V: EachDomain>(visitor: &mut V) -> Result<(), V::Error> {
    visitor.visit::<boardsync_chat::Chat>().await?;
    visitor.visit::<boardsync_kanban::Kanban>().await?;
    visitor.visit::<boardsync_poll::Poll>().await?;
    visitor.visit::<boardsync_whiteboard::Whiteboard>().await
}

/// Starts every domain on the adapter the settings pick.
pub async fn start_all(wiring: &Wiring<'_>) -> Result<Domains, StartupError> {
    let mut starting = Starting { wiring, domains: Domains::new(wiring.runtime.clone()) };
    for_each(&mut starting).await?;
    wiring.check_sections(&starting.domains)?;
    Ok(starting.domains)
}

struct Starting<'w, 'a> {
    wiring: &'w Wiring<'a>,
    domains: Domains,
}

#[async_trait]
impl EachDomain for Starting<'_, '_> {
    type Error = StartupError;

    async fn visit<D: DomainAdapters>(&mut self) -> Result<(), StartupError> {
        self.wiring.start::<D>(&mut self.domains).await
    }
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
        let spacetimedb = self.settings.spacetimedb.targets(D::NAME);
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
