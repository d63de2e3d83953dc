//! Users and API tokens.

use crate::admin::api::site_tz;
use crate::admin::auth::{Caller, Role};
use crate::admin::render::{csrf_field, esc, page, query_value, time};
use crate::admin::Shared;
use crate::control::users::{NewUser, TokenRequest};
use crate::control::{self, Refusal};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use std::fmt::Write;

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
    let (users, tokens) =
        match tokio::try_join!(state.journal.admin_users(), state.journal.admin_tokens()) {
            Ok(x) => x,
            Err(e) => return journal_error(e),
        };
    let tz = site_tz(state);
    let csrf = csrf_field(caller);
    let mut body = String::new();
    if let Some(e) = error {
        let _ = write!(body, "<p class=\"error\" id=\"users-error\">{}</p>", esc(e));
    }
    if let Some(t) = new_token {
        let _ = write!(
            body,
            "<p class=\"notice\">New API token (shown only now; send it as <code>Authorization: Bearer …</code>):</p><pre id=\"new-token\">{}</pre>",
            esc(t)
        );
    }
    body.push_str("<table id=\"users\"><thead><tr><th>Name</th><th>Role</th><th>Created</th><th>Locked until</th><th>Actions</th></tr></thead><tbody>");
    let now = state.journal.now_ms();
    for u in &users {
        let n = esc(&query_value(&u.name));
        let mut roles = String::new();
        for r in Role::NAMES {
            let sel = if *r == u.role { " selected" } else { "" };
            let _ = write!(roles, "<option{sel}>{r}</option>");
        }
        let locked = u.locked_until > now;
        let _ = write!(
            body,
            "<tr class=\"user\" data-name=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>\
             <form method=\"post\" action=\"/users/{n}/role\" class=\"inline\">{csrf}<select name=\"role\">{roles}</select><button>Change role</button></form> \
             <form method=\"post\" action=\"/users/{n}/password\" class=\"inline\">{csrf}<input type=\"password\" name=\"password\" placeholder=\"new password\" required autocomplete=\"new-password\" size=\"14\"><input type=\"password\" name=\"confirm\" placeholder=\"again\" required autocomplete=\"new-password\" size=\"10\"><button>Reset password</button></form> \
             {}<form method=\"post\" action=\"/users/{n}/delete\" class=\"inline\" data-confirm=\"Delete this user, their sessions and API tokens?\">{csrf}<button class=\"discard\">Delete</button></form></td></tr>",
            esc(&u.role),
            time(u.created_at, &tz),
            if locked { time(u.locked_until, &tz) } else { String::new() },
            if locked {
                format!("<form method=\"post\" action=\"/users/{n}/unlock\" class=\"inline\">{csrf}<button>Unlock</button></form> ")
            } else {
                String::new()
            },
            name = esc(&u.name),
        );
    }
    let mut roles = String::new();
    for r in Role::NAMES {
        let _ = write!(roles, "<option>{r}</option>");
    }
    let _ = write!(
        body,
        "</tbody></table><h2>Add a user</h2><form method=\"post\" action=\"/users\" class=\"card\">{csrf}\
         <label>User name <input name=\"name\" required></label><label>Role <select name=\"role\">{roles}</select></label>\
         <label>Password <input type=\"password\" name=\"password\" required autocomplete=\"new-password\"></label>\
         <label>Password again <input type=\"password\" name=\"confirm\" required autocomplete=\"new-password\"></label><button>Add user</button></form>",
    );
    body.push_str("<h2>API tokens</h2><table id=\"tokens\"><thead><tr><th>Id</th><th>Label</th><th>Owner</th><th>Role</th><th>Created</th><th>Expires</th><th></th></tr></thead><tbody>");
    for t in &tokens {
        let expired = t.expires_at.is_some_and(|e| e <= now);
        let _ = write!(
            body,
            "<tr class=\"token\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td><form method=\"post\" action=\"/tokens/{id}/revoke\" class=\"inline\" data-confirm=\"Revoke this token?\">{csrf}<button class=\"discard\">Revoke</button></form></td></tr>",
            esc(&t.label),
            esc(&t.owner),
            esc(&t.role),
            time(t.created_at, &tz),
            t.expires_at.map_or_else(|| "never".to_string(), |e| time(e, &tz)),
            if expired { " (expired)" } else { "" },
            id = t.id,
        );
    }
    let mut token_roles = String::new();
    for r in ["viewer", "operator", "admin"] {
        let _ = write!(token_roles, "<option>{r}</option>");
    }
    let _ = write!(
        body,
        "</tbody></table><form method=\"post\" action=\"/tokens\" class=\"card\">{csrf}\
         <label>Label <input name=\"label\" required placeholder=\"hub\"></label><label>Role <select name=\"role\">{token_roles}</select></label>\
         <label>Expires after (days, empty: never) <input name=\"expires_in_days\" inputmode=\"numeric\" size=\"5\"></label><button>Create token</button></form>",
    );
    html(status, page("Users", Some(caller), &body))
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
        Err(e) => refused(Some(caller), &e),
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
        Err(e) => refused(Some(&caller), &e),
    }
}

pub async fn revoke_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match control::users::revoke_token(&state.ops, &caller.actor(), id).await {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(Refusal::NotFound(_)) => {
            users_page(
                &state,
                &caller,
                StatusCode::NOT_FOUND,
                Some("There is no such token."),
            )
            .await
        }
        Err(e) => refused(Some(&caller), &e),
    }
}
