//! The caller's own account, for every role: who they are and the change
//! of their own password (the current one first).
//!
//! A wrong current password counts as a failed login against the client
//! address's limit: an unattended session must not become a way to guess
//! the password it was opened with.

use crate::admin::auth::{allow_login_attempt, client_ip, login_attempts_used_up, Caller};
use crate::admin::{ClientAddr, Shared};
use crate::control::users::OwnPassword;
use crate::control::{self, Refusal};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::context;

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    pub current: String,
    pub password: String,
    pub confirm: String,
    pub csrf: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AccountNotice {
    pub changed: Option<String>,
}

fn account_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    error: Option<&str>,
    field: Option<&str>,
    changed: bool,
) -> Response {
    state.templates.page(
        status,
        "account.html",
        "Your account",
        Some(caller),
        context! { error, field, changed, name => caller.name(), role => caller.role.as_str() },
    )
}

pub async fn account(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(notice): Query<AccountNotice>,
) -> Response {
    let changed = notice.changed.is_some();
    account_page(&state, &caller, StatusCode::OK, None, None, changed)
}

pub async fn change_password(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    addr: Option<Extension<ClientAddr>>,
    Form(f): Form<PasswordForm>,
) -> Response {
    let ip = client_ip(addr.as_ref().map(|a| &a.0));
    let page = |status, error: &str, field| {
        account_page(&state, &caller, status, Some(error), field, false)
    };
    if login_attempts_used_up(&state, ip) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; wait a minute.",
            None,
        );
    }
    let change = OwnPassword {
        current: f.current,
        password: f.password,
        confirm: Some(f.confirm),
    };
    let done = control::users::change_own_password(
        &state.ops,
        &caller.actor(),
        &change,
        caller.session_hash.as_deref(),
    )
    .await;
    match done {
        Ok(()) => Redirect::to("/account?changed=1").into_response(),
        Err(Refusal::Invalid {
            field: "current",
            message,
        }) => {
            allow_login_attempt(&state, ip);
            page(
                StatusCode::UNAUTHORIZED,
                &format!("Current password: {message}."),
                Some("current"),
            )
        }
        Err(Refusal::Invalid { field, message }) => page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &user_sentence(field, &message),
            Some(field),
        ),
        Err(e) => refused(&state, Some(&caller), &e),
    }
}
