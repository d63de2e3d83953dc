//! Statistics per endpoint over a window.

use crate::admin::api::{window, StatsParams};
use crate::admin::auth::Caller;
use crate::admin::chart::bars;
use crate::admin::Shared;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::{context, Value};

use super::*;

pub async fn stats(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (chosen, _, buckets) = match window(p.window.as_deref()) {
        Ok(w) => w,
        Err(e) => return problem(&state, StatusCode::BAD_REQUEST, Some(&caller), &e),
    };
    let names: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let now = state.journal.now_ms();
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
            Err(e) => return journal_error(&state, e),
        }
    }
    let dash = || "—".to_string();
    let mut rows = Vec::new();
    for name in &names {
        for (w, s) in &tables {
            let Some(s) = s.iter().find(|s| &s.name == name) else {
                continue;
            };
            rows.push(context! {
                name,
                window => w,
                received => s.received,
                delivered => s.delivered,
                failed => s.failed,
                success_rate => s.success_rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(dash),
                avg => s.avg_ms.map(|a| format!("{a:.0} ms")).unwrap_or_else(dash),
                p95 => s.p95_ms.map(|a| format!("{a} ms")).unwrap_or_else(dash),
            });
        }
    }
    let charts: Vec<_> = tables
        .iter()
        .find(|(w, _)| *w == chosen)
        .map(|(_, s)| {
            s.iter()
                .map(|e| {
                    context! {
                        name => e.name,
                        chart => Value::from_serialize(bars(&e.buckets, 360, 60, &format!("{} volume", e.name))),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let per = match chosen {
        "1h" => "5 minutes",
        "24h" => "hour",
        _ => "6 hours",
    };
    state.templates.page(
        StatusCode::OK,
        "stats.html",
        "Statistics",
        Some(&caller),
        context! { windows => ["1h", "24h", "7d"], chosen, rows, charts, per },
    )
}
