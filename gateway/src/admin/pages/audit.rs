//! The audit log.

use crate::admin::api::site_tz;
use crate::admin::auth::{Caller, Role};
use crate::admin::render::{esc, page, time};
use crate::admin::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use std::fmt::Write;

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub before: Option<String>,
}

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
            Err(_) => return bad_request("before: not an audit entry id"),
        },
    };
    let rows = match state.journal.audit_log(before, 100).await {
        Ok(r) => r,
        Err(e) => return journal_error(e),
    };
    let tz = site_tz(&state);
    let mut body = String::from("<table id=\"audit\"><thead><tr><th>Time</th><th>Who</th><th>What</th><th>On</th><th>Detail</th></tr></thead><tbody>");
    for r in &rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(r.at, &tz),
            esc(&r.actor),
            esc(&r.action),
            esc(r.target.as_deref().unwrap_or("")),
            esc(r.detail.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table>");
    if rows.len() == 100 {
        if let Some(last) = rows.last() {
            let _ = write!(
                body,
                "<p class=\"pager\"><a href=\"/audit?before={}\">Older →</a></p>",
                last.id
            );
        }
    }
    html(StatusCode::OK, page("Audit log", Some(&caller), &body))
}
