//! A bearer token judged by the identity provider's OAuth 2.0 token
//! introspection endpoint (RFC 7662), for providers that issue opaque
//! tokens or revoke them before they expire.
//!
//! The listener POSTs `token=…&token_type_hint=access_token` with its own
//! client id and secret (HTTP Basic, RFC 7662 §2.1) and takes the token only
//! when the answer is `"active": true`, its `exp` (when given) is still
//! ahead, and `iss`, `aud` and `scope` hold what is configured, as for a
//! JWT; a missing scope is 403, anything else 401.
//!
//! An accepted answer is kept for `introspection_cache` (never past the
//! token's `exp`), keyed by the token's SHA-256, so a sender posting a run
//! of messages costs one round trip, and a revocation at the provider takes
//! effect within that time. Refusals are not kept: a made-up token is never
//! asked about twice anyway, and keeping them would let a flood of them
//! fill the cache. At most [`MAX_KEPT`] answers are kept; past that the
//! expired ones go, and if none has expired, all of them.
//!
//! A provider that cannot be reached, or answers anything but a 200 with a
//! JSON object, leaves the token unjudged: the request is answered 503 with
//! `Retry-After`, not 401, so that a sender retries rather than giving up
//! on a message the gateway will take once the provider is back. At most
//! [`IN_FLIGHT`] questions are asked at once; the others wait their turn.

use super::auth::Denied;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Semaphore};

/// Answers kept at most.
pub const MAX_KEPT: usize = 4096;
/// Questions to the provider at once.
pub const IN_FLIGHT: usize = 8;
/// How long a single question may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Introspection {
    url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    keep_for: Duration,
    issuer: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    kept: Mutex<HashMap<[u8; 32], Instant>>,
    asking: Semaphore,
}

pub struct Settings {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub keep_for: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub scope: Option<String>,
}

/// What the provider says of a token (RFC 7662 §2.2); only `active` is
/// required.
#[derive(serde::Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn holds(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

impl Introspection {
    pub fn new(settings: Settings, http: reqwest::Client) -> Introspection {
        Introspection {
            url: settings.url,
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            http,
            keep_for: settings.keep_for,
            issuer: settings.issuer,
            audience: settings.audience,
            scope: settings.scope,
            kept: Mutex::new(HashMap::new()),
            asking: Semaphore::new(IN_FLIGHT),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<(), Denied> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self
            .kept
            .lock()
            .await
            .get(&digest)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Ok(());
        }
        let answer = {
            let _turn = self.asking.acquire().await.map_err(|_| {
                Denied::Unavailable("the token introspection is shutting down".into())
            })?;
            self.ask(token).await?
        };
        let now = jiff::Timestamp::now().as_second();
        let until = self.judge(&answer, now)?;
        if !self.keep_for.is_zero() {
            let keep = match until {
                Some(exp) => self
                    .keep_for
                    .min(Duration::from_secs(exp.saturating_sub(now).max(0) as u64)),
                None => self.keep_for,
            };
            let mut kept = self.kept.lock().await;
            if kept.len() >= MAX_KEPT {
                let now = Instant::now();
                kept.retain(|_, until| now < *until);
                if kept.len() >= MAX_KEPT {
                    kept.clear();
                }
            }
            kept.insert(digest, Instant::now() + keep);
        }
        Ok(())
    }

    async fn ask(&self, token: &str) -> Result<Answer, Denied> {
        let unjudged = |why: String| {
            tracing::warn!(url = %self.url, reason = %why, "token introspection failed");
            Denied::Unavailable(format!("the token could not be checked: {why}"))
        };
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| unjudged(crate::with_causes(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unjudged(format!(
                "the introspection endpoint answered HTTP {}",
                status.as_u16()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unjudged(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| {
            unjudged(format!(
                "the introspection answer is not RFC 7662 JSON: {e}"
            ))
        })
    }

    /// The token's `exp` when the answer takes it; the refusal otherwise.
    fn judge(&self, answer: &Answer, now: i64) -> Result<Option<i64>, Denied> {
        let bad = |why: &str| Denied::Unauthenticated(format!("bearer token refused: {why}"));
        if !answer.active {
            return Err(bad("the identity provider says it is not active"));
        }
        if answer.exp.is_some_and(|exp| exp <= now) {
            return Err(bad("expired"));
        }
        if let Some(wanted) = &self.issuer {
            if answer.iss.as_deref() != Some(wanted.as_str()) {
                return Err(bad("issued by another issuer"));
            }
        }
        if let Some(wanted) = &self.audience {
            if !answer.aud.as_ref().is_some_and(|a| a.holds(wanted)) {
                return Err(bad("meant for another audience"));
            }
        }
        if let Some(needed) = &self.scope {
            let held = answer
                .scope
                .as_deref()
                .is_some_and(|s| s.split_whitespace().any(|s| s == needed));
            if !held {
                return Err(Denied::Forbidden(format!(
                    "the token lacks the scope `{needed}`"
                )));
            }
        }
        Ok(answer.exp)
    }
}

#[cfg(test)]
mod tests;
