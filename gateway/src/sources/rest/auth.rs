//! Who may post: an API key in a header, an OAuth 2.0 bearer JWT verified
//! against a JWKS, a bearer token judged by an introspection endpoint
//! (`introspection`), or nobody checked here (no authentication, or a client
//! certificate that TLS verified before the request was read).
//!
//! The API key is compared as SHA-256 digests folded byte by byte, so
//! neither the key's content nor its length shows in the time taken.
//!
//! A bearer token is verified with the JWKS key its `kid` names (the only
//! key when the set has one and the token names none), with the algorithm
//! its header names only if that algorithm fits the key (an RSA key takes
//! RS*/PS*, a P-256 key ES256, a P-384 key ES384, an Ed25519 key EdDSA):
//! symmetric (`oct`) keys and `HS*` are refused outright: a JWKS is public,
//! and a key anyone can read must never verify a token (the crate itself
//! refuses a key of another family; this check is kept in front of it).
//! `exp` is required, `iss` and `aud` when configured; a `scope` that the
//! token lacks is 403, not 401.
//!
//! A JWKS file is read at start; a JWKS URL is fetched on first use and
//! again when a token names a key it does not hold (at most every 30 s),
//! so a key rotated at the identity provider is picked up without a
//! restart and a flood of made-up `kid`s costs one fetch per 30 s.

use super::introspection::{self, Introspection};
use crate::config::RestAuth;
use axum::http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How often a JWKS URL is fetched again for an unknown `kid`.
const REFETCH_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read the JWKS {path}: {reason}")]
    Jwks { path: String, reason: String },
    #[error("cannot build the JWKS client: {0}")]
    Client(String),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no credentials, or wrong ones.
    Unauthenticated(String),
    /// 403: known, but not allowed this.
    Forbidden(String),
    /// 503: the credentials could not be judged now (the identity
    /// provider out of reach); the sender should try again.
    Unavailable(String),
}

pub enum Check {
    /// Nothing to check here (none, or the client certificate TLS checked).
    Open,
    ApiKey {
        header: String,
        digest: [u8; 32],
    },
    Bearer(Box<Bearer>),
    Introspect(Box<Introspection>),
}

pub struct Bearer {
    source: JwksSource,
    keys: Mutex<(JwkSet, Option<Instant>)>,
    issuer: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
}

enum JwksSource {
    File,
    Url(String, reqwest::Client),
}

impl Check {
    pub fn from_config(auth: &RestAuth) -> Result<Check, AuthSetupError> {
        Ok(match auth {
            RestAuth::None | RestAuth::OAuth2 { .. } | RestAuth::ClientCertificate { .. } => {
                Check::Open
            }
            RestAuth::ApiKey { header, key } => Check::ApiKey {
                header: header.clone(),
                digest: Sha256::digest(key.as_bytes()).into(),
            },
            RestAuth::Bearer {
                jwks_file,
                jwks_url,
                introspection_url: Some(url),
                client_id,
                client_secret,
                introspection_cache,
                idp_ca,
                issuer,
                audience,
                scope,
            } if jwks_file.is_none() && jwks_url.is_none() => {
                Check::Introspect(Box::new(Introspection::new(
                    introspection::Settings {
                        url: url.clone(),
                        client_id: client_id.clone().unwrap_or_default(),
                        client_secret: client_secret.clone().unwrap_or_default(),
                        keep_for: introspection_cache.0,
                        issuer: issuer.clone(),
                        audience: audience.clone(),
                        scope: scope.clone(),
                    },
                    idp_client(idp_ca.as_deref())?,
                )))
            }
            RestAuth::Bearer {
                jwks_file,
                jwks_url,
                idp_ca,
                issuer,
                audience,
                scope,
                ..
            } => {
                let (source, keys) = match (jwks_file, jwks_url) {
                    (Some(path), _) => {
                        (JwksSource::File, read_jwks(&crate::config::resolve(path))?)
                    }
                    (None, Some(url)) => (
                        JwksSource::Url(url.clone(), idp_client(idp_ca.as_deref())?),
                        JwkSet { keys: Vec::new() },
                    ),
                    (None, None) => (JwksSource::File, JwkSet { keys: Vec::new() }),
                };
                Check::Bearer(Box::new(Bearer {
                    source,
                    keys: Mutex::new((keys, None)),
                    issuer: issuer.clone(),
                    audience: audience.clone(),
                    scope: scope.clone(),
                }))
            }
        })
    }

