//! The local admin web page: server-rendered HTML pages and a JSON API under
//! `/api/v1`, both read from the journal (the only source of truth) and both
//! served by axum over HTTPS.
//!
//! # Security
//!
//! - HTTPS by default with the operator's certificate or a self-signed device
//!   certificate kept beside the journal ([`crate::tls::certificates`]);
//!   plain HTTP only when configured, and then only on loopback unless
//!   explicitly allowed.
//! - No default password: until the first administrator exists, every page
//!   leads to `/setup`, which creates it once (decided inside the journal's
//!   write transaction, so two racing requests cannot both win) for whoever
//!   types the device's one-time setup code
//!   ([`control::setup_code`](crate::control::setup_code)), or, with
//!   `setup_from_loopback_only`, only from the device itself.
//! - Passwords are argon2id hashes. A session is a random token in an
//!   `HttpOnly; Secure; SameSite=Strict` cookie; the journal keeps only its
//!   SHA-256 and an expiry. API clients may use `Authorization: Bearer` with a
//!   token made by an administrator.
//! - Every state-changing request with a session cookie carries the session's
//!   CSRF token (form field `csrf` or header `X-CSRF-Token`); login and setup,
//!   which have no session yet, refuse cross-site requests by `Origin` and
//!   `Sec-Fetch-Site`.
//! - Logins are rate limited per client address, and failures slow down
//!   the (account name, client address) pair that failed, never the
//!   account for everyone ([`throttle`]); an unknown name and a wrong
//!   password get the same answer in the same time.
//! - Every response carries a CSP without inline script, `frame-ancestors
//!   'none'`, `X-Frame-Options: DENY`, `nosniff`, `Referrer-Policy:
//!   same-origin` and `Cache-Control: no-store` (pages show patient data).
//! - Roles: viewer (read), operator (retry, discard, enable/disable and test
//!   endpoints), admin (users, tokens, audit log, settings, endpoint and
//!   route edits, rollback). Every change and every view of a payload is
//!   written to the audit log.
//!
//! # Configuration changes
//!
//! Endpoint, route and settings edits are written back to the configuration
//! file in place (comments and `${ENV}` references kept), validated exactly
//! as the file is at start, applied to the running gateway without a
//! restart, and kept as versions for rollback
//! ([`control::config`](crate::control::config)).
//!
//! # Actions
//!
//! Every action (retry, discard, endpoint and configuration changes, users
//! and tokens) is a service of [`crate::control`]: a handler decodes the
//! request, calls it with the caller as [`Actor`](crate::control::Actor),
//! and renders the result as HTML or JSON.

mod api;
mod assets;
mod auth;
mod chart;
mod format;
mod pages;
mod payload;
mod service;
mod templates;
mod throttle;

#[cfg(test)]
mod endpoint_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use crate::control::config::data_dir;
pub use crate::control::config::{reload, Applied, ChangeError, FieldError};
pub use crate::control::users::hash_password;
pub use crate::control::Role;

use crate::config::Config;
use crate::control::{Gateway, Operations};
use crate::health::Health;
use crate::journal::Journal;
use crate::service::{Heartbeat, Service};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin page TLS: {0}")]
    Tls(String),
    #[error("admin page: cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// Everything a handler may use.
pub struct AdminState {
    pub journal: Journal,
    /// The services every action goes through.
    pub ops: Operations,
    pub shutdown: CancellationToken,
    /// What the running endpoints report about their links.
    pub health: Health,
    /// Readiness and metrics of the gateway.
    pub service: Service,
    /// Login attempts per client address in the current minute.
    logins: Mutex<HashMap<IpAddr, (std::time::Instant, u32)>>,
    /// Failed logins per (account name, client address).
    throttle: throttle::LoginThrottle,
    /// A hash to verify against for unknown user names, so that their
    /// answer takes as long as a wrong password.
    dummy_hash: String,
    /// The pages' templates, loaded once.
    templates: templates::Templates,
}

pub type Shared = Arc<AdminState>;

impl AdminState {
    /// A page over `config` that cannot change the running gateway, with a
    /// registry of its own to which nothing reports (every enabled endpoint
    /// shows `unknown`).
    pub fn new(journal: Journal, config: Arc<Config>, shutdown: CancellationToken) -> Shared {
        Self::with_health(journal, config, shutdown, Health::new())
    }

    /// A page over `config` that cannot change the running gateway, showing
    /// what `health` hears from the endpoints.
    pub fn with_health(
        journal: Journal,
        config: Arc<Config>,
        shutdown: CancellationToken,
        health: Health,
    ) -> Shared {
        Self::with(Operations::fixed(journal, config, health), shutdown)
    }

    /// A page on a running gateway, able to apply configuration edits.
    pub fn supervised(gateway: Arc<dyn Gateway>, shutdown: CancellationToken) -> Shared {
        Self::with(Operations::running(gateway), shutdown)
    }

