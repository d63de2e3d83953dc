//! First run, login and logout: the setup form that makes the first
//! administrator, the login form with its rate limit and its throttle per
//! (account name, client address) ([`crate::admin::throttle`]), and the
//! session's end.
//!
//! The setup asks for the device's one-time setup code
//! ([`control::setup_code`]); a wrong code counts as a failed login against
//! the client address's limit, since guessing it is guessing a password.
//! With `setup_from_loopback_only` no code is asked for, and only the
//! device itself (127.0.0.1, ::1) may set up.

use crate::admin::auth::{
    allow_login_attempt, clear_cookie, client_ip, forbidden, login_attempts_used_up, new_token,
    same_origin, session_cookie, token_hash, verify_password, Caller,
};
use crate::admin::throttle::ThrottleRules;
use crate::admin::{ClientAddr, Shared};
use crate::control::users::{Admission, NewUser};
use crate::control::{self, Refusal};
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::context;

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub name: String,
    pub password: String,
    pub confirm: String,
    pub role: String,
    pub csrf: String,
    /// The first run's one-time code ([`control::setup_code`]).
    pub setup_code: String,
}

/// How the setup admits the client at `ip`: with the setup code, or (with
/// `setup_from_loopback_only`) from the device itself without one; `None`
/// when that option refuses the address.
fn admission(state: &Shared, ip: std::net::IpAddr, code: &str) -> Option<Admission> {
    if !state.config().admin.setup_from_loopback_only {
        Some(Admission::Code(code.to_string()))
    } else if ip.is_loopback() {
        Some(Admission::Loopback)
    } else {
        None
    }
}

const LOOPBACK_ONLY: &str =
    "First-run setup is allowed from the device itself only (127.0.0.1 or ::1): open this page there.";

/// The setup form; `error` shown beside the field it is about (`field`),
/// or above the form.
pub(super) fn setup_page(
    state: &Shared,
    admission: Option<&Admission>,
    error: Option<&str>,
    field: Option<&str>,
    name: &str,
) -> String {
    let code_needed = matches!(admission, Some(Admission::Code(_)));
    let refused = admission.is_none().then_some(LOOPBACK_ONLY);
    state.templates.text(
        "setup.html",
        "Create the first administrator",
        None,
        context! { error, field, name, code_needed, refused },
    )
}

pub async fn setup_form(
    State(state): State<Shared>,
    addr: Option<Extension<ClientAddr>>,
) -> Response {
    match state.journal.admin_user_count().await {
        Ok(0) => {
            let admission = admission(&state, client_ip(addr.as_ref().map(|a| &a.0)), "");
            if matches!(admission, Some(Admission::Code(_))) {
                // The code exists before anyone is asked for it.
                let dir = control::config::data_dir(&state.config());
                match control::setup_code::issue(&dir) {
                    Ok((code, true)) => control::setup_code::announce(&code, &dir),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot make the setup code"),
                }
            }
            html(
                StatusCode::OK,
                setup_page(&state, admission.as_ref(), None, None, ""),
            )
        }
        Ok(_) => Redirect::to("/login").into_response(),
        Err(e) => journal_error(&state, e),
    }
}

pub async fn setup(
    State(state): State<Shared>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    if !same_origin(&headers) {
        return problem(
            &state,
            StatusCode::FORBIDDEN,
            None,
            "cross-site request refused",
        );
    }
    let ip = client_ip(addr.as_ref().map(|a| &a.0));
    let Some(admission) = admission(&state, ip, &c.setup_code) else {
        return html(
            StatusCode::FORBIDDEN,
            setup_page(&state, None, None, None, c.name.trim()),
        );
    };
    let page = |status, error: &str, field: Option<&str>| {
        html(
            status,
            setup_page(&state, Some(&admission), Some(error), field, c.name.trim()),
        )
    };
    // Guessing the code is guessing a password: the same limit per address.
    if matches!(admission, Admission::Code(_)) && login_attempts_used_up(&state, ip) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; wait a minute.",
            None,
        );
    }
    let user = NewUser {
        name: c.name.clone(),
        role: "admin".into(),
        password: c.password.clone(),
        confirm: Some(c.confirm.clone()),
    };
    match control::users::setup(&state.ops, &user, &admission).await {
        Ok(_) => Redirect::to("/login").into_response(),
        Err(Refusal::Invalid {
            field: "setup_code",
            message,
        }) => {
            allow_login_attempt(&state, ip);
            let _ = state
                .journal
                .audit(
                    "setup",
                    "setup.refused",
                    None,
                    Some(&format!("wrong setup code from {ip}")),
                )
                .await;
            page(
                StatusCode::UNAUTHORIZED,
                &format!("Setup code: {message}."),
                Some("setup_code"),
            )
        }
        Err(Refusal::Invalid { field, message }) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &user_sentence(field, &message),
            Some(field),
        ),
        Err(e @ Refusal::Conflict(_)) => {
            problem(&state, StatusCode::FORBIDDEN, None, &e.to_string())
        }
        Err(e) => refused(&state, None, &e),
    }
}

/// A refused user field as the users and setup pages say it.
pub(super) fn user_sentence(field: &str, message: &str) -> String {
    match field {
        "name" => format!("User name: {message}."),
        "role" => format!("Role: {message}."),
        "password" => format!("Password: {message}."),
        "confirm" => "The two passwords differ.".into(),
        "expires_in_days" | "label" => format!("{field}: {message}"),
        other => format!("{other}: {message}"),
    }
}

