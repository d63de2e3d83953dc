//! The dashboard: every endpoint with its link, queue and alerts. The page
//! works as loaded; `app.js` keeps it current by fetching its live part
//! (`/dashboard/live`, the same template alone) when the live log reports
//! something and every few seconds for link changes.

use crate::admin::api::{overview, site_tz, start_of_today};
use crate::admin::auth::Caller;
use crate::admin::format::{opt_time, query_value, time};
use crate::admin::Shared;
use crate::journal::EndpointStats;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::context;
use std::collections::HashMap;

use super::*;

pub async fn dashboard(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    render(&state, &caller, "dashboard.html").await
}

/// The dashboard's live part alone, for the page's script.
pub async fn dashboard_live(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut r = render(&state, &caller, "_dashboard.html").await;
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

async fn render(state: &Shared, caller: &Caller, template: &str) -> Response {
    let o = match overview(state).await {
        Ok(v) => v,
        Err(e) => return journal_error(state, e),
    };
    let tz = site_tz(state);
    // The journal's clock, which every stored time was taken from.
    let now_ms = state.journal.now_ms();
    let oldest: HashMap<String, i64> = state
        .journal
        .queue_depths()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|d| (d.destination, d.oldest_queued_at))
        .collect();
    let names: Vec<String> = o.endpoints.iter().map(|v| v.name.clone()).collect();
    let today: HashMap<String, EndpointStats> = state
        .journal
        .endpoint_stats(names.clone(), start_of_today(state), 1)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let day: HashMap<String, EndpointStats> = state
        .journal
        .endpoint_stats(names, now_ms - 86_400_000, 24)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let endpoints: Vec<_> = o
        .endpoints
        .iter()
        .map(|v| {
            let since = match (v.status, v.since) {
                ("down" | "degraded", Some(s)) => format!(" since {}", time(s, &tz)),
                _ => String::new(),
            };
            context! {
                name => v.name,
                query => query_value(&v.name),
                kind => v.kind,
                mode => v.mode,
                direction => v.direction,
                status => v.status,
                detail => v.detail,
                since,
                last_message => opt_time(v.last_message_at, &tz),
                queue => v.queue_depth,
                oldest => oldest.get(&v.name).map(|at| age(now_ms - at)),
                counts => today.get(&v.name).map(|t| counts(t, v.direction == "inbound")),
                sparkline => day.get(&v.name).map(|d| {
                    let hourly = if v.direction == "inbound" {
                        &d.received_buckets
                    } else {
                        &d.delivered_buckets
                    };
                    sparkline(hourly)
                }),
                dead => v.dead,
                today => v.messages_today,
                alerts => v.alerts.join("; "),
            }
        })
        .collect();
    let now = time(now_ms, &tz);
    let mut alerts = o.alerts;
    let firmware = firmware(state, &tz, &mut alerts).await;
    let system = system(state, &tz, now_ms).await;
    state.templates.page(
        StatusCode::OK,
        template,
        "Dashboard",
        Some(caller),
        context! { alerts, endpoints, now, firmware, system },
    )
}

/// Certificates expiring within this many days are shown as a warning.
const CERTIFICATE_WARNING_DAYS: i64 = 30;

/// The box itself: the journal against its cap, the disk, the WAL, uptime,
/// version, the clock, and when each certificate the configuration
/// presents expires.
async fn system(state: &Shared, tz: &jiff::tz::TimeZone, now_ms: i64) -> minijinja::Value {
    let journal = &state.journal;
    let (cap, _) = journal.limits();
    let used = journal.live_bytes().await.ok();
    let device = state.service.device(journal);
    let config = state.config();
    let certificates: Vec<minijinja::Value> = crate::alerts::certificates(&config)
        .into_iter()
        .map(|path| match crate::tls::certificate_expiry(&path) {
            Ok(at) => {
                let days = (at - now_ms).div_euclid(86_400_000);
                context! {
                    path => path.display().to_string(),
                    expires => time(at, tz),
                    days,
                    warn => days < CERTIFICATE_WARNING_DAYS,
                }
            }
            Err(e) => context! {
                path => path.display().to_string(),
                error => e.to_string(),
                warn => true,
            },
        })
        .collect();
    let uptime = state.service.uptime().as_secs();
    context! {
        journal_used => used.map(bytes),
        journal_cap => (cap > 0).then(|| bytes(cap)),
        journal_share => match (used, cap) {
            (Some(u), c) if c > 0 => Some(format!("{:.0} %", u as f64 * 100.0 / c as f64)),
            _ => None,
        },
        wal => bytes(journal.wal_bytes()),
        disk_free => device.disk_free.map(bytes),
        disk_reserve => bytes(device.disk_reserve),
        disk_low => device.disk_free.is_some_and(|f| f < device.disk_reserve.saturating_mul(2)),
        uptime => format!("{}d {:02}h {:02}m", uptime / 86_400, uptime / 3_600 % 24, uptime / 60 % 60),
        version => crate::cli::VERSION,
        clock => match device.clock_synchronised {
            Some(true) => "synchronised",
            Some(false) => "not synchronised",
            None => "unknown",
        },
        certificates,
    }
}

