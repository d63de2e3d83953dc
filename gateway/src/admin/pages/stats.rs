//! Statistics per endpoint over a window.

use crate::admin::api::{window, StatsParams};
use crate::admin::auth::Caller;
use crate::admin::render::{bars, esc, page};
use crate::admin::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use std::fmt::Write;

use super::*;

pub async fn stats(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (chosen, _, buckets) = match window(p.window.as_deref()) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::BAD_REQUEST, Some(&caller), &e),
    };
    let names: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let now = state.journal.now_ms();
    let mut body = String::from("<p>Window: ");
    for w in ["1h", "24h", "7d"] {
        if w == chosen {
            let _ = write!(body, "<strong>{w}</strong> ");
        } else {
            let _ = write!(body, "<a href=\"/stats?window={w}\">{w}</a> ");
        }
    }
    body.push_str("</p>");
    let mut tables = Vec::new();
    for w in ["1h", "24h", "7d"] {
        let Ok((_, span, b)) = window(Some(w)) else {
            continue;
        };
        match state
            .journal
            .endpoint_stats(
                names.clone(),
                now - span,
                if w == chosen { buckets } else { b },
            )
            .await
        {
            Ok(s) => tables.push((w, s)),
            Err(e) => return journal_error(e),
        }
    }
    body.push_str("<table id=\"stats\"><thead><tr><th>Endpoint</th><th>Window</th><th>Received</th><th>Delivered</th><th>Failed attempts</th><th>Success rate</th><th>Avg time</th><th>p95 time</th></tr></thead><tbody>");
    for name in &names {
        for (w, s) in &tables {
            let Some(s) = s.iter().find(|s| &s.name == name) else {
                continue;
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{w}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                s.received,
                s.delivered,
                s.failed,
                s.success_rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "—".into()),
                s.avg_ms.map(|a| format!("{a:.0} ms")).unwrap_or_else(|| "—".into()),
                s.p95_ms.map(|a| format!("{a} ms")).unwrap_or_else(|| "—".into()),
            );
        }
    }
    body.push_str("</tbody></table><h2>Volume</h2>");
    if let Some((_, s)) = tables.iter().find(|(w, _)| *w == chosen) {
        for e in s {
            let _ = write!(
                body,
                "<figure><figcaption>{} — messages per {} over {chosen}</figcaption>{}</figure>",
                esc(&e.name),
                match chosen {
                    "1h" => "5 minutes",
                    "24h" => "hour",
                    _ => "6 hours",
                },
                bars(&e.buckets, 360, 60, &format!("{} volume", e.name))
            );
        }
    }
    html(StatusCode::OK, page("Statistics", Some(&caller), &body))
}
