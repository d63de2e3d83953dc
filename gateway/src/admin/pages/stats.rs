//! Statistics per endpoint over one window at a time (1 h, 24 h, 7 d, or a
//! range of one's own): the figures, a chart of received, delivered and
//! failed per bucket, and the same buckets as CSV.

use crate::admin::api::{site_tz, StatsParams, StatsRange};
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

/// The chosen range and the statistics of every endpoint over it.
async fn gather(
    state: &Shared,
    p: &StatsParams,
) -> Result<(StatsRange, Vec<EndpointStats>), Result<String, crate::journal::JournalError>> {
    let range = StatsRange::of(p, &site_tz(state), state.journal.now_ms()).map_err(Ok)?;
    let names: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let stats = state
        .journal
        .endpoint_stats_between(names, range.since, range.until, range.buckets)
        .await
        .map_err(Err)?;
    Ok((range, stats))
}

/// A bucket's length in words: "5 min", "hour", "6 hours".
fn bucket_words(ms: i64) -> String {
    let minutes = (ms / 60_000).max(1);
    match minutes {
        60 => "hour".to_string(),
        m if m % 60 == 0 => format!("{} hours", m / 60),
        m => format!("{m} min"),
    }
}

pub async fn stats(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<StatsParams>,
) -> Response {
    let (range, stats) = match gather(&state, &p).await {
        Ok(x) => x,
        Err(Ok(e)) => return problem(&state, StatusCode::BAD_REQUEST, Some(&caller), &e),
        Err(Err(e)) => return journal_error(&state, e),
    };
    let (since, bucket_ms) = (range.since, range.bucket_ms());
    let tz = site_tz(&state);
    let over = match range.name {
        "custom" => format!(
            "{} – {}",
            zoned(range.since, &tz, "%Y-%m-%d %H:%M"),
            zoned(range.until, &tz, "%Y-%m-%d %H:%M")
        ),
        name => name.to_string(),
    };
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
    let format = if range.until - range.since > 86_400_000 {
        "%m-%d %H:%M"
    } else {
        "%H:%M"
    };
    let label = |t: i64| zoned(t, &tz, format);
    let per = bucket_words(bucket_ms);
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
            let age = [Series {
                name: "oldest waited",
                class: "s-age",
                values: &e.oldest_age_buckets,
            }];
            context! {
                name => e.name,
                age => queued.then(|| Value::from_serialize(chart(
                    &age,
                    (640, 150),
                    &format!("{}: how long the oldest waiting message had waited (longest in each {per}) over {over}", e.name),
                    "s",
                    since,
                    bucket_ms,
                    &label,
                ))),
                queue => queued.then(|| Value::from_serialize(chart(
                    &queue,
                    (640, 150),
                    &format!("{}: messages waiting (most in each {per}) over {over}", e.name),
                    "waiting",
                    since,
                    bucket_ms,
                    &label,
                ))),
                chart => Value::from_serialize(chart(
                    &series,
                    (640, 190),
                    &format!("{}: messages per {per} over {over}", e.name),
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
        context! {
            windows => ["1h", "24h", "7d"],
            chosen => range.name,
            over,
            from => p.from,
            to => p.to,
            csv => match range.name {
                "custom" => format!("from={}&to={}", range.since, range.until),
                name => format!("window={name}"),
            },
            rows,
            charts,
            per,
        },
    )
}

/// The chosen window's buckets as CSV: one line per endpoint and bucket.
pub async fn stats_csv(State(state): State<Shared>, Query(p): Query<StatsParams>) -> Response {
    let (range, stats) = match gather(&state, &p).await {
        Ok(x) => x,
        Err(Ok(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Err(Err(e)) => return journal_error(&state, e),
    };
    let (chosen, since, bucket_ms) = (range.name, range.since, range.bucket_ms());
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
