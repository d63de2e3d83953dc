//! Statistics per endpoint over one window at a time (1 h, 24 h, 7 d): the
//! figures, a chart of received, delivered and failed per bucket, and the
//! same buckets as CSV.

use crate::admin::api::{site_tz, window, StatsParams};
use crate::admin::auth::Caller;
use crate::admin::chart::{chart, Series};
use crate::admin::format::{rfc3339, zoned};
use crate::admin::Shared;
use crate::journal::EndpointStats;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::{context, Value};

use super::*;

/// The chosen window's name, its first bucket's start, the bucket length
/// and the statistics of every endpoint.
async fn gather(
    state: &Shared,
    p: &StatsParams,
) -> Result<
    (&'static str, i64, i64, Vec<EndpointStats>),
    Result<String, crate::journal::JournalError>,
> {
    let (chosen, span, buckets) = window(p.window.as_deref()).map_err(Ok)?;
    let names: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let since = state.journal.now_ms() - span;
    let stats = state
        .journal
        .endpoint_stats(names, since, buckets)
        .await
        .map_err(Err)?;
    Ok((chosen, since, span / buckets as i64, stats))
}

pub async fn stats(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (chosen, since, bucket_ms, stats) = match gather(&state, &p).await {
        Ok(x) => x,
        Err(Ok(e)) => return problem(&state, StatusCode::BAD_REQUEST, Some(&caller), &e),
        Err(Err(e)) => return journal_error(&state, e),
    };
    let tz = site_tz(&state);
    let dash = || "—".to_string();
    let ms = |v: Option<i64>| v.map(|a| format!("{a} ms")).unwrap_or_else(dash);
    let rows: Vec<_> = stats
        .iter()
        .map(|s| {
            context! {
                name => s.name,
                received => s.received,
                delivered => s.delivered,
                failed => s.failed,
                success_rate => s.success_rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(dash),
                avg => s.avg_ms.map(|a| format!("{a:.0} ms")).unwrap_or_else(dash),
                p50 => ms(s.p50_ms),
                p95 => ms(s.p95_ms),
                p99 => ms(s.p99_ms),
                waited => match s.oldest_age_buckets.iter().max() {
                    Some(&a) if a > 0 => format!("{} min", a.div_ceil(60)),
                    _ => dash(),
                },
            }
        })
        .collect();
    let format = if chosen == "7d" {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    let label = |t: i64| zoned(t, &tz, format);
    let per = match chosen {
        "1h" => "5 min",
        "24h" => "hour",
        _ => "6 hours",
    };
    let charts: Vec<_> = stats
        .iter()
        .map(|e| {
            let series = [
                Series {
                    name: "received",
                    class: "s-received",
                    values: &e.received_buckets,
                },
                Series {
                    name: "delivered",
                    class: "s-delivered",
                    values: &e.delivered_buckets,
                },
                Series {
                    name: "failed",
                    class: "s-failed",
                    values: &e.failed_buckets,
                },
            ];
            let queued = e.queue_buckets.iter().any(|&q| q > 0);
            let queue = [Series {
                name: "waiting",
                class: "s-queue",
                values: &e.queue_buckets,
            }];
            context! {
                name => e.name,
                queue => queued.then(|| Value::from_serialize(chart(
                    &queue,
                    (640, 150),
                    &format!("{}: messages waiting (most in each {per}) over {chosen}", e.name),
                    "waiting",
                    since,
                    bucket_ms,
                    &label,
                ))),
                chart => Value::from_serialize(chart(
                    &series,
                    (640, 190),
                    &format!("{}: messages per {per} over {chosen}", e.name),
                    &format!("per {per}"),
                    since,
                    bucket_ms,
                    &label,
                )),
            }
        })
        .collect();
    state.templates.page(
        StatusCode::OK,
        "stats.html",
        "Statistics",
        Some(&caller),
        context! { windows => ["1h", "24h", "7d"], chosen, rows, charts, per },
    )
}

/// The chosen window's buckets as CSV: one line per endpoint and bucket.
pub async fn stats_csv(State(state): State<Shared>, Query(p): Query<StatsParams>) -> Response {
    let (chosen, since, bucket_ms, stats) = match gather(&state, &p).await {
        Ok(x) => x,
        Err(Ok(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Err(Err(e)) => return journal_error(&state, e),
    };
    let tz = site_tz(&state);
    let mut csv = String::from(
        "endpoint,bucket_start,bucket_end,received,delivered,failed,most_waiting,oldest_wait_s\n",
    );
    for s in &stats {
        for (i, received) in s.received_buckets.iter().enumerate() {
            let from = since + i as i64 * bucket_ms;
            csv.push_str(&format!(
                "{},{},{},{received},{},{},{},{}\n",
                csv_field(&s.name),
                rfc3339(from, &tz),
                rfc3339(from + bucket_ms, &tz),
                s.delivered_buckets.get(i).copied().unwrap_or(0),
                s.failed_buckets.get(i).copied().unwrap_or(0),
                s.queue_buckets.get(i).copied().unwrap_or(0),
                s.oldest_age_buckets.get(i).copied().unwrap_or(0),
            ));
        }
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"statistics-{chosen}.csv\""),
            ),
        ],
        csv,
    )
        .into_response()
}

/// A CSV field, quoted when it holds a separator, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