    fn with(ops: Operations, shutdown: CancellationToken) -> Shared {
        Arc::new(AdminState {
            journal: ops.journal().clone(),
            health: ops.health().clone(),
            service: ops.service().clone(),
            ops,
            shutdown,
            logins: Mutex::new(HashMap::new()),
            throttle: throttle::LoginThrottle::default(),
            dummy_hash: hash_password("not a password of anyone").unwrap_or_default(),
            templates: templates::Templates::load()
                .expect("the embedded templates parse (see templates::tests)"),
        })
    }

    /// The configuration in force now (it changes when an edit is applied).
    pub fn config(&self) -> Arc<Config> {
        self.ops.config()
    }
}

/// All routes, public and protected.
pub fn router(state: Shared) -> Router {
    let protected = Router::new()
        .route("/", get(pages::dashboard))
        .route("/dashboard/live", get(pages::dashboard_live))
        .route("/logs", get(pages::logs))
        .route("/logs/stream", get(pages::log_stream))
        .route("/messages/{id}", get(pages::message))
        .route("/messages/{id}/raw", get(pages::message_raw))
        .route(
            "/messages/{id}/deliveries/{oid}",
            get(pages::delivery_rendering),
        )
        .route("/messages/{id}/retry", post(pages::retry_one))
        .route("/messages/{id}/discard", post(pages::discard_one))
        .route("/errors", get(pages::errors))
        .route("/errors/retry", post(pages::retry_matching))
        .route("/errors/groups", post(pages::act_on_groups))
        .route("/errors/group/retry", post(pages::retry_group))
        .route("/errors/group/discard", post(pages::discard_group))
        .route("/stats", get(pages::stats))
        .route("/stats.csv", get(pages::stats_csv))
        .route(
            "/settings",
            get(pages::config::settings).post(pages::config::save),
        )
        .route(
            "/settings/factory-reset",
            get(pages::factory_reset::page).post(pages::factory_reset::confirm),
        )
        .route("/endpoints", get(pages::endpoints::list))
        .route("/endpoints/{name}", get(pages::endpoints::show))
        .route(
            "/endpoints/{name}/edit",
            get(pages::endpoints::edit_form).post(pages::endpoints::edit),
        )
        .route(
            "/endpoints/{name}/enable",
            post(pages::endpoints::set_enabled::<true>),
        )
        .route(
            "/endpoints/{name}/disable",
            post(pages::endpoints::set_enabled::<false>),
        )
        .route(
            "/settings/certificates/{section}",
            post(pages::certificates::upload_for_section)
                .layer(axum::extract::DefaultBodyLimit::max(auth::UPLOAD_LIMIT)),
        )
        .route(
            "/endpoints/{name}/certificates",
            post(pages::certificates::upload)
                .layer(axum::extract::DefaultBodyLimit::max(auth::UPLOAD_LIMIT)),
        )
        .route("/endpoints/{name}/test", post(pages::endpoints::test))
        .route("/endpoints/{name}/resume", post(pages::endpoints::resume))
        .route("/endpoints/{name}/promote", post(pages::endpoints::promote))
        .route(
            "/new-endpoint",
            get(pages::endpoints::new_form).post(pages::endpoints::create),
        )
        .route(
            "/new-endpoint/template/{name}",
            get(pages::endpoint_templates::form).post(pages::endpoint_templates::apply),
        )
        .route(
            "/routes",
            get(pages::config::routes).post(pages::config::save_routes_form),
        )
        .route("/config/versions", get(pages::config::versions))
        .route("/config/versions/{id}", get(pages::config::version))
        .route(
            "/config/versions/{id}/rollback",
            post(pages::config::rollback),
        )
        .route("/users", get(pages::users).post(pages::create_user))
        .route("/users/{name}/role", post(pages::set_user_role))
        .route("/users/{name}/password", post(pages::reset_password))
        .route("/users/{name}/unlock", post(pages::unlock_user))
        .route("/users/{name}/delete", post(pages::delete_user))
        .route("/tokens", post(pages::create_token))
        .route("/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/sessions/{id}/revoke", post(pages::revoke_session))
        .route("/update", get(pages::update_page))
        .route("/update/progress", get(pages::update_progress))
        .route(
            "/update/bundle",
            post(pages::upload_bundle).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/update/install", post(pages::install_bundle))
        .route("/update/discard", post(pages::discard_bundle))
        .route("/update/usb", post(pages::verify_usb_bundle))
        .route("/audit", get(pages::audit))
        .route("/audit/export.csv", get(pages::audit_export))
        .route("/account", get(pages::account).post(pages::change_password))
        .route("/logout", post(pages::logout))
        .route(
            "/api/v1/endpoints",
            get(api::endpoints).post(api::endpoints::create),
        )
        .route(
            "/api/v1/endpoints/{name}",
            get(api::endpoints::show).put(api::endpoints::edit),
        )
        .route(
            "/api/v1/endpoints/{name}/enable",
            post(api::endpoints::set_enabled::<true>),
        )
        .route(
            "/api/v1/endpoints/{name}/disable",
            post(api::endpoints::set_enabled::<false>),
        )
        .route("/api/v1/endpoints/{name}/test", post(api::endpoints::test))
        .route(
            "/api/v1/settings",
            get(api::config::settings).put(api::config::save),
        )
        .route(
            "/api/v1/routes",
            get(api::config::routes).put(api::config::save_routes),
        )
        .route("/api/v1/config/versions", get(api::config::versions))
        .route("/api/v1/config/versions/{id}", get(api::config::version))
        .route(
            "/api/v1/config/versions/{id}/rollback",
            post(api::config::rollback),
        )
        .route("/api/v1/messages", get(api::messages))
        .route("/api/v1/messages/retry", post(api::retry_matching))
        .route("/api/v1/messages/{id}", get(api::message))
        .route("/api/v1/messages/{id}/retry", post(api::retry_one))
        .route("/api/v1/messages/{id}/discard", post(api::discard_one))
        .route("/api/v1/stats", get(api::stats))
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/tokens", get(api::tokens).post(api::create_token))
        .route(
            "/api/v1/tokens/{id}",
            axum::routing::delete(api::revoke_token),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_caller,
        ));
    let scrape = Router::new()
        .route("/metrics", get(service::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            service::require_scraper,
        ));
    Router::new()
        .route("/healthz", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .merge(scrape)
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/setup", get(pages::setup_form).post(pages::setup))
        .route("/assets/app.css", get(assets::css))
        .route("/assets/app.js", get(assets::js))
        .merge(protected)
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::security_headers,
        ))
        .with_state(state)
}

