//! Builds the application from settings. The binary and the test harness both go
//! through [`Application::build`], so tests exercise the production code path.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::body::BoxBody;
use actix_http::{HttpService, Request, Response};
use actix_service::{map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Server, Service, ServiceResponse};
use actix_web::{web, App};
use boardsync_actors::{CacheMetrics, CacheRuntime, Domains};
use boardsync_core::{AdapterKind, DomainError, ScopeStore};
use sqlx::PgPool;

use crate::domains::{self, Wiring};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes;
use crate::settings::{ServerSettings, Settings};
use crate::upgrade;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot reach PostgreSQL at database.url: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot migrate PostgreSQL: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("{0}")]
    Settings(String),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthSetupError),
    #[error("cannot start the {domain} domain: {error}")]
    Domain { domain: &'static str, error: DomainError },
}

/// Cross-origin requests from the configured browser origins; none by default.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = origins.iter().fold(actix_cors::Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods(["GET", "POST", "PUT", "DELETE", "PATCH"])
        .allowed_headers([actix_web::http::header::AUTHORIZATION, actix_web::http::header::CONTENT_TYPE])
        .expose_headers([actix_web::http::header::RETRY_AFTER])
        .max_age(3600)
}

/// What every request handler may use.
pub struct AppState {
    pub settings: Settings,
    /// This process' name among the nodes on one PostgreSQL (`server.node_name`).
    pub node: String,
    pub adapter: AdapterKind,
    pub pool: PgPool,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    pub scopes: Arc<ScopeStore>,
    pub domains: Domains,
    pub verifier: crate::auth::Verifier,
    pub limits: crate::limits::UserLimits,
    /// Who is connected to which scope (live sockets), on this node and others.
    pub presence: Arc<boardsync_actors::presence::PresenceHub>,
    /// Whether this node hears the others' presence, and how many it hears.
    pub presence_relay: Arc<boardsync_actors::presence_relay::RelayStatus>,
    /// The API document, built on its first request: it depends only on the domains
    /// and settings, which do not change while the server runs.
    pub openapi: std::sync::OnceLock<serde_json::Value>,
    /// Set when a graceful stop begins: live sockets close (1001, going away) after
    /// the command they are running, so their clients reconnect elsewhere or later
    /// instead of holding the stop for `server.shutdown_timeout_secs`.
    pub shutting_down: tokio::sync::watch::Sender<bool>,
}

