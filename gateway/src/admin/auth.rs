//! Who is asking: passwords, sessions, API tokens, CSRF, login rate limits,
//! roles, and the security headers every response carries.

use super::{ClientAddr, Shared};
use crate::control::{Actor, Refusal};
use crate::journal::AdminUser;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use std::net::{IpAddr, Ipv4Addr};

pub const SESSION_COOKIE: &str = "ecko_session";
/// Largest form body read while looking for its CSRF field.
const FORM_LIMIT: usize = 64 * 1024;

pub use crate::control::users::{new_token, token_hash, verify_password};
pub use crate::control::Role;

/// The authenticated caller of a protected route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: AdminUser,
    pub role: Role,
    /// The session's CSRF token; `None` for API-token callers.
    pub csrf: Option<String>,
    pub session_hash: Option<String>,
    /// The hash of the API token used, for token callers.
    pub token_hash: Option<String>,
}

impl Caller {
    pub fn name(&self) -> &str {
        &self.user.name
    }
    /// Whether `password` is the caller's own, asked for again at the
    /// moment of an action no earlier login counts for (an install, a
    /// factory reset).
    pub async fn confirms_with(&self, password: String) -> bool {
        let hash = self.user.password_hash.clone();
        tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false)
    }
    /// The caller as the services see it.
    pub fn actor(&self) -> Actor {
        Actor::user(&self.user.name, self.role, self.user.id)
    }
    /// `Ok` when the caller has at least `role`; else the 403 to send.
    #[allow(clippy::result_large_err)]
    pub fn require(&self, role: Role) -> Result<(), Response> {
        if self.role >= role {
            Ok(())
        } else {
            Err((
                StatusCode::FORBIDDEN,
                format!("this needs the {} role", role.as_str()),
            )
                .into_response())
        }
    }
}

/// The answer to a caller whose role is below `role`: the same for pages
/// and the API.
pub fn forbidden(role: Role) -> Response {
    (
        StatusCode::FORBIDDEN,
        format!("this needs the {} role", role.as_str()),
    )
        .into_response()
}

/// A refusal of a service as the JSON API answers it: `{"error": …}` with
/// the status its kind means.
pub fn refusal_json(e: &Refusal) -> Response {
    use axum::Json;
    let status = match e {
        Refusal::Forbidden(role) => return forbidden(*role),
        Refusal::Invalid { .. } => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Refusal::Journal(j) => {
            tracing::error!(error = %j, "admin API: journal error");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": "journal error" })),
            )
                .into_response();
        }
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

pub fn session_cookie(token: &str, max_age_s: u64) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_s}"
    )
}

pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