/// The client address of a connection, set by the server per connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// A running admin server.
pub struct AdminServer {
    pub addr: SocketAddr,
    pub tls: bool,
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the configured address and serves a page that shows `config`
/// until `shutdown`.
pub fn start(
    config: Arc<Config>,
    journal: Journal,
    health: Health,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let state = AdminState::with_health(journal, config.clone(), shutdown.clone(), health);
    serve(state, &config, Heartbeat::default(), shutdown)
}

/// Binds the configured address and serves the page of a running gateway,
/// able to apply configuration edits, until `shutdown`.
/// Its accept loop beats `heartbeat`.
pub fn start_supervised(
    gateway: Arc<dyn Gateway>,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let config = gateway.config();
    let state = AdminState::supervised(gateway, shutdown.clone());
    serve(state, &config, heartbeat, shutdown)
}

fn serve(
    state: Shared,
    config: &Config,
    heartbeat: Heartbeat,
    shutdown: CancellationToken,
) -> Result<AdminServer, AdminError> {
    let admin = &config.admin;
    let listen = admin.listen_address();
    let listen_err = |reason: String| AdminError::Listen {
        addr: listen.clone(),
        reason,
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| listen_err(format!("not an address:port ({e})")))?;
    if !admin.tls && !addr.ip().is_loopback() && !admin.plain_http_on_network {
        return Err(listen_err(
            "plain HTTP (tls = false) is served on loopback only; set plain_http_on_network = true to allow it"
                .into(),
        ));
    }
    let acceptor = if admin.tls {
        let tls = crate::tls::admin_server_config(admin, &data_dir(config))
            .map_err(|e| AdminError::Tls(e.to_string()))?;
        Some(tokio_rustls::TlsAcceptor::from(tls))
    } else {
        None
    };
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| listen_err(crate::net::low_port::explain(&listen, e).to_string()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| listen_err(e.to_string()))?;
    let listener =
        tokio::net::TcpListener::from_std(std_listener).map_err(|e| listen_err(e.to_string()))?;
    let local = listener
        .local_addr()
        .map_err(|e| listen_err(e.to_string()))?;
    let tls = acceptor.is_some();
    // Who the page serves and how long a request's headers may take
    // ([`crate::net`]): `allow`, `max_connections_per_address`,
    // `max_connections` (a new address displaces the oldest connection of
    // the biggest holder), `header_timeout` for every request on a
    // connection, and the TLS handshake's 10 s.
    let limits = crate::net::http::Limits {
        label: ADMIN_ENDPOINT.into(),
        admission: crate::net::Admission::new(admin.admission()),
        counters: state.service.metrics.connections(ADMIN_ENDPOINT),
        header_timeout: admin.header_timeout.0,
    };
    let app = router(state);
    let task = tokio::spawn(crate::net::http::accept_loop(
        listener,
        acceptor,
        move |peer| app.clone().layer(axum::Extension(ClientAddr(peer))),
        limits,
        move || heartbeat.beat(),
        crate::service::progress::BEAT_EVERY,
        shutdown,
    ));
    tracing::info!(addr = %local, tls, "admin page listening");
    Ok(AdminServer {
        addr: local,
        tls,
        task,
    })
}

/// The `endpoint` label of the page's refused connections.
const ADMIN_ENDPOINT: &str = "admin";
