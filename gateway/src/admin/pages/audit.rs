//! The audit log, all of it or one kind of entry (`show`): failed logins
//! and throttles together, so a guessing attack reads as one list.

use crate::admin::api::site_tz;
use crate::admin::auth::{Caller, Role};
use crate::admin::format::time;
use crate::admin::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::context;

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub before: Option<String>,
    /// `logins`: failed logins, refused logins, throttles and wrong setup
    /// codes; anything else: every entry.
    pub show: Option<String>,
}

/// The actions `show=logins` lists.
pub const LOGIN_FAILURES: &[&str] = &[
    "login.failed",
    "login.refused",
    "login.throttle",
    "user.lock",
    "setup.refused",
];

pub async fn audit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(b) => Some(b),
            Err(_) => return bad_request(&state, "before: not an audit entry id"),
        },
    };
    let logins = q.show.as_deref() == Some("logins");
    let actions = if logins { LOGIN_FAILURES } else { &[] };
    let rows = match state.journal.audit_log_of(before, 100, actions).await {
        Ok(r) => r,
        Err(e) => return journal_error(&state, e),
    };
    let tz = site_tz(&state);
    let entries: Vec<_> = rows
        .iter()
        .map(|r| {
            context! {
                at => time(r.at, &tz),
                actor => r.actor,
                action => r.action,
                target => r.target,
                detail => r.detail,
            }
        })
        .collect();
    let older = (rows.len() == 100)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    state.templates.page(
        StatusCode::OK,
        "audit.html",
        "Audit log",
        Some(&caller),
        context! { rows => entries, older, show => if logins { "logins" } else { "" } },
    )
}
