//! The HTML pages, one module per area. Each reads the journal or calls a
//! service of [`crate::control`], renders on the server, and works without
//! script; `app.js` adds the live log.

mod account;
mod audit;
pub mod certificates;
pub mod config;
mod dashboard;
pub mod endpoint_form;
mod endpoint_rows;
pub mod endpoint_templates;
pub mod endpoints;
mod errors;
pub mod factory_reset;
mod logs;
mod message;
mod session;
mod stats;
mod update;
mod users;

pub use account::*;
pub use audit::*;
pub use dashboard::*;
pub use errors::*;
pub use logs::*;
pub use message::*;
pub use session::*;
pub use stats::*;
pub use update::*;
pub use users::*;

use super::auth::Caller;
use super::{AdminState, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::context;

pub(super) fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// A bad request (a filter that does not parse) as a page.
pub(super) fn bad_request(state: &AdminState, why: impl Into<String>) -> Response {
    problem(state, StatusCode::BAD_REQUEST, None, &why.into())
}

/// A journal error as a page, never a JSON body on an HTML route.
pub(super) fn journal_error(state: &AdminState, e: crate::journal::JournalError) -> Response {
    journal_problem(state, None, &e)
}

/// What cannot be done, and why, as a page with `status`.
pub(super) fn problem(
    state: &AdminState,
    status: StatusCode,
    caller: Option<&Caller>,
    why: &str,
) -> Response {
    state.templates.page(
        status,
        "problem.html",
        "Cannot do that",
        caller,
        context! { why },
    )
}

pub async fn not_found(State(state): State<Shared>) -> Response {
    problem(
        &state,
        StatusCode::NOT_FOUND,
        None,
        "There is no such page.",
    )
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

/// `given` if it is a path on this site to return to after a form: starts
/// with one `/`, no scheme or host (`//evil`, `/\\evil`), no control
/// characters. Anything else is refused, so a form cannot send a person
/// elsewhere.
pub fn safe_back(given: &str) -> Option<&str> {
    let ok = given.starts_with('/')
        && !given.starts_with("//")
        && !given.contains('\\')
        && given.len() <= 2048
        && !given.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(given)
}

/// What the errors page says after "retry all matching".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RetryNotice {
    pub retried: Option<String>,
    pub truncated: Option<String>,
    pub discarded: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_places_to_go_back_to() {
        for ok in ["/errors", "/errors?endpoint=hub&status=dead", "/messages/7"] {
            assert_eq!(safe_back(ok), Some(ok));
        }
        for bad in [
            "",
            "errors",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/a\nb",
            "/a b",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_back(bad), None, "{bad:?}");
        }
    }
}