    /// Whether the request's headers carry what this endpoint requires.
    pub async fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        match self {
            Check::Open => Ok(()),
            Check::ApiKey { header, digest } => {
                let given = headers
                    .get(header.as_str())
                    .map(|v| v.as_bytes())
                    .ok_or_else(|| Denied::Unauthenticated(format!("no `{header}` header")))?;
                let given: [u8; 32] = Sha256::digest(given).into();
                let differ = given
                    .iter()
                    .zip(digest.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if differ == 0 {
                    Ok(())
                } else {
                    Err(Denied::Unauthenticated("wrong API key".into()))
                }
            }
            Check::Bearer(bearer) => bearer.verify(bearer_token(headers)?).await,
            Check::Introspect(introspection) => introspection.verify(bearer_token(headers)?).await,
        }
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Denied> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Denied::Unauthenticated("no `Authorization: Bearer` token".into()))
}

/// The HTTPS client that asks the identity provider (JWKS URL,
/// introspection endpoint).
pub(super) fn idp_client(ca: Option<&std::path::Path>) -> Result<reqwest::Client, AuthSetupError> {
    let tls = crate::tls::https_client_config(&crate::tls::HttpsTrust {
        ca_file: ca.map(crate::config::resolve),
        pinned_cert: None,
        identity: None,
    })
    .map_err(|e| AuthSetupError::Client(e.to_string()))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| AuthSetupError::Client(e.to_string()))
}

fn read_jwks(path: &std::path::Path) -> Result<JwkSet, AuthSetupError> {
    let fail = |reason: String| AuthSetupError::Jwks {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| fail(format!("not a JWK set: {e}")))
}

/// The claims checked beyond `exp`, `iss` and `aud` (which `jsonwebtoken`
/// checks).
#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
}

impl Bearer {
    async fn verify(&self, token: &str) -> Result<(), Denied> {
        let bad = |why: &str| Denied::Unauthenticated(format!("bearer token refused: {why}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("not a JWT"))?;
        let jwk = self
            .key(header.kid.as_deref())
            .await
            .ok_or_else(|| bad("signed with a key the JWKS does not hold"))?;
        if !fits(&jwk, header.alg) {
            return Err(bad("its algorithm does not fit the key"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("unusable key in the JWKS"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp"]);
        match &self.audience {
            Some(a) => validation.set_audience(&[a]),
            None => validation.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            validation.set_issuer(&[i]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            tracing::debug!(error = %e, "bearer token refused");
            bad(&e.to_string())
        })?;
        if let Some(needed) = &self.scope {
            let c = &data.claims;
            let held = c
                .scope
                .as_deref()
                .is_some_and(|s| s.split_whitespace().any(|s| s == needed))
                || c.scp
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|s| s == needed));
            if !held {
                return Err(Denied::Forbidden(format!(
                    "the token lacks the scope `{needed}`"
                )));
            }
        }
        Ok(())
    }

    /// The key `kid` names (the only key when none is named), fetching a
    /// JWKS URL again when it is not held.
    async fn key(&self, kid: Option<&str>) -> Option<Jwk> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = pick(&keys.0, kid) {
            return Some(k);
        }
        let JwksSource::Url(url, http) = &self.source else {
            return None;
        };
        if keys.1.is_some_and(|at| at.elapsed() < REFETCH_EVERY) {
            return None;
        }
        keys.1 = Some(Instant::now());
        match fetch(http, url).await {
            Ok(set) => keys.0 = set,
            Err(e) => tracing::warn!(url = %url, error = %e, "JWKS fetch failed"),
        }
        pick(&keys.0, kid)
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| crate::with_causes(&e))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not a JWK set: {e}"))
}

fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

/// Whether a token signed with `alg` may be verified with `jwk`.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    use Algorithm::*;
    if let Some(stated) = jwk.common.key_algorithm {
        // Both print their JOSE names (`ES256`).
        if stated.to_string() != format!("{alg:?}") {
            return false;
        }
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
        }
        AlgorithmParameters::EllipticCurve(p) => matches!(
            (&p.curve, alg),
            (EllipticCurve::P256, ES256) | (EllipticCurve::P384, ES384)
        ),
        AlgorithmParameters::OctetKeyPair(p) => p.curve == EllipticCurve::Ed25519 && alg == EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

#[cfg(test)]
pub(crate) mod tests;