/// Today's counts in words: what arrived, was acknowledged and refused
/// for a source; what was delivered and failed for a destination.
fn counts(t: &EndpointStats, inbound: bool) -> String {
    if inbound {
        format!(
            "{} received, {} acknowledged, {} refused",
            t.received + t.rejected,
            t.received,
            t.rejected
        )
    } else {
        format!("{} delivered, {} failed", t.delivered, t.failed)
    }
}

/// The last 24 hours, an hour per point, as a small inline SVG line with
/// its numbers in the title (a hover shows them; colour is not the only
/// sign).
fn sparkline(hourly: &[u64]) -> String {
    const W: f64 = 96.0;
    const H: f64 = 20.0;
    let max = hourly.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = W / (hourly.len().max(2) - 1) as f64;
    let points: Vec<String> = hourly
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                H - 1.0 - (*n as f64 / max) * (H - 2.0)
            )
        })
        .collect();
    let total: u64 = hourly.iter().sum();
    format!(
        "<svg class=\"sparkline\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"last 24 hours: {total} in all, at most {peak} in an hour\"><title>last 24 hours, per hour: {hours}</title><polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{points}\"/></svg>",
        peak = max as u64 * u64::from(total > 0),
        hours = hourly.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
        points = points.join(" "),
    )
}

/// How long the oldest queued message has waited: `45 s`, `12 min`,
/// `3 h 20 min`, `2 d 4 h`.
fn age(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h {} min", s / 3_600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3_600 % 24),
    }
}

/// `1.5 GiB`, `320 MiB`, `12 KiB`, `512 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// Both firmware slots and the last result, with a failed update among the
/// alerts (which version, since when); `None` without `[update]`.
async fn firmware(
    state: &Shared,
    tz: &jiff::tz::TimeZone,
    alerts: &mut Vec<String>,
) -> Option<minijinja::Value> {
    let config = state.config();
    let status = match crate::update::status(config.update.as_ref()).await? {
        Ok(s) => s,
        Err(e) => {
            alerts.push(format!("firmware slots cannot be read: {e}"));
            return Some(context! { error => e });
        }
    };
    if let Some(f) = &status.failed {
        let seen = state.journal.failed_update().await.ok().flatten();
        let when = seen
            .filter(|r| r.slot == f.slot && r.version == f.version)
            .map(|r| format!(" (seen {})", time(r.detected_at, tz)))
            .unwrap_or_default();
        alerts.push(format!(
            "firmware update to {} failed{when}: it never passed the readiness check in slot {} and the bootloader fell back to the previous version",
            f.version, f.slot
        ));
    }
    let usb = match config.update.as_ref() {
        Some(u) => crate::update::usb::offered(u).await,
        None => Vec::new(),
    };
    Some(context! {
        slots => status.slots,
        last_result => status.last_result,
        failed => status.failed,
        usb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_as_a_person_would_say_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(320 << 20), "320 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(age(45_000), "45 s");
        assert_eq!(age(12 * 60_000), "12 min");
        assert_eq!(age((3 * 3600 + 20 * 60) * 1000), "3 h 20 min");
        assert_eq!(age((2 * 86_400 + 4 * 3600) * 1000), "2 d 4 h");
        assert_eq!(age(-5), "0 s");
    }

    #[test]
    fn a_sparkline_has_a_point_per_hour_and_says_its_numbers() {
        let mut hourly = vec![0u64; 24];
        hourly[23] = 8;
        hourly[10] = 2;
        let svg = sparkline(&hourly);
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 24);
        assert!(
            points.ends_with("96.0,1.0"),
            "the busiest hour at the top: {points}"
        );
        assert!(svg.contains("10 in all, at most 8 in an hour"), "{svg}");
        assert!(sparkline(&[0; 24]).contains("0 in all, at most 0"));
    }
}