pub fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn refuse(path: &str, status: StatusCode, why: &str) -> Response {
    if is_api(path) {
        (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
    } else {
        (status, why.to_string()).into_response()
    }
}

/// Finds the caller of a protected route, or refuses: API routes answer
/// 401, pages redirect to the login (or, before any user exists, to the
/// setup). State-changing requests with a session must carry its CSRF token.
pub async fn require_caller(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let journal = &state.journal;
    let mut caller = None;
    if let Some(token) = bearer(&headers) {
        if !is_api(&path) {
            return refuse(
                &path,
                StatusCode::UNAUTHORIZED,
                "API tokens are accepted under /api/v1 only",
            );
        }
        let hash = token_hash(&token);
        match journal.admin_token_user(&hash).await {
            Ok(Some((user, token_role))) => {
                // A token acts with its own role, never above its owner's.
                if let (Some(owner), Some(granted)) =
                    (Role::parse(&user.role), Role::parse(&token_role))
                {
                    caller = Some(Caller {
                        user,
                        role: owner.min(granted),
                        csrf: None,
                        session_hash: None,
                        token_hash: Some(hash),
                    });
                }
            }
            Ok(None) => return refuse(&path, StatusCode::UNAUTHORIZED, "unknown API token"),
            Err(e) => return internal(&path, &e.to_string()),
        }
    } else if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        let hash = token_hash(&token);
        match journal.admin_session(&hash).await {
            Ok(Some(s)) => {
                if let Some(role) = Role::parse(&s.user.role) {
                    caller = Some(Caller {
                        user: s.user,
                        role,
                        csrf: Some(s.csrf),
                        session_hash: Some(hash),
                        token_hash: None,
                    });
                }
            }
            Ok(None) => {}
            Err(e) => return internal(&path, &e.to_string()),
        }
    }
    let Some(caller) = caller else {
        if is_api(&path) {
            return refuse(
                &path,
                StatusCode::UNAUTHORIZED,
                "log in or send an API token",
            );
        }
        let first_run = matches!(journal.admin_user_count().await, Ok(0));
        return Redirect::to(if first_run { "/setup" } else { "/login" }).into_response();
    };
    let request = if changes_state(request.method()) {
        match check_csrf(&caller, request).await {
            Ok(r) => r,
            Err(why) => return refuse(&path, StatusCode::FORBIDDEN, why),
        }
    } else {
        request
    };
    let mut request = request;
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Whether the caller's session or token is still valid (not logged out,
/// expired, revoked, or its user deleted): long-lived responses such as the
/// live log ask this now and then.
pub async fn still_valid(state: &Shared, caller: &Caller) -> bool {
    if let Some(hash) = &caller.session_hash {
        return matches!(state.journal.admin_session(hash).await, Ok(Some(_)));
    }
    if let Some(hash) = &caller.token_hash {
        return matches!(state.journal.admin_token_user(hash).await, Ok(Some(_)));
    }
    false
}

pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks the CSRF token of a session caller: the `X-CSRF-Token` header, or
/// the `csrf` field of a form body (which is read and put back).
async fn check_csrf(caller: &Caller, request: Request) -> Result<Request, &'static str> {
    let Some(expected) = &caller.csrf else {
        return Ok(request); // API tokens are not sent by browsers by themselves
    };
    if let Some(given) = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if constant_eq(given, expected) {
            Ok(request)
        } else {
            Err("CSRF token does not match")
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.starts_with("multipart/form-data") {
        return check_multipart_csrf(expected, request, &content_type).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err("missing CSRF token");
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT)
        .await
        .map_err(|_| "form too large")?;
    let given = form_field(&bytes, "csrf");
    match given {
        Some(g) if constant_eq(&g, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Some(_) => Err("CSRF token does not match"),
        None => Err("missing CSRF token"),
    }
}

/// The largest `multipart/form-data` body (the certificate upload): four
/// files at their cap, with room for the form's own parts.
pub const UPLOAD_LIMIT: usize = 4 * crate::control::certificates::MAX_FILE_SIZE + FORM_LIMIT;

/// The CSRF check of a `multipart/form-data` form: its `csrf` part, read
/// from the buffered body, which is put back for the handler.
async fn check_multipart_csrf(
    expected: &str,
    request: Request,
    content_type: &str,
) -> Result<Request, &'static str> {
    use axum::extract::FromRequest;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, UPLOAD_LIMIT)
        .await
        .map_err(|_| "upload too large")?;
    let copy = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes.clone()))
        .map_err(|_| "missing CSRF token")?;
    let mut form = axum::extract::Multipart::from_request(copy, &())
        .await
        .map_err(|_| "missing CSRF token")?;
    let mut given = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("csrf") {
            given = field.text().await.ok();
            break;
        }
    }
    match given {
        Some(g) if constant_eq(&g, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Some(_) => Err("CSRF token does not match"),
        None => Err("missing CSRF token"),
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body);
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn internal(path: &str, why: &str) -> Response {
    tracing::error!(error = why, "admin page: journal error");
    refuse(path, StatusCode::INTERNAL_SERVER_ERROR, "journal error")
}

/// For login and setup, which have no session to carry a CSRF token: refuse
/// requests a browser marks as cross-site, and any whose `Origin` is not
/// this server.
pub fn same_origin(headers: &HeaderMap) -> bool {
    // Browsers that send Sec-Fetch-Site say it directly.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !host.is_empty() && origin_host == host
}

/// The client's address (unknown in tests that call the router directly).
pub fn client_ip(request_ext: Option<&ClientAddr>) -> IpAddr {
    request_ext.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Counts a login attempt from `ip`; `false` when over the limit.
pub fn allow_login_attempt(state: &Shared, ip: IpAddr) -> bool {
    login_window(state, ip, 1) <= login_limit(state)
}

/// Whether `ip` has used this minute's login attempts up, without counting
/// one: the setup counts only its wrong codes, with
/// [`allow_login_attempt`].
pub fn login_attempts_used_up(state: &Shared, ip: IpAddr) -> bool {
    login_window(state, ip, 0) >= login_limit(state)
}

fn login_limit(state: &Shared) -> u32 {
    state.config().admin.login_attempts_per_minute.max(1)
}

/// Adds `attempts` to `ip`'s count in the current minute; the count.
fn login_window(state: &Shared, ip: IpAddr, attempts: u32) -> u32 {
    let mut map = state
        .logins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = std::time::Instant::now();
    if map.len() > 10_000 {
        map.retain(|_, (start, _)| now.duration_since(*start).as_secs() < 60);
    }
    let entry = map.entry(ip).or_insert((now, 0));
    if now.duration_since(entry.0).as_secs() >= 60 {
        *entry = (now, 0);
    }
    entry.1 = entry.1.saturating_add(attempts);
    entry.1
}

/// Security headers on every response.
pub async fn security_headers(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config().admin.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::users::hash_password;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse battery!", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn form_fields_are_percent_decoded() {
        let pairs = serde_urlencoded_pairs(b"csrf=a%2Bb&reason=no+longer+needed&x=%25");
        assert_eq!(pairs[0], ("csrf".into(), "a+b".into()));
        assert_eq!(pairs[1].1, "no longer needed");
        assert_eq!(pairs[2].1, "%");
    }

    #[test]
    fn a_foreign_origin_is_not_the_same_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("gw:8443"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://gw:8443"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil"));
        assert!(!same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }
}
