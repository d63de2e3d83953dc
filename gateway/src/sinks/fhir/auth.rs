//! Request authentication for a FHIR endpoint: nothing, a fixed API key
//! header, or an OAuth 2.0 client-credentials bearer token.
//!
//! The token is fetched on first use and cached until shortly before it
//! expires. A 401 from the FHIR server drops the token the request carried
//! (the sink then fetches a new one and tries once more), so a token revoked
//! early costs one extra round trip, never a dead message.

use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A token is renewed this long before the server said it expires (at most
/// half its lifetime).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the token response names none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    #[error("token endpoint answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("token endpoint answered something that is not a token: {0}")]
    Malformed(String),
}

pub enum Auth {
    None,
    ApiKey { header: String, key: String },
    OAuth2(TokenSource),
}

impl Auth {
    /// The authentication `[endpoint.auth]` asks for (a client certificate
    /// is the TLS configuration's, not a header).
    pub fn from_config(auth: &crate::config::FhirAuth) -> Auth {
        use crate::config::FhirAuth;
        match auth {
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
        }
    }

    /// The header to add to a request, if any.
    pub async fn header(
        &self,
        http: &reqwest::Client,
    ) -> Result<Option<(String, String)>, AuthError> {
        match self {
            Auth::None => Ok(None),
            Auth::ApiKey { header, key } => Ok(Some((header.clone(), key.clone()))),
            Auth::OAuth2(source) => Ok(Some((
                "Authorization".into(),
                format!("Bearer {}", source.token(http).await?),
            ))),
        }
    }

    /// The header a request would carry, its secret masked, without
    /// fetching a token: what a sandbox capture shows.
    pub fn masked_header(&self) -> Option<(String, String)> {
        use crate::sinks::capture::MASK;
        match self {
            Auth::None => None,
            Auth::ApiKey { header, .. } => Some((header.clone(), MASK.to_string())),
            Auth::OAuth2(_) => Some(("Authorization".into(), format!("Bearer {MASK}"))),
        }
    }

    /// The server refused `header`: forget it if it was our cached token.
    pub async fn rejected(&self, header: &Option<(String, String)>) -> bool {
        match (self, header) {
            (Auth::OAuth2(source), Some((_, value))) => {
                let token = value.strip_prefix("Bearer ").unwrap_or(value);
                source.forget(token).await;
                true
            }
            _ => false,
        }
    }
}

pub struct TokenSource {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    cached: Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl TokenSource {
    pub fn new(
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    ) -> Self {
        Self {
            token_url,
            client_id,
            client_secret,
            scope,
            cached: Mutex::new(None),
        }
    }

    /// The cached token, or a new one when there is none or it is expiring.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.as_str()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = http
            .post(&self.token_url)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| AuthError::Unreachable(super::error_chain(&e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| AuthError::Unreachable(super::error_chain(&e)))?;
        if !status.is_success() {
            return Err(AuthError::Refused {
                status: status.as_u16(),
                body: super::truncate(&body, 1000),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_str(&body).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let granted = parsed
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Renewed a little early, but never used for less than half its
        // life (a 60 s token is not fetched for every request).
        let lifetime = granted.saturating_sub(EXPIRY_MARGIN.min(granted / 2));
        tracing::debug!(lifetime = ?lifetime, "OAuth token fetched");
        *cached = Some((parsed.access_token.clone(), Instant::now() + lifetime));
        Ok(parsed.access_token)
    }

    async fn forget(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == token) {
            *cached = None;
        }
    }
}