pub struct Application {
    port: u16,
    server: Server,
    stopping: Stopping,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let verifier = crate::auth::Verifier::new(&settings.auth)?;
        let settings_limits = settings.limits.clone();
        let pool =
            settings.database.connect(settings.database.max_connections).await.map_err(StartupError::Database)?;
        boardsync_core::migrations::run_all(&pool, &[]).await?;
        let adapter = settings.adapter();
        let scopes = Arc::new(ScopeStore::new(pool.clone()));
        // Changes of access made by other backends, or with plain SQL.
        scopes.follow_changes();
        let metrics = Metrics::new(adapter.as_str());
        let cache_metrics = CacheMetrics::register(metrics.registry()).expect("cache metric names are unique");
        // Bound before the domains start: the node's default name carries the port.
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Bind { address, source })?;
        let port =
            listener.local_addr().map_err(|source| StartupError::Bind { address: "listener".into(), source })?.port();
        let node = ServerSettings { port, ..settings.server.clone() }.node();
        let wiring = Wiring {
            pool: pool.clone(),
            scopes: scopes.clone(),
            settings: &settings,
            runtime: CacheRuntime::start(cache_metrics, settings.warmup.max_concurrent_scopes, node.clone()),
        };
        let domains = domains::start_all(&wiring).await?;

        let presence = Arc::new(boardsync_actors::presence::PresenceHub::new(domains.names()));
        let presence_relay =
            boardsync_actors::presence_relay::start(presence.clone(), &pool, settings.presence.relay());
        tracing::info!(adapter = adapter.as_str(), port, "boardsync starting");
        let shutdown_timeout = settings.server.shutdown_timeout_secs;
        let state = web::Data::new(AppState {
            node,
            presence,
            presence_relay,
            openapi: std::sync::OnceLock::new(),
            shutting_down: tokio::sync::watch::Sender::new(false),
            adapter,
            pool,
            metrics,
            http: reqwest::Client::builder().build()?,
            scopes,
            domains,
            settings,
            verifier,
            limits: crate::limits::UserLimits::new(settings_limits),
        });
        let max_body_bytes = state.settings.api.max_body_bytes;
        let cors_origins = state.settings.api.cors_allowed_origins.clone();
        let switched = upgrade::Switched::default();
        let stopping = Stopping {
            shutting_down: state.shutting_down.clone(),
            domains: state.domains.clone(),
            drain_timeout: Duration::from_secs(state.settings.server.drain_timeout_secs),
            shutdown_timeout: Duration::from_secs(shutdown_timeout),
            switched: switched.clone(),
        };

        let app = move || {
            let metrics = state.metrics.clone();
            App::new()
                // `/api/chat/general/` is `/api/chat/general`.
                .wrap(actix_web::middleware::NormalizePath::trim())
                .wrap(cors(&cors_origins))
                .app_data(state.clone())
                .wrap_fn(move |request, service| {
                    let started = Instant::now();
                    let method = request.method().to_string();
                    let route = request.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let metrics = metrics.clone();
                    let response = service.call(request);
                    async move {
                        let response = response.await?;
                        let status = response.status().as_u16().to_string();
                        metrics.http_requests.with_label_values(&[&method, &route, &status]).inc();
                        metrics
                            .http_duration
                            .with_label_values(&[&method, &route])
                            .observe(started.elapsed().as_secs_f64());
                        Ok(response)
                    }
                })
                .app_data(json_config(max_body_bytes))
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError(DomainError::bad_request("invalid_query", error.to_string())).into()
                }))
                .app_data(web::PathConfig::default().error_handler(|error, _| {
                    ApiError(DomainError::bad_request("invalid_path", error.to_string())).into()
                }))
                .service(routes::health::health)
                .service(routes::metrics::metrics)
                .service(routes::openapi::openapi)
                .service(routes::web::root)
                .service(routes::web::file)
                // Before the domain routes: `/api/dev/login` is not a domain's scope.
                .service(routes::web::dev_login)
                // Admin routes first: `/api/admin/...` must not match `/api/{domain}/{scope}`.
                .service(routes::admin::list_scopes)
                .service(routes::admin::put_scope)
                .service(routes::admin::get_scope)
                .service(routes::admin::patch_scope)
                .service(routes::admin::delete_scope)
                .service(routes::admin::move_scope)
                .service(routes::admin::warmup_status)
                .service(routes::admin::rewarm_all)
                .service(routes::admin::rewarm_scope)
                .service(routes::admin::rewarm_domain)
                .service(routes::admin::outbox)
                .service(routes::admin::dead_letters)
                .service(routes::admin::replay_dead_letter)
                .service(routes::admin::discard_dead_letter)
                .service(routes::members::admin_list_members)
                .service(routes::members::admin_set_member)
                .service(routes::members::admin_remove_member)
                .service(routes::members::list_members)
                .service(routes::members::set_member)
                .service(routes::members::remove_member)
                .service(routes::live::live)
                .service(routes::domain::scopes)
                .service(routes::domain::snapshot)
                .service(routes::domain::command)
                .default_service(web::to(|request: actix_web::HttpRequest| async move {
                    let error = match routes::allowed_methods(request.path()) {
                        Some(allow) => {
                            let message = format!("{} takes {allow}", request.path());
                            return Ok(ApiError(DomainError::new(
                                boardsync_core::ErrorKind::MethodNotAllowed,
                                "method_not_allowed",
                                message,
                            ))
                            .error_response_allowing(allow));
                        }
                        None => DomainError::not_found("no_route", "no such route"),
                    };
                    Err::<actix_web::HttpResponse, _>(ApiError(error))
                }))
        };
        // What `HttpServer` would build, plus the upgrade service: a request to switch
        // protocols (the `/live` WebSocket) runs through the same application, and the
        // connection is then the route's own (see `upgrade`).
        let builder = actix_server::Server::build();
        let idle_connections_close = builder.graceful_shutdown_signal();
        let local_addr =
            listener.local_addr().map_err(|source| StartupError::Bind { address: "listener".into(), source })?;
        let server = builder
            .shutdown_timeout(shutdown_timeout)
            // Signals are ours: writes stop before requests finish and the outbox drains.
            .disable_signals()
            .listen("boardsync", listener, move || {
                let (closing, switched) = (idle_connections_close.clone(), switched.clone());
                HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let closing = closing.clone();
                        async move { closing.notified().await }
                    })
                    // actix-web's defaults.
                    .client_request_timeout(Duration::from_secs(5))
                    .client_disconnect_timeout(Duration::from_secs(1))
                    // Replies and events are small writes a client waits for: never hold
                    // one back for Nagle's algorithm (the OS default keeps it on).
                    .tcp_nodelay(true)
                    .local_addr(local_addr)
                    .upgrade(upgrade::service(application(app()), switched.clone()))
                    .finish(application(app()))
                    .tcp()
            })
            .map_err(|source| StartupError::Bind { address: "listener".into(), source })?
            .run();

        Ok(Self { port, server, stopping })
    }

    /// The port actually bound (settings may ask for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT (both graceful), then: new writes are refused
    /// (503 `shutting_down`), live sockets answer the commands they read and close
    /// within `server.shutdown_timeout_secs`, HTTP requests in flight (durable writes)
    /// finish within it (requests go on being served while the sockets close, so this
    /// is mostly the same wait), and each domain's outbox drains into PostgreSQL
    /// within `server.drain_timeout_secs`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            served = &mut server => return served,
            signal = stop_signal() => tracing::info!(signal, "shutting down: finishing requests, draining the outbox"),
        }
        for domain in self.stopping.domains.iter() {
            domain.stop_writes();
        }
        self.stopping.shutting_down.send_replace(true);
        // Live sockets close on their own now, once the commands they read are
        // answered. They run on the server's workers, outside its count of
        // connections: the workers stop once the sockets are closed.
        let still_open = self.stopping.switched.all_closed(self.stopping.shutdown_timeout).await;
        if still_open > 0 {
            tracing::warn!(still_open, "live sockets still open at server.shutdown_timeout_secs: stopping them");
        }
        // Awaited to the end (actix gives requests in flight its own
        // shutdown_timeout): the drain below must not start while a request can still
        // write to the cache, or its write would escape the drain's count.
        let (served, ()) = tokio::join!(server, handle.stop(true));
        let mut undrained = 0;
        for domain in self.stopping.domains.iter() {
            let left = domain.drain(self.stopping.drain_timeout).await;
            if left > 0 {
                tracing::error!(domain = domain.name(), left, "writes not in PostgreSQL at exit");
                undrained += left;
            }
        }
        served?;
        if undrained > 0 {
            // Not a clean stop: an orchestrator should see it (the cache keeps what its
            // outbox holds; a cache that lost power too has lost the rest).
            return Err(std::io::Error::other(format!("{undrained} writes were not in PostgreSQL at exit")));
        }
        Ok(())
    }
}

