//! The dashboard: every endpoint with its link, queue and alerts. The page
//! works as loaded; `app.js` keeps it current by fetching its live part
//! (`/dashboard/live`, the same template alone) when the live log reports
//! something and every few seconds for link changes.

use crate::admin::api::{overview, site_tz};
use crate::admin::auth::Caller;
use crate::admin::format::{opt_time, query_value, time};
use crate::admin::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::context;

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
                dead => v.dead,
                today => v.messages_today,
                alerts => v.alerts.join("; "),
            }
        })
        .collect();
    let now = time(jiff::Timestamp::now().as_millisecond(), &tz);
    let mut alerts = o.alerts;
    let firmware = firmware(state, &tz, &mut alerts).await;
    state.templates.page(
        StatusCode::OK,
        template,
        "Dashboard",
        Some(caller),
        context! { alerts, endpoints, now, firmware },
    )
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
