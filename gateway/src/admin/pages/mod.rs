//! The HTML pages, one module per area. Each reads the journal or calls a
//! service of [`crate::control`], renders on the server, and works without
//! script; `app.js` adds the live log.

mod audit;
pub mod config;
mod dashboard;
pub mod endpoint_form;
pub mod endpoints;
mod errors;
mod logs;
mod session;
mod stats;
mod users;

pub use audit::*;
pub use dashboard::*;
pub use errors::*;
pub use logs::*;
pub use session::*;
pub use stats::*;
pub use users::*;

use super::auth::Caller;
use super::render::{esc, page, safe_back};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

pub(super) fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// A bad request (a filter that does not parse) as a page.
pub(super) fn bad_request(why: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, None, &why.into())
}

/// A journal error as a page, never a JSON body on an HTML route.
pub(super) fn journal_error(e: crate::journal::JournalError) -> Response {
    journal_problem(None, &e)
}

pub(super) fn problem(status: StatusCode, caller: Option<&Caller>, why: &str) -> Response {
    html(
        status,
        page(
            "Cannot do that",
            caller,
            &format!("<p class=\"error\">{}</p>", esc(why)),
        ),
    )
}

pub async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, None, "There is no such page.")
}

/// A 303 back to the page a form came from, named by its hidden `back`
/// field when that is a safe path on this site (see [`safe_back`]), else
/// to `fallback`; `notice` is added to its query.
pub(super) fn back(given: &str, fallback: &str, notice: Option<&str>) -> Response {
    let mut to = safe_back(given).unwrap_or(fallback).to_string();
    if let Some(n) = notice {
        to.push(if to.contains('?') { '&' } else { '?' });
        to.push_str(n);
    }
    Redirect::to(&to).into_response()
}

/// What the errors page says after "retry all matching".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RetryNotice {
    pub retried: Option<String>,
    pub truncated: Option<String>,
}