/// A refusal of a service as a page says it.
pub(super) fn refused(state: &AdminState, caller: Option<&Caller>, e: &Refusal) -> Response {
    let status = match e {
        Refusal::Forbidden(role) => return forbidden(*role),
        Refusal::Invalid { .. } => StatusCode::BAD_REQUEST,
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Refusal::Journal(j) => return journal_problem(state, caller, j),
    };
    problem(state, status, caller, &e.to_string())
}

/// A journal error as a page (never a JSON body on an HTML route).
pub(super) fn journal_problem(
    state: &AdminState,
    caller: Option<&Caller>,
    e: &crate::journal::JournalError,
) -> Response {
    tracing::error!(error = %e, "admin page: journal error");
    problem(
        state,
        StatusCode::INTERNAL_SERVER_ERROR,
        caller,
        "journal error",
    )
}

pub(super) fn login_page(state: &Shared, error: Option<&str>, name: &str) -> String {
    state
        .templates
        .text("login.html", "Log in", None, context! { error, name })
}

pub async fn login_form(State(state): State<Shared>) -> Response {
    match state.journal.admin_user_count().await {
        Ok(0) => Redirect::to("/setup").into_response(),
        Ok(_) => html(StatusCode::OK, login_page(&state, None, "")),
        Err(e) => journal_error(&state, e),
    }
}

pub async fn login(
    State(state): State<Shared>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(c): Form<Credentials>,
) -> Response {
    if !same_origin(&headers) {
        return problem(
            &state,
            StatusCode::FORBIDDEN,
            None,
            "cross-site request refused",
        );
    }
    let ip = client_ip(addr.as_ref().map(|a| &a.0));
    if !allow_login_attempt(&state, ip) {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&state, Some("Too many attempts; wait a minute."), &c.name),
        );
    }
    let j = &state.journal;
    let name = c.name.trim().to_string();
    // The name as typed, cut short: the audit log is not a place an
    // attacker may write pages into.
    let typed: String = name.chars().take(64).collect();
    let config = state.config();
    let rules = ThrottleRules {
        after: config.admin.throttle_after,
        delay: config.admin.throttle_delay.0,
        max: config.admin.throttle_max.0,
    };
    if let Some(wait) = state.throttle.wait(&name, ip, std::time::Instant::now()) {
        let secs = wait.as_secs_f64().ceil() as u64;
        let _ = j
            .audit(
                "unknown",
                "login.refused",
                Some(&typed),
                Some(&format!(
                    "throttled for {secs} s more after failed logins, from {ip}"
                )),
            )
            .await;
        return throttled(&state, &name, secs);
    }
    let user = match j.admin_user(&name).await {
        Ok(u) => u,
        Err(e) => return journal_error(&state, e),
    };
    // The same work whether or not the name exists: one argon2
    // verification (against a dummy hash for an unknown name), one audit
    // record, one throttle count.
    let known = user.is_some();
    let hash = user
        .as_ref()
        .map_or_else(|| state.dummy_hash.clone(), |u| u.password_hash.clone());
    let password = c.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if ok => user,
        _ => {
            let why = if known {
                "wrong password"
            } else {
                "unknown user name"
            };
            let actor = if known { name.as_str() } else { "unknown" };
            let _ = j
                .audit(
                    actor,
                    "login.failed",
                    Some(&typed),
                    Some(&format!("{why}, from {ip}")),
                )
                .await;
            let failure = state
                .throttle
                .failed(&name, ip, std::time::Instant::now(), &rules);
            if let (true, Some(delay)) = (failure.started, failure.delay) {
                tracing::warn!(%ip, failures = failure.failures, "logins of one name from one address are throttled");
                let _ = j
                    .audit(
                        actor,
                        "login.throttle",
                        Some(&typed),
                        Some(&format!(
                            "{} failed logins in a row from {ip}; the next waits {} s, doubling",
                            failure.failures,
                            delay.as_secs()
                        )),
                    )
                    .await;
            }
            return html(
                StatusCode::UNAUTHORIZED,
                login_page(&state, Some("Wrong user name or password."), &name),
            );
        }
    };
    state.throttle.succeeded(&name, ip);
    let token = new_token();
    let ttl = state.config().admin.session_ttl.0;
    if let Err(e) = j
        .admin_open_session(
            user.id,
            &token_hash(&token),
            &new_token(),
            ttl.as_millis() as i64,
        )
        .await
    {
        return journal_error(&state, e);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session_cookie(&token, ttl.as_secs())),
            (header::LOCATION, "/".to_string()),
        ],
    )
        .into_response()
}

/// The answer to a throttled (name, address) pair: the same for every name.
fn throttled(state: &Shared, name: &str, secs: u64) -> Response {
    let mut response = html(
        StatusCode::TOO_MANY_REQUESTS,
        login_page(
            state,
            Some(&format!(
                "Too many failed logins from this address; try again in {secs} s."
            )),
            name,
        ),
    );
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

pub async fn logout(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Some(hash) = &caller.session_hash {
        if let Err(e) = state.journal.admin_close_session(hash, caller.name()).await {
            return journal_error(&state, e);
        }
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, clear_cookie()),
            (header::LOCATION, "/login".to_string()),
        ],
    )
        .into_response()
}
