//! Users, API tokens and open sessions.

use crate::admin::api::site_tz;
use crate::admin::auth::{Caller, Role};
use crate::admin::format::{query_value, time};
use crate::admin::Shared;
use crate::control::users::{NewUser, TokenRequest};
use crate::control::{self, Refusal};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::context;

use super::*;

pub(super) async fn users_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    users_page_with(state, caller, status, error, None).await
}

/// The users page: each user with role, lock and actions; API tokens; the
/// forms to add either. `new_token` is shown once, right after creation.
pub(super) async fn users_page_with(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    error: Option<&str>,
    new_token: Option<&str>,
) -> Response {
    let (users, tokens, sessions) = match tokio::try_join!(
        state.journal.admin_users(),
        state.journal.admin_tokens(),
        state.journal.admin_open_sessions()
    ) {
        Ok(x) => x,
        Err(e) => return journal_error(state, e),
    };
    let tz = site_tz(state);
    let now = state.journal.now_ms();
    let users: Vec<_> = users
        .iter()
        .map(|u| {
            // A lock kept from before the throttle, or a name throttled now
            // from some address: either way "unlock" lifts it.
            let throttled = state.throttle.throttled(&u.name, std::time::Instant::now());
            let locked = u.locked_until > now || throttled;
            context! {
                name => u.name,
                path => query_value(&u.name),
                role => u.role,
                created => time(u.created_at, &tz),
                locked,
                locked_until => if u.locked_until > now { time(u.locked_until, &tz) } else { String::new() },
            }
        })
        .collect();
    let tokens: Vec<_> = tokens
        .iter()
        .map(|t| {
            context! {
                id => t.id,
                label => t.label,
                owner => t.owner,
                role => t.role,
                created => time(t.created_at, &tz),
                expires => t.expires_at.map_or_else(|| "never".to_string(), |e| time(e, &tz)),
                expired => t.expires_at.is_some_and(|e| e <= now),
            }
        })
        .collect();
    let mine = caller.session_hash.as_deref().unwrap_or_default();
    let sessions: Vec<_> = sessions
        .iter()
        .map(|x| {
            context! {
                id => x.id,
                user => x.user,
                created => time(x.created_at, &tz),
                expires => time(x.expires_at, &tz),
                yours => mine.starts_with(&x.id),
            }
        })
        .collect();
    state.templates.page(
        status,
        "users.html",
        "Users",
        Some(caller),
        context! {
            error,
            new_token,
            users,
            tokens,
            sessions,
            roles => Role::NAMES,
            token_roles => ["viewer", "operator", "admin"],
        },
    )
}

pub async fn users(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    users_page(&state, &caller, StatusCode::OK, None).await
}

pub async fn create_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(c): Form<Credentials>,
) -> Response {
    let user = NewUser {
        name: c.name.clone(),
        role: c.role.clone(),
        password: c.password.clone(),
        confirm: Some(c.confirm.clone()),
    };
    let done = control::users::add(&state.ops, &caller.actor(), &user)
        .await
        .map(|_| ());
    match done {
        Err(Refusal::Conflict(_)) => {
            let why = format!("A user named {} exists already.", c.name.trim());
            users_page(&state, &caller, StatusCode::CONFLICT, Some(&why)).await
        }
        done => user_change(&state, &caller, done).await,
    }
}

/// Answers a change to one user like the users page does.
pub(super) async fn user_change(
    state: &Shared,
    caller: &Caller,
    done: Result<(), Refusal>,
) -> Response {
    match done {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(Refusal::Invalid { field, message }) => {
            let why = user_sentence(field, &message);
            users_page(state, caller, StatusCode::UNPROCESSABLE_ENTITY, Some(&why)).await
        }
        Err(e @ Refusal::NotFound(_)) => {
            users_page(state, caller, StatusCode::NOT_FOUND, Some(&e.to_string())).await
        }
        Err(e @ Refusal::Conflict(_)) => {
            users_page(state, caller, StatusCode::CONFLICT, Some(&e.to_string())).await
        }
        Err(e) => refused(state, Some(caller), &e),
    }
}

pub async fn set_user_role(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(c): Form<Credentials>,
) -> Response {
    let done = control::users::set_role(&state.ops, &caller.actor(), &name, &c.role).await;
    user_change(&state, &caller, done).await
}

pub async fn reset_password(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(c): Form<Credentials>,
) -> Response {
    let done = control::users::set_password(
        &state.ops,
        &caller.actor(),
        &name,
        &c.password,
        Some(&c.confirm),
    )
    .await;
    user_change(&state, &caller, done).await
}

pub async fn unlock_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let done = control::users::unlock(&state.ops, &caller.actor(), &name).await;
    if done.is_ok() {
        // Unlocking also lifts the login throttle of the name, everywhere.
        state.throttle.clear(&name);
    }
    user_change(&state, &caller, done).await
}

pub async fn delete_user(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    let done = control::users::remove(&state.ops, &caller.actor(), &name).await;
    user_change(&state, &caller, done).await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TokenForm {
    pub label: String,
    pub role: String,
    pub expires_in_days: String,
}

pub async fn create_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<TokenForm>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let days = match f.expires_in_days.trim() {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let why = format!("Expires after: `{d}` is not a number of days.");
                return users_page(
                    &state,
                    &caller,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(&why),
                )
                .await;
            }
        },
    };
    let request = TokenRequest {
        label: f.label,
        role: Some(f.role),
        expires_in_days: days,
    };
    match control::users::create_token(&state.ops, &caller.actor(), &request).await {
        Ok(t) => users_page_with(&state, &caller, StatusCode::CREATED, None, Some(&t.token)).await,
        Err(e @ Refusal::Invalid { .. }) => {
            users_page(
                &state,
                &caller,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&e.to_string()),
            )
            .await
        }
        Err(e) => refused(&state, Some(&caller), &e),
    }
}

pub async fn revoke_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let done = control::users::revoke_token(&state.ops, &caller.actor(), id).await;
    revoked(&state, &caller, done, "There is no such token.").await
}

/// The answer to a revocation: back to the users page, or the page with
/// `missing` when there was nothing to revoke.
async fn revoked(
    state: &Shared,
    caller: &Caller,
    done: Result<(), Refusal>,
    missing: &str,
) -> Response {
    match done {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(Refusal::NotFound(_)) => {
            users_page(state, caller, StatusCode::NOT_FOUND, Some(missing)).await
        }
        Err(e) => refused(state, Some(caller), &e),
    }
}

pub async fn revoke_session(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let done = control::users::revoke_session(&state.ops, &caller.actor(), &id).await;
    revoked(&state, &caller, done, "There is no such session.").await
}
