//! Sends transformed messages to a FHIR R4 server as transaction Bundles.
//!
//! Each payload is a `transaction` Bundle already shaped for this
//! destination by `ecko-fhir` (code map, updates by id; see
//! `ecko_fhir::shape`). When the endpoint allows batches (`max_batch > 1`)
//! the Bundles of several queued messages of one lane go as one transaction
//! (`ecko_fhir::shape::merge`), as many as fit `max_entries`. If the server
//! refuses a merged Bundle as invalid, the messages are sent again one at a
//! time so that only the message at fault goes dead. The sink itself only
//! authenticates, posts and classifies the answer.
//!
//! Outcomes: 2xx delivered; 408, 429, 5xx and network or TLS errors
//! retryable (with the server's `Retry-After`); any other 4xx permanent, with
//! the server's OperationOutcome kept as the attempt's error. A 401 with
//! OAuth drops the token and tries once more with a fresh one; a 401 after
//! that, and any 403, stay retryable with a message saying so: they are
//! about the endpoint's credentials, and making them permanent would turn
//! the whole queue dead on one rotated secret.

pub mod auth;
mod probe;

use super::capture::Capture;
use super::{Delivery, Outcome, Sink};
use crate::config::{Endpoint, FhirAuth, FhirSinkConfig};
use auth::Auth;
use ecko_fhir::shape::{entry_count, merge};
use ecko_fhir::Payload;
use serde_json::Value;
use std::time::Duration;

/// How much of a server's answer is kept on the attempt.
const KEEP_RESPONSE: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FhirSinkError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

pub struct FhirSink {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    max_batch: usize,
    max_entries: usize,
}

/// The answer to one POST.
enum Sent {
    Delivered(String),
    Retry(String, Option<Duration>),
    Refused(String),
}

impl FhirSink {
    pub fn new(endpoint: &Endpoint, config: &FhirSinkConfig) -> Result<Self, FhirSinkError> {
        let trust = https_trust(
            &config.auth,
            config.ca_file.as_deref(),
            config.pinned_cert.as_deref(),
        );
        let http = https_client(&trust, endpoint.timeout)?;
        let auth = Auth::from_config(&config.auth);
        Ok(Self {
            http,
            url: config.url.trim().trim_end_matches('/').to_string(),
            auth,
            max_batch: config.max_batch,
            max_entries: config.max_entries.max(1),
        })
    }

    /// POSTs one Bundle; on a 401 with OAuth, once more with a new token.
    async fn post(&self, body: &[u8]) -> Sent {
        let mut refreshed = false;
        loop {
            let header = match self.auth.header(&self.http).await {
                Ok(h) => h,
                Err(e) => return Sent::Retry(format!("authentication: {e}"), None),
            };
            let mut request = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/fhir+json")
                .header("Accept", "application/fhir+json")
                .body(body.to_vec());
            if let Some((name, value)) = &header {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => return Sent::Retry(error_chain(&e), None),
            };
            let status = response.status().as_u16();
            let retry_after = retry_after_of(&response);
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    return Sent::Retry(
                        format!("HTTP {status}, body lost: {}", error_chain(&e)),
                        None,
                    )
                }
            };
            match status {
                200..=299 => return Sent::Delivered(summarize(status, &text)),
                401 if !refreshed && self.auth.rejected(&header).await => {
                    refreshed = true;
                    continue;
                }
                // Credentials and access policy are the endpoint's problem,
                // not the message's: dead-lettering would empty the whole
                // queue on one rotated secret. The messages wait (backoff)
                // with the reason on every attempt until the operator fixes
                // `[endpoint.auth]` or the hub's policy.
                401 => {
                    return Sent::Retry(
                        format!(
                            "HTTP 401 even with fresh credentials: the server refuses this endpoint's authentication (check [endpoint.auth]); messages wait: {}",
                            truncate(&text, KEEP_RESPONSE)
                        ),
                        retry_after,
                    );
                }
                403 => {
                    return Sent::Retry(
                        format!(
                            "HTTP 403: the server forbids this client (access policy or scopes); messages wait: {}",
                            truncate(&text, KEEP_RESPONSE)
                        ),
                        retry_after,
                    );
                }
                408 | 429 | 500..=599 => {
                    return Sent::Retry(
                        format!("HTTP {status}: {}", truncate(&text, KEEP_RESPONSE)),
                        retry_after,
                    )
                }
                _ => {
                    return Sent::Refused(format!(
                        "HTTP {status}: {}",
                        truncate(&text, KEEP_RESPONSE)
                    ))
                }
            }
        }
    }

    /// Sends `bundles` as one transaction; one outcome per bundle.
    async fn send_merged(&self, bundles: &[&Value]) -> Vec<Outcome> {
        let body = match bundles {
            [one] => serde_json::to_vec(one),
            _ => serde_json::to_vec(&merge(bundles)),
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return vec![
                    Outcome::Permanent {
                        error: format!("cannot serialise the Bundle: {e}")
                    };
                    bundles.len()
                ]
            }
        };
        match self.post(&body).await {
            Sent::Delivered(response) => vec![
                Outcome::Delivered {
                    response: Some(response)
                };
                bundles.len()
            ],
            Sent::Retry(error, retry_after) => {
                vec![Outcome::Retryable { error, retry_after }; bundles.len()]
            }
            Sent::Refused(error) if bundles.len() == 1 => vec![Outcome::Permanent { error }],
            Sent::Refused(error) => {
                tracing::info!(messages = bundles.len(), %error, "merged Bundle refused; sending its messages one by one");
                let mut outcomes = Vec::with_capacity(bundles.len());
                for bundle in bundles {
                    if matches!(outcomes.last(), Some(o) if !matches!(o, Outcome::Delivered { .. } | Outcome::Permanent { .. }))
                    {
                        outcomes.push(Outcome::NotAttempted);
                        continue;
                    }
                    let one = Box::pin(self.send_merged(std::slice::from_ref(bundle))).await;
                    outcomes.extend(one);
                }
                outcomes
            }
        }
    }
}