/// What a graceful stop needs.
struct Stopping {
    shutting_down: tokio::sync::watch::Sender<bool>,
    domains: Domains,
    drain_timeout: Duration,
    shutdown_timeout: Duration,
    /// The live sockets still open.
    switched: upgrade::Switched,
}

/// SIGTERM or SIGINT (Ctrl-C), whichever comes first.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            tracing::error!("cannot listen for SIGTERM/SIGINT: stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The application as actix-http serves it, as `HttpServer` would wire it: every
/// answer, a refusal too, a plain response.
fn application<T, B>(
    app: App<T>,
) -> impl ServiceFactory<Request, Config = (), Response = Response<BoxBody>, Error = Response<BoxBody>, InitError = ()>
where
    T: ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    map_config(app.into_factory(), |()| AppConfig::default())
        .map(|response: ServiceResponse<B>| response.map_into_boxed_body().into())
        .map_err(|error: actix_web::Error| error.error_response().into())
}

/// JSON bodies: malformed JSON is a 400 and an oversized body a 413, both as JSON
/// errors, and neither reaches a domain.
fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(|error, _| {
        use actix_web::error::JsonPayloadError;
        let error = match &error {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                DomainError::too_large("body_too_large", error.to_string())
            }
            JsonPayloadError::ContentType => {
                DomainError::bad_request("unsupported_content_type", "send the body as application/json")
            }
            _ => DomainError::bad_request("malformed_json", error.to_string()),
        };
        ApiError(error).into()
    })
}
