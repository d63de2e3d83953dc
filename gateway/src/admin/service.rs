//! What the service manager and the hospital's monitoring ask the page:
//! `/healthz` (the process answers), `/readyz` (every component can do its
//! job; 503 when one cannot) and `/metrics` (Prometheus).
//!
//! `/healthz` and `/readyz` need no session and carry no patient data: a
//! load balancer or a monitoring probe calls them as they are. `/metrics`
//! is behind the page's login like every protected route, and also takes
//! the configured scrape token (`[admin] metrics_token`) as
//! `Authorization: Bearer`, so a Prometheus can scrape it without an
//! account.

use super::auth;
use super::Shared;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<Shared>) -> Response {
    let readiness = state
        .service
        .readiness(&state.journal, &state.config(), &state.health)
        .await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

pub async fn metrics(State(state): State<Shared>) -> Response {
    let text = state
        .service
        .metrics_text(&state.journal, &state.config())
        .await;
    (
        [(header::CONTENT_TYPE, crate::service::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// Lets a request with the scrape token through; anything else is asked
/// for a caller as every protected route is.
pub async fn require_scraper(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let config = state.config();
    if let (Some(expected), Some(given)) = (
        config.admin.metrics_token(),
        auth::bearer(request.headers()),
    ) {
        // Compared as digests: equal length, no early exit on the secret.
        if auth::token_hash(expected) == auth::token_hash(&given) {
            return next.run(request).await;
        }
    }
    auth::require_caller(State(state), request, next).await
}
