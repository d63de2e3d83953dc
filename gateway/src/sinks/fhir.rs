//! Sends transformed messages to a FHIR R4 server as transaction Bundles.
//!
//! Each payload is a `transaction` Bundle (from the `hl7v2-fhir` or
//! `astm-fhir` transform). The sink applies the endpoint's code map (to
//! codings in the source's local-code system only), and when
//! the endpoint allows batches (`max_batch > 1`) merges the Bundles of
//! several queued messages of one lane into one transaction: entries with
//! the same `fullUrl` (the same resource, since ids are derived from business
//! identifiers) collapse into one, the later message's content winning, so
//! order within the lane is kept. If the server refuses a merged Bundle as
//! invalid, the messages are sent again one at a time so that only the
//! message at fault goes dead.
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

use super::{Delivery, Outcome, Sink};
use crate::config::{CodeMapEntry, Endpoint, FhirAuth, FhirSinkConfig};
use auth::{Auth, TokenSource};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
    conditional: bool,
    code_map: CodeMap,
}

/// The answer to one POST.
enum Sent {
    Delivered(String),
    Retry(String, Option<Duration>),
    Refused(String),
}

impl FhirSink {
    pub fn new(endpoint: &Endpoint, config: &FhirSinkConfig) -> Result<Self, FhirSinkError> {
        let identity = match &config.auth {
            FhirAuth::ClientCertificate { cert, key } => {
                Some((crate::config::resolve(cert), crate::config::resolve(key)))
            }
            _ => None,
        };
        let trust = crate::tls::HttpsTrust {
            ca_file: config.ca_file.as_deref().map(crate::config::resolve),
            pinned_cert: config.pinned_cert.as_deref().map(crate::config::resolve),
            identity,
        };
        let tls = crate::tls::https_client_config(&trust)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(endpoint.timeout)
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(20))
            .user_agent(concat!("ecko-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FhirSinkError::Client(error_chain(&e)))?;
        let auth = match &config.auth {
            FhirAuth::None | FhirAuth::ClientCertificate { .. } => Auth::None,
            FhirAuth::ApiKey { header, key } => Auth::ApiKey {
                header: header.clone(),
                key: key.clone(),
            },
            FhirAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => Auth::OAuth2(TokenSource::new(
                token_url.clone(),
                client_id.clone(),
                client_secret.clone(),
                scope.clone(),
            )),
        };
        Ok(Self {
            http,
            url: config.url.trim().trim_end_matches('/').to_string(),
            auth,
            max_batch: config.max_batch,
            max_entries: config.max_entries.max(1),
            conditional: config.conditional_updates,
            code_map: CodeMap {
                all: config.code_map.clone(),
                by_source: config.code_map_by_source.clone(),
            },
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
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
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
    async fn send_merged(&self, bundles: &[Value]) -> Vec<Outcome> {
        let merged = merge(bundles);
        let body = match serde_json::to_vec(&merged) {
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
            match serde_json::from_slice::<Value>(&d.payload) {
                Ok(v) if is_transaction(&v) => {
                    let mut v = v;
                    self.code_map.apply(&mut v, &d.message.source);
                    if !self.conditional {
                        to_id_updates(&mut v);
                    }
                    bundles.push(v);
                }
                Ok(_) => {
                    bad = Some("the payload is not a transaction Bundle (route it through a FHIR transform)".to_string());
                    break;
                }
                Err(e) => {
                    bad = Some(format!("the payload is not JSON: {e}"));
                    break;
                }
            }
        }
        // Consecutive bundles, merged while the entries fit one transaction.
        let mut start = 0;
        while start < bundles.len() {
            let mut end = start + 1;
            let mut entries = entry_count(&bundles[start]);
            while end < bundles.len() && entries + entry_count(&bundles[end]) <= self.max_entries {
                entries += entry_count(&bundles[end]);
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
}

fn entry_count(v: &Value) -> usize {
    v.get("entry").and_then(Value::as_array).map_or(0, Vec::len)
}

/// Turns conditional entries (`PUT Type?identifier=…`, `POST` with
/// `If-None-Exist`) whose `fullUrl` is `urn:uuid:<id>` into `PUT Type/<id>`
/// with that id, and points every reference to such an entry at `Type/<id>`.
///
/// The id is the UUID v5 of the same business identifier the condition
/// searched for, so the update lands on the same resource every time. An
/// `If-None-Exist` entry carries nothing but that identifier: rewriting it
/// can only replace the bare resource an earlier message put there.
pub fn to_id_updates(bundle: &mut Value) {
    let mut renamed: HashMap<String, String> = HashMap::new();
    for e in bundle
        .get_mut("entry")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(id) = e
            .get("fullUrl")
            .and_then(Value::as_str)
            .and_then(|u| u.strip_prefix("urn:uuid:"))
            .map(str::to_string)
        else {
            continue;
        };
        let Some(ty) = e
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            continue;
        };
        let method = e.pointer("/request/method").and_then(Value::as_str);
        let conditional = match method {
            Some("PUT") => e
                .pointer("/request/url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.contains('?')),
            Some("POST") => e.pointer("/request/ifNoneExist").is_some(),
            _ => false,
        };
        if conditional {
            e["request"] = serde_json::json!({"method": "PUT", "url": format!("{ty}/{id}")});
            e["resource"]["id"] = Value::String(id.clone());
        }
        if e.pointer("/request/url").and_then(Value::as_str) == Some(&format!("{ty}/{id}")) {
            renamed.insert(format!("urn:uuid:{id}"), format!("{ty}/{id}"));
        }
    }
    fn walk(v: &mut Value, renamed: &HashMap<String, String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get_mut("reference") {
                    if let Some(new) = renamed.get(r.as_str()) {
                        *r = new.clone();
                    }
                }
                for (_, child) in o.iter_mut() {
                    walk(child, renamed);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| walk(c, renamed)),
            _ => {}
        }
    }
    if let Some(entries) = bundle.get_mut("entry") {
        walk(entries, &renamed);
    }
}

fn is_transaction(v: &Value) -> bool {
    v.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && v.get("type").and_then(Value::as_str) == Some("transaction")
        && v.get("entry").is_some_and(Value::is_array)
}

/// One transaction Bundle with the entries of all `bundles`, in order; a
/// `fullUrl` seen before keeps its place and takes the later content.
pub fn merge(bundles: &[Value]) -> Value {
    if let [only] = bundles {
        return only.clone();
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for b in bundles {
        for e in b
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match e.get("fullUrl").and_then(Value::as_str) {
                Some(url) => match at.get(url) {
                    Some(&i) => entries[i] = e.clone(),
                    None => {
                        at.insert(url.to_string(), entries.len());
                        entries.push(e.clone());
                    }
                },
                None => entries.push(e.clone()),
            }
        }
    }
    serde_json::json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// An endpoint's map from local codes to LOINC.
#[derive(Debug, Clone, Default)]
pub struct CodeMap {
    /// For local codes from any source.
    pub all: BTreeMap<String, CodeMapEntry>,
    /// Per source endpoint; wins over `all`.
    pub by_source: BTreeMap<String, BTreeMap<String, CodeMapEntry>>,
}

impl CodeMap {
    /// Adds a LOINC coding in front of each coding of `bundle` that is in
    /// the local-code system of `source` (the transforms' system for codes
    /// no standard system claims) and whose code the map knows, unless the
    /// concept has LOINC already. Codings in any other system are left as
    /// they are: the same letters can mean something else in SNOMED or an
    /// HL7 table.
    pub fn apply(&self, bundle: &mut Value, source: &str) {
        let specific = self.by_source.get(source);
        if self.all.is_empty() && specific.is_none_or(BTreeMap::is_empty) {
            return;
        }
        let local = crate::transforms::fhir::local_system(source, "code");
        let lookup = |code: &str| {
            specific
                .and_then(|m| m.get(code))
                .or_else(|| self.all.get(code))
        };
        walk_codings(bundle, &mut |codings| {
            let loinc = crate::transforms::fhir::LOINC;
            if codings
                .iter()
                .any(|c| c.get("system").and_then(Value::as_str) == Some(loinc))
            {
                return;
            }
            let found = codings.iter().find_map(|c| {
                if c.get("system").and_then(Value::as_str) != Some(local.as_str()) {
                    return None;
                }
                lookup(c.get("code").and_then(Value::as_str)?)
            });
            if let Some(entry) = found {
                let mut coding = serde_json::json!({ "system": loinc, "code": entry.code() });
                if let Some(d) = entry.display() {
                    coding["display"] = Value::String(d.to_string());
                }
                codings.insert(0, coding);
            }
        });
    }
}

/// Calls `f` with every `coding` array in `v`.
fn walk_codings(v: &mut Value, f: &mut impl FnMut(&mut Vec<Value>)) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(codings)) = o.get_mut("coding") {
                f(codings);
            }
            for (_, child) in o.iter_mut() {
                walk_codings(child, f);
            }
        }
        Value::Array(a) => {
            for child in a {
                walk_codings(child, f);
            }
        }
        _ => {}
    }
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
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests;
