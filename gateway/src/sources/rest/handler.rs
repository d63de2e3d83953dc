//! One request: the checks in the order the module note gives, the body
//! read under its cap and deadline, the messages journalled, the answer.

use super::auth::{Check, Denied};
use crate::config::{BundleHandling, Endpoint, RestBody, RestConfig, RestPath};
use crate::journal::{IngestError, Receipt};
use crate::rate::Bucket;
use crate::sources::SourceContext;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use ecko_message::Envelope;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The client's address, added to each connection's router.
#[derive(Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// What the 503 of a refusing journal asks the client to wait.
const RETRY_JOURNAL: Duration = Duration::from_secs(30);

pub struct Shared {
    pub endpoint: String,
    pub cx: SourceContext,
    paths: Vec<RestPath>,
    check: Check,
    bucket: Option<Bucket>,
    max_body: usize,
    body_timeout: Duration,
}

impl Shared {
    pub fn new(
        endpoint: &Endpoint,
        config: &RestConfig,
        check: Check,
        cx: SourceContext,
    ) -> Shared {
        Shared {
            endpoint: endpoint.name.clone(),
            cx,
            paths: config.paths.clone(),
            check,
            bucket: endpoint
                .protection
                .rate_limit
                .map(|r| Bucket::new(r, Instant::now())),
            max_body: usize::try_from(config.max_body_size.0).unwrap_or(usize::MAX),
            body_timeout: config.body_timeout.0,
        }
    }

    /// The path configuration serving `path`: exact, or below a FHIR path.
    fn path(&self, path: &str) -> Option<&RestPath> {
        let path = path.trim_end_matches('/');
        self.paths.iter().find(|p| {
            let base = p.path.trim_end_matches('/');
            path == base
                || (p.accept == RestBody::Fhir
                    && path.strip_prefix(base).is_some_and(|r| r.starts_with('/')))
        })
    }
}

pub fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

/// A refusal: status, message, and headers to add.
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        retry_after: None,
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "error",
                "code": issue_code(self.status),
                "diagnostics": self.message,
            }],
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/fhir+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The FHIR issue type of a refusal.
fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "login",
        403 => "forbidden",
        404 | 405 => "not-supported",
        408 => "timeout",
        413 => "too-costly",
        429 => "throttled",
        503 => "transient",
        _ => "invalid",
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    peer: Option<axum::Extension<Peer>>,
    request: Request,
) -> Response {
    let peer = peer.map(|p| p.0 .0);
    match accept(&shared, request).await {
        Ok(response) => response,
        Err(refusal) => {
            // A body that was sent but could not be taken as a message is a
            // message refused; credentials, rate and type refusals are not.
            if matches!(refusal.status.as_u16(), 400 | 408 | 413) {
                shared.cx.refused_unreadable();
            }
            tracing::info!(
                endpoint = %shared.endpoint,
                peer = ?peer,
                status = refusal.status.as_u16(),
                reason = %refusal.message,
                "REST request refused"
            );
            refusal.into_response()
        }
    }
}

async fn accept(shared: &Shared, request: Request) -> Result<Response, Refusal> {
    let (parts, body) = request.into_parts();
    let path = shared
        .path(parts.uri.path())
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "no such path"))?;
    if parts.method != Method::POST {
        return Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not taken here; POST is", parts.method),
        ));
    }
    shared
        .check
        .check(&parts.headers)
        .await
        .map_err(|d| match d {
            Denied::Unauthenticated(m) => refuse(StatusCode::UNAUTHORIZED, m),
            Denied::Forbidden(m) => refuse(StatusCode::FORBIDDEN, m),
            Denied::Unavailable(m) => Refusal {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: m,
                retry_after: Some(Duration::from_secs(5)),
            },
        })?;
    if let Some(bucket) = &shared.bucket {
        bucket.take(Instant::now()).map_err(|wait| Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "over the endpoint's rate limit".into(),
            retry_after: Some(wait),
        })?;
    }
    let content_type = content_type(&parts.headers);
    if !takes(path.accept, &content_type) {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "`{content_type}` is not taken here; {}",
                match path.accept {
                    RestBody::Fhir => "application/fhir+json is",
                    RestBody::Json => "application/json is",
                    RestBody::Text => "text/* is",
                }
            ),
        ));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_body as u64) {
        return Err(too_large(shared.max_body));
    }
    let bytes =
        match tokio::time::timeout(shared.body_timeout, read_capped(body, shared.max_body)).await {
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the body did not arrive within {:?}", shared.body_timeout),
                ))
            }
            Ok(Err(Read::TooLarge)) => return Err(too_large(shared.max_body)),
            Ok(Err(Read::Failed(e))) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {e}"),
                ))
            }
            Ok(Ok(b)) => b,
        };
    let key = parts
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .map(str::to_string);
    // The header is the client's promise (422 on another body under it);
    // a Bundle's identifier is the content's, kept as the journal's rule.
    let promised = key.is_some();
    let envelopes = envelopes(&shared.endpoint, path, &content_type, bytes, key)?;
    let mut receipts = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let stored = if promised {
            shared.cx.ingest_keyed(e).await
        } else {
            shared.cx.ingest(e).await
        };
        receipts.push(stored.map_err(journal_refusal)?);
    }
    Ok(accepted(&receipts))
}

