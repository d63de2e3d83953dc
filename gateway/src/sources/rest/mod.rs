//! The REST listener: FHIR resources and Bundles, and custom JSON or text
//! bodies, posted over HTTPS and answered only after the journal commit.
//!
//! # Answers
//!
//! A `POST` to a configured path is checked in this order, each refusal
//! storing nothing:
//!
//! - 404 an unknown path, 405 another method;
//! - 401 no or wrong credentials (API key compared in constant time, a
//!   bearer JWT that does not verify against the JWKS, or a token the
//!   introspection endpoint does not call active), 403 a valid token
//!   without the required scope, 503 with `Retry-After` when the
//!   introspection endpoint cannot judge the token; a client certificate
//!   is checked by TLS itself (`tls.require_client_cert`) before any
//!   request is read;
//! - 429 with `Retry-After` over the endpoint's `rate_limit` (one token
//!   bucket for the endpoint, whatever the client);
//! - 415 a `Content-Type` the path does not take;
//! - 413 a body over `max_body_size`: refused from its `Content-Length`
//!   before a byte of it is read, or as soon as the bytes read pass the
//!   cap; never more than the cap is held;
//! - 408 a body that does not arrive within `body_timeout`;
//! - 400 a FHIR body that is not a resource or a Bundle of resources
//!   ([`ecko_fhir::inbound`]), JSON that is not JSON, text that is not
//!   UTF-8;
//! - 422 no route takes the message; 503 with `Retry-After` when the
//!   journal refuses it (disk full, over its cap, the endpoint disabled
//!   while the request was in flight): the client keeps its copy and
//!   tries again.
//!
//! Otherwise 201 (one message) or 202 (a Bundle split per entry) once the
//! messages have committed, with `Location: /messages/<id>` of the first,
//! `X-Message-Id`, and a JSON body with every id.
//!
//! # Idempotency
//!
//! The `Idempotency-Key` header, or else a Bundle's `identifier`
//! (`system|value`), is the message's duplicate key in the journal: a
//! repeat with the same body answers the same ids and stores nothing
//! (`Idempotent-Replayed: true`). A split Bundle's entries carry the key
//! with `#<index>`, so a request cut short after some entries committed
//! stores only the rest when it is repeated. A different body under an
//! `Idempotency-Key` already seen is the client's mistake: 422, nothing
//! stored (as the HTTP Idempotency-Key draft asks). A Bundle's identifier
//! follows the journal's rule instead: a different body under it (a
//! Bundle sent again with a fresh `timestamp`, a corrected document) is
//! stored anew.
//!
//! # Connections
//!
//! Through [`crate::net::http`]: admitted by [`crate::net::Admission`]
//! (`allow`, `max_connections_per_address`, `max_connections`), each
//! request's headers within `header_timeout`, the TLS handshake within
//! 10 s, the body within `body_timeout`.

pub(crate) mod auth;
mod handler;
mod introspection;

use super::SourceContext;
use crate::config::{Endpoint, RestConfig};
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::{AuthSetupError, Check};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("endpoint `{endpoint}`: cannot listen on {addr}: {reason}")]
    Bind {
        endpoint: String,
        addr: String,
        reason: String,
    },
    #[error("endpoint `{endpoint}`: {source}")]
    Tls {
        endpoint: String,
        source: crate::tls::TlsError,
    },
    #[error("endpoint `{endpoint}`: {source}")]
    Auth {
        endpoint: String,
        source: AuthSetupError,
    },
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: RestConfig,
    shared: Arc<handler::Shared>,
}

impl Listener {
    /// Binds the endpoint's address and loads what its checks need (TLS
    /// certificates, a JWKS file). Fails at start-up, not later.
    pub async fn bind(
        endpoint: &Endpoint,
        config: &RestConfig,
        cx: SourceContext,
    ) -> Result<Listener, ListenError> {
        let name = endpoint.name.clone();
        let addr = config.listen.clone().unwrap_or_default();
        let bind_err = |reason: String| ListenError::Bind {
            endpoint: name.clone(),
            addr: addr.clone(),
            reason,
        };
        let parsed: SocketAddr = addr.parse().map_err(|e| bind_err(format!("{e}")))?;
        let tls = prepare(endpoint, config)?;
        let check = Check::from_config(&config.auth).map_err(|source| ListenError::Auth {
            endpoint: name.clone(),
            source,
        })?;
        let tcp = match crate::net::low_port::bind(&parsed.to_string()).await {
            Ok(t) => t,
            Err(e) => {
                cx.health.down(
                    &endpoint.name,
                    cx.journal.now_ms(),
                    format!("{}{addr}: {e}", crate::service::readiness::LISTEN_FAILED),
                );
                return Err(bind_err(e.to_string()));
            }
        };
        let bound = tcp.local_addr().map_or(addr.clone(), |a| a.to_string());
        cx.health.up(
            &endpoint.name,
            cx.journal.now_ms(),
            format!("listening on {bound}"),
        );
        Ok(Listener {
            tcp,
            tls,
            config: config.clone(),
            shared: Arc::new(handler::Shared::new(endpoint, config, check, cx)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves until shutdown.
    pub async fn serve(self) {
        let cx = self.shared.cx.clone();
        let endpoint = self.shared.endpoint.clone();
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(endpoint = %endpoint, %addr, tls = self.tls.is_some(), "REST listener ready");
        let limits = crate::net::http::Limits {
            label: endpoint.clone(),
            admission: crate::net::Admission::new(self.config.admission()),
            counters: cx.counters.connections.clone(),
            header_timeout: self.config.header_timeout.0,
        };
        let router = handler::router(self.shared.clone());
        let heartbeat = cx.heartbeat.clone();
        crate::net::http::accept_loop(
            self.tcp,
            self.tls,
            move |peer| router.clone().layer(axum::Extension(handler::Peer(peer))),
            limits,
            move || heartbeat.beat(),
            crate::service::progress::BEAT_EVERY,
            cx.shutdown.clone(),
        )
        .await;
        cx.health.down(&endpoint, cx.journal.now_ms(), "stopped");
        tracing::info!(endpoint = %endpoint, "REST listener stopped");
    }
}

/// The listener's TLS acceptor (HTTP/1.1), or none for plain HTTP; also
/// what `check-config` runs as the endpoint's preflight.
pub fn prepare(
    endpoint: &Endpoint,
    config: &RestConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ListenError> {
    let Some(settings) = &config.tls else {
        return Ok(None);
    };
    let server = crate::tls::server_config(settings).map_err(|source| ListenError::Tls {
        endpoint: endpoint.name.clone(),
        source,
    })?;
    let mut server = Arc::unwrap_or_clone(server);
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))))
}
