//! Sends each message to a custom REST API: method, URL and headers are
//! minijinja templates of the message, the body a template or the route's
//! transform output.
//!
//! The templates see what `sinks::template` lays out (`msg`, `payload`,
//! `json`, `attempt` and the FHIR templates' helpers); a template that
//! fails for a message makes that message dead with the template's error.
//!
//! Authentication and TLS trust are the FHIR sink's (`[endpoint.auth]`:
//! API key, OAuth 2.0 client credentials, client certificate; `ca_file`,
//! `pinned_cert`). Outcomes as for FHIR: 2xx delivered; 408, 429, 5xx and
//! network errors retried with the server's `Retry-After`; 401 (after one
//! fresh OAuth token) and 403 wait with the reason, since they are the
//! endpoint's credentials, not the message; any other 4xx is permanent
//! with the server's answer kept as the error. From a 2xx answer the
//! `capture` JSON pointers are kept in the delivered response (a claim id
//! for status tracking); without `capture`, the answer's head is.

use super::capture::Capture;
use super::fhir::auth::Auth;
use super::fhir::{error_chain, https_client, https_trust, retry_after_of, truncate};
use super::template::{self, TemplateError, Templates};
use super::{Delivery, Outcome, Sink};
use crate::config::{Endpoint, RestConfig};
use serde_json::Value;

/// How much of a server's answer is kept.
const KEEP_RESPONSE: usize = 4 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestSinkError {
    #[error(transparent)]
    Http(#[from] super::fhir::FhirSinkError),
    #[error(transparent)]
    Template(#[from] TemplateError),
}

pub struct RestSink {
    http: reqwest::Client,
    auth: Auth,
    templates: Templates,
    headers: Vec<String>,
    has_body: bool,
    content_type: String,
    capture: Vec<String>,
}

/// A request as rendered for one message.
struct Rendered {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RestSink {
    pub fn new(endpoint: &Endpoint, config: &RestConfig) -> Result<Self, RestSinkError> {
        let trust = https_trust(
            &config.sender_auth(),
            config.ca_file.as_deref(),
            config.pinned_cert.as_deref(),
        );
        let http = https_client(&trust, endpoint.timeout)?;
        let mut templates = Templates::new();
        templates.add("url", config.url.clone().unwrap_or_default())?;
        templates.add("method", config.method.clone())?;
        if let Some(body) = &config.body {
            templates.add("body", body.clone())?;
        }
        for (name, value) in &config.headers {
            templates.add(format!("header:{name}"), value.clone())?;
        }
        Ok(RestSink {
            http,
            auth: Auth::from_config(&config.sender_auth()),
            templates,
            headers: config.headers.keys().cloned().collect(),
            has_body: config.body.is_some(),
            content_type: config.content_type.clone(),
            capture: config.capture.clone(),
        })
    }

    /// The request for `d`, or why it cannot be made.
    fn render(&self, d: &Delivery) -> Result<Rendered, String> {
        let payload = d.payload.to_bytes();
        let context = template::context(d);
        let render = |key: &str| self.templates.render(key, &context);
        let method = render("method")?;
        let method = reqwest::Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("`{}` is not an HTTP method", method.trim()))?;
        let url = render("url")?.trim().to_string();
        if reqwest::Url::parse(&url).is_err() {
            return Err(format!("the rendered URL {url:?} is not a URL"));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for name in &self.headers {
            let value = render(&format!("header:{name}"))?;
            let value = value.trim().to_string();
            if reqwest::header::HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "header `{name}`: the rendered value is not a header value"
                ));
            }
            headers.push((name.clone(), value));
        }
        let body = if self.has_body {
            render("body")?.into_bytes()
        } else {
            payload.into_owned()
        };
        Ok(Rendered {
            method,
            url,
            headers,
            body,
        })
    }

    /// Sends one request; on a 401 with OAuth, once more with a new token.
    async fn send(&self, r: &Rendered) -> Outcome {
        let mut refreshed = false;
        loop {
            let auth = match self.auth.header(&self.http).await {
                Ok(h) => h,
                Err(e) => {
                    return Outcome::Retryable {
                        error: format!("authentication: {e}"),
                        retry_after: None,
                    }
                }
            };
            let mut request = self
                .http
                .request(r.method.clone(), &r.url)
                .header("Content-Type", &self.content_type)
                .body(r.body.clone());
            for (name, value) in r.headers.iter().chain(auth.iter()) {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    return Outcome::Retryable {
                        error: error_chain(&e),
                        retry_after: None,
                    }
                }
            };
            let status = response.status().as_u16();
            let retry_after = retry_after_of(&response);
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    return Outcome::Retryable {
                        error: format!("HTTP {status}, body lost: {}", error_chain(&e)),
                        retry_after: None,
                    }
                }
            };
            let answer = truncate(&text, KEEP_RESPONSE);
            return match status {
                200..=299 => Outcome::Delivered {
                    response: Some(self.kept(status, &text)),
                },
                401 if !refreshed && self.auth.rejected(&auth).await => {
                    refreshed = true;
                    continue;
                }
                401 | 403 => Outcome::Retryable {
                    error: format!("HTTP {status}: the server refuses this endpoint's credentials or access (check [endpoint.auth]); messages wait: {answer}"),
                    retry_after,
                },
                408 | 429 | 500..=599 => Outcome::Retryable {
                    error: format!("HTTP {status}: {answer}"),
                    retry_after,
                },
                _ => Outcome::Permanent {
                    error: format!("HTTP {status}: {answer}"),
                },
            };
        }
    }

    /// What is kept of a 2xx answer: the captured fields, or its head.
    fn kept(&self, status: u16, text: &str) -> String {
        if self.capture.is_empty() {
            return truncate(&format!("HTTP {status}: {text}"), KEEP_RESPONSE);
        }
        let answer: Option<Value> = serde_json::from_str(text).ok();
        let fields: serde_json::Map<String, Value> = self
            .capture
            .iter()
            .map(|p| {
                let v = answer.as_ref().and_then(|a| a.pointer(p)).cloned();
                (p.clone(), v.unwrap_or(Value::Null))
            })
            .collect();
        truncate(
            &format!("HTTP {status}; {}", Value::Object(fields)),
            KEEP_RESPONSE,
        )
    }
}

impl Sink for RestSink {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for d in batch {
            let outcome = match self.render(d) {
                Ok(r) => self.send(&r).await,
                Err(error) => Outcome::Permanent { error },
            };
            let go_on = matches!(
                outcome,
                Outcome::Delivered { .. } | Outcome::Permanent { .. }
            );
            outcomes.push(outcome);
            if !go_on {
                break;
            }
        }
        outcomes.resize(batch.len(), Outcome::NotAttempted);
        outcomes
    }

    /// Each message's request as rendered, the auth header masked; a
    /// template that fails is the message's error, as live.
    fn capture(&self, batch: &[Delivery]) -> Vec<Result<Capture, String>> {
        batch
            .iter()
            .map(|d| {
                let r = self.render(d)?;
                let mut headers = vec![("Content-Type".to_string(), self.content_type.clone())];
                headers.extend(r.headers);
                headers.extend(self.auth.masked_header());
                Ok(Capture::http(r.method.as_str(), &r.url, headers, &r.body))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