impl Sink for FhirSink {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut bundles = Vec::with_capacity(batch.len());
        let mut bad = None;
        for d in batch {
            match &d.payload {
                Payload::Bundle(v) => bundles.push(v),
                // The delivery worker shapes every payload for a FHIR
                // destination into a Bundle; bytes here are a wiring defect.
                Payload::Bytes(_) => {
                    bad = Some("the payload was not shaped into a transaction Bundle".to_string());
                    break;
                }
            }
        }
        // Consecutive bundles, merged while the entries fit one transaction.
        let mut start = 0;
        while start < bundles.len() {
            let mut end = start + 1;
            let mut entries = entry_count(bundles[start]);
            while end < bundles.len() && entries + entry_count(bundles[end]) <= self.max_entries {
                entries += entry_count(bundles[end]);
                end += 1;
            }
            let part = self.send_merged(&bundles[start..end]).await;
            let failed = part
                .iter()
                .any(|o| !matches!(o, Outcome::Delivered { .. } | Outcome::Permanent { .. }));
            outcomes.extend(part);
            start = end;
            if failed {
                break;
            }
        }
        if outcomes.len() < bundles.len() {
            outcomes.resize(bundles.len(), Outcome::NotAttempted);
            bad = None;
        }
        if let Some(error) = bad {
            if outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Delivered { .. }))
            {
                outcomes.push(Outcome::Permanent { error });
            } else {
                outcomes.push(Outcome::NotAttempted);
            }
        }
        outcomes.resize(batch.len(), Outcome::NotAttempted);
        outcomes
    }

    /// Each message's Bundle as the POST that would carry it alone (live,
    /// consecutive Bundles may share one transaction).
    fn capture(&self, batch: &[Delivery]) -> Vec<Result<Capture, String>> {
        batch
            .iter()
            .map(|d| match &d.payload {
                Payload::Bundle(v) => {
                    let body = serde_json::to_vec(v).map_err(|e| e.to_string())?;
                    let mut headers = vec![
                        (
                            "Content-Type".to_string(),
                            "application/fhir+json".to_string(),
                        ),
                        ("Accept".to_string(), "application/fhir+json".to_string()),
                    ];
                    headers.extend(self.auth.masked_header());
                    Ok(Capture::http("POST", &self.url, headers, &body))
                }
                Payload::Bytes(_) => {
                    Err("the payload was not shaped into a transaction Bundle".to_string())
                }
            })
            .collect()
    }
}

/// The HTTP client of an HTTPS sender (FHIR, `rest`): `timeout` for each
/// request, at most 10 s of it to connect.
pub(crate) fn https_client(
    trust: &crate::tls::HttpsTrust,
    timeout: Duration,
) -> Result<reqwest::Client, FhirSinkError> {
    let tls = crate::tls::https_client_config(trust)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(20))
        .user_agent(concat!("ecko-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FhirSinkError::Client(error_chain(&e)))
}

/// The `Retry-After` of an answer.
pub(crate) fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// `Retry-After`: seconds, or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?;
    let secs = at.timestamp().as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

/// What is kept of a successful answer: the status and where each entry went.
fn summarize(status: u16, text: &str) -> String {
    let locations: Vec<String> = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("entry").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let r = e.get("response")?;
            Some(format!(
                "{} {}",
                r.get("status").and_then(Value::as_str).unwrap_or("?"),
                r.get("location").and_then(Value::as_str).unwrap_or("")
            ))
        })
        .collect();
    truncate(
        &format!("HTTP {status}; {}", locations.join(", ")),
        KEEP_RESPONSE,
    )
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// An error with its causes, e.g. "error sending request: tls: invalid peer certificate".
pub(crate) use crate::with_causes as error_chain;

/// The TLS trust of an HTTPS endpoint with `[endpoint.auth]`, `ca_file`
/// and `pinned_cert` (FHIR, DICOMweb): a client certificate is its identity.
pub(crate) fn https_trust(
    auth: &FhirAuth,
    ca_file: Option<&std::path::Path>,
    pinned_cert: Option<&std::path::Path>,
) -> crate::tls::HttpsTrust {
    let identity = match auth {
        FhirAuth::ClientCertificate { cert, key } => {
            Some((crate::config::resolve(cert), crate::config::resolve(key)))
        }
        _ => None,
    };
    crate::tls::HttpsTrust {
        ca_file: ca_file.map(crate::config::resolve),
        pinned_cert: pinned_cert.map(crate::config::resolve),
        identity,
    }
}

#[cfg(test)]
mod tests;