fn too_large(max: usize) -> Refusal {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over the endpoint's {max} bytes"),
    )
}

/// The media type, lower case, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn takes(accept: RestBody, media: &str) -> bool {
    match accept {
        RestBody::Fhir => matches!(
            media,
            "application/fhir+json" | "application/json+fhir" | "application/json"
        ),
        RestBody::Json => media == "application/json" || media.ends_with("+json"),
        RestBody::Text => media.starts_with("text/"),
    }
}

enum Read {
    TooLarge,
    Failed(String),
}

/// The body, refused as soon as it passes `max`: never more than `max`
/// bytes are held.
async fn read_capped(body: Body, max: usize) -> Result<Vec<u8>, Read> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Read::Failed(e.to_string()))?;
        if out.len() + chunk.len() > max {
            return Err(Read::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The messages a body becomes.
fn envelopes(
    endpoint: &str,
    path: &RestPath,
    content_type: &str,
    bytes: Vec<u8>,
    key: Option<String>,
) -> Result<Vec<Envelope>, Refusal> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, m);
    let envelope = |message_type: String, content_type: &str, payload: Vec<u8>, key| Envelope {
        source: endpoint.to_string(),
        dedup_key: key,
        message_type,
        content_type: content_type.to_string(),
        control_id: None,
        patient_id: None,
        payload,
        ack: None,
        hints: ecko_message::DecodeHints {
            charset: Some("UNICODE UTF-8".into()),
            time_zone: None,
        },
    };
    match path.accept {
        RestBody::Json => {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
                .map_err(|e| bad(format!("the body is not JSON: {e}")))?;
            let t = path.message_type.clone().unwrap_or_else(|| "JSON".into());
            Ok(vec![envelope(t, content_type, bytes, key)])
        }
        RestBody::Text => {
            std::str::from_utf8(&bytes)
                .map_err(|e| bad(format!("the body is not UTF-8 text: {e}")))?;
            let t = path.message_type.clone().unwrap_or_else(|| "TEXT".into());
            Ok(vec![envelope(t, content_type, bytes, key)])
        }
        RestBody::Fhir => {
            const FHIR_JSON: &str = "application/fhir+json";
            let posted = ecko_fhir::inbound::read(&bytes).map_err(|e| bad(e.to_string()))?;
            let key = key.or_else(|| posted.identifier.clone());
            let type_of = |resource: &str| {
                path.message_type
                    .clone()
                    .unwrap_or_else(|| format!("FHIR^{resource}"))
            };
            if path.bundles == BundleHandling::SplitTransactions && posted.is_request_bundle() {
                let entries = posted
                    .entry_transactions()
                    .map_err(|e| bad(e.to_string()))?;
                if entries.is_empty() {
                    return Err(bad("the Bundle has no entries to keep".into()));
                }
                return Ok(entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, (resource_type, bundle))| {
                        envelope(
                            type_of(&resource_type),
                            FHIR_JSON,
                            bundle.to_string().into_bytes(),
                            key.as_ref().map(|k| format!("{k}#{i}")),
                        )
                    })
                    .collect());
            }
            if path.bundles == BundleHandling::Split && posted.is_request_bundle() {
                let entries = posted.entries().map_err(|e| bad(e.to_string()))?;
                if entries.is_empty() {
                    return Err(bad("the Bundle has no entries to keep".into()));
                }
                return Ok(entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, (resource_type, resource))| {
                        envelope(
                            type_of(&resource_type),
                            FHIR_JSON,
                            resource.to_string().into_bytes(),
                            key.as_ref().map(|k| format!("{k}#{i}")),
                        )
                    })
                    .collect());
            }
            let t = type_of(&posted.resource_type);
            Ok(vec![envelope(t, FHIR_JSON, bytes, key)])
        }
    }
}

fn journal_refusal(e: IngestError) -> Refusal {
    match e {
        IngestError::NoRoute { .. }
        | IngestError::Unmappable { .. }
        | IngestError::KeyReused { .. } => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("not stored: {e}; keep the message and try again"),
            retry_after: Some(RETRY_JOURNAL),
        },
    }
}

/// 201 for one message, 202 for several; the first's `Location`.
fn accepted(receipts: &[Receipt]) -> Response {
    let ids: Vec<i64> = receipts.iter().map(|r| r.message_id).collect();
    let replayed = receipts.iter().all(|r| r.duplicate);
    let status = if receipts.len() == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let body = serde_json::json!({ "message_ids": ids, "duplicate": replayed });
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let h = response.headers_mut();
    if let Some(first) = ids.first() {
        if let Ok(v) = HeaderValue::from_str(&format!("/messages/{first}")) {
            h.insert(header::LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&first.to_string()) {
            h.insert("x-message-id", v);
        }
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests;
