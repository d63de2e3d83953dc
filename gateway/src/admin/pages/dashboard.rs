//! The dashboard: every endpoint with its link, queue and alerts.

use crate::admin::api::{overview, site_tz};
use crate::admin::auth::Caller;
use crate::admin::render::{esc, opt_time, page, query_value, time};
use crate::admin::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use std::fmt::Write;

use super::*;

pub async fn dashboard(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let o = match overview(&state).await {
        Ok(v) => v,
        Err(e) => return journal_error(e),
    };
    let tz = site_tz(&state);
    let mut body = String::new();
    if o.alerts.is_empty() {
        body.push_str("<p id=\"alerts\" class=\"ok\">No alerts.</p>");
    } else {
        body.push_str("<ul id=\"alerts\" class=\"alerts\">");
        for a in &o.alerts {
            let _ = write!(body, "<li class=\"error\">{}</li>", esc(a));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "<table id=\"endpoints\"><thead><tr><th>Endpoint</th><th>Type</th><th>Direction</th><th>Status</th><th>Last message</th><th>Queue</th><th>Dead</th><th>Messages today</th><th>Alerts</th></tr></thead><tbody>",
    );
    for v in &o.endpoints {
        let since = match (v.status, v.since) {
            ("down" | "degraded", Some(s)) => format!(" since {}", time(s, &tz)),
            _ => String::new(),
        };
        let _ = write!(
            body,
            "<tr class=\"endpoint\" data-name=\"{n}\"><td><a href=\"/logs?endpoint={q}\">{n}</a></td><td>{}</td><td>{}</td><td class=\"status {s}\" title=\"{}\">{s}{since}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
            v.kind,
            esc(&v.direction),
            esc(v.detail.as_deref().unwrap_or("")),
            opt_time(v.last_message_at, &tz),
            v.queue_depth,
            v.dead,
            v.messages_today,
            esc(&v.alerts.join("; ")),
            n = esc(&v.name),
            q = esc(&query_value(&v.name)),
            s = v.status,
        );
    }
    body.push_str("</tbody></table>");
    html(StatusCode::OK, page("Dashboard", Some(&caller), &body))
}
