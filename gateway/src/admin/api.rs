//! The JSON API under `/api/v1`: what the pages show, for scripts and the
//! hub. Same roles, same audit as the pages: both call the services of
//! [`crate::control`].

pub mod config;
pub mod endpoints;
pub mod json;

use super::auth::{refusal_json, Caller, Role};
use super::Shared;
use crate::control::messages::{self, MessageView};
use crate::control::{self, users::TokenRequest, Refusal};
use crate::health::Status;
use crate::journal::{BulkOutcome, JournalError, MessageFilter};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

pub fn bad_request(why: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": why.into() })),
    )
        .into_response()
}

pub fn journal_error(e: JournalError) -> Response {
    tracing::error!(error = %e, "admin API: journal error");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "error": "journal error" })),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such message" })),
    )
        .into_response()
}

/// The widest time range a text search reads: every payload in it is read.
pub const TEXT_RANGE_MAX_MS: i64 = 7 * 24 * 3600 * 1000;

/// Filters as they arrive in a query string or form: all text, validated
/// here so that a bad value is a 400 with a reason, not a silent default.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct FilterParams {
    pub endpoint: Option<String>,
    pub status: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    /// Accession, order or specimen id.
    pub key: Option<String>,
    /// Text within the payloads of a time range of at most
    /// [`TEXT_RANGE_MAX_MS`].
    pub text: Option<String>,
    /// Unix ms, RFC 3339, or `YYYY-MM-DDTHH:MM` in the site's time zone.
    pub from: Option<String>,
    pub to: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

impl FilterParams {
    pub fn filter(&self, tz: &jiff::tz::TimeZone) -> Result<MessageFilter, String> {
        let clean = |s: &Option<String>| {
            s.as_ref()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let status = clean(&self.status);
        if let Some(s) = &status {
            if !MessageFilter::STATUSES.contains(&s.as_str()) {
                return Err(format!(
                    "status: `{s}` is not one of {}",
                    MessageFilter::STATUSES.join(", ")
                ));
            }
        }
        let from = clean(&self.from)
            .map(|v| parse_time(&v, tz).map_err(|e| format!("from: {e}")))
            .transpose()?;
        let to = clean(&self.to)
            .map(|v| parse_time(&v, tz).map_err(|e| format!("to: {e}")))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err("from must be before to".into());
            }
        }
        let text = clean(&self.text);
        if text.is_some() {
            match (from, to) {
                (Some(f), Some(t)) if t - f <= TEXT_RANGE_MAX_MS => {}
                _ => {
                    return Err(
                        "text: searching within payloads needs a time range (from and to) of at most 7 days"
                            .into(),
                    )
                }
            }
        }
        Ok(MessageFilter {
            endpoint: clean(&self.endpoint),
            status,
            message_type: clean(&self.message_type),
            control_id: clean(&self.control_id),
            patient_id: clean(&self.patient_id),
            key: clean(&self.key),
            text,
            from,
            to,
        })
    }

    pub fn paging(&self) -> Result<(Option<i64>, usize), String> {
        let before = match self.before.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(b) => Some(
                b.parse::<i64>()
                    .map_err(|_| format!("before: `{b}` is not a message id"))?,
            ),
        };
        let limit = match self.limit.as_deref().map(str::trim) {
            None | Some("") => 50,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=500).contains(&n) => n,
                _ => return Err(format!("limit: `{l}` is not a number from 1 to 500")),
            },
        };
        Ok((before, limit))
    }
}

/// Unix ms, an RFC 3339 timestamp, or a civil date-time in `tz`.
pub fn parse_time(v: &str, tz: &jiff::tz::TimeZone) -> Result<i64, String> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    v.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(tz.clone()).ok())
        .map(|z| z.timestamp().as_millisecond())
        .ok_or_else(|| format!("`{v}` is not a time (Unix ms, RFC 3339 or YYYY-MM-DDTHH:MM)"))
}

pub fn site_tz(state: &Shared) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(&state.config().site.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Start of today in the site's time zone, Unix ms.
pub fn start_of_today(state: &Shared) -> i64 {
    let now = state.journal.now_ms();
    jiff::Timestamp::from_millisecond(now)
        .ok()
        .and_then(|t| t.to_zoned(site_tz(state)).start_of_day().ok())
        .map_or(now - now.rem_euclid(86_400_000), |z| {
            z.timestamp().as_millisecond()
        })
}

/// One endpoint as the dashboard and `/api/v1/endpoints` show it.
#[derive(Debug, serde::Serialize)]
pub struct EndpointView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub direction: String,
    pub enabled: bool,
    /// `up`, `degraded`, `down`, `disabled`, `idle` (a delivery worker with
    /// nothing attempted since it started), `paused` (its circuit breaker
    /// tripped), or `unknown` until the
    /// endpoint's task has reported (see [`crate::health`]).
    pub status: &'static str,
    /// Since when the status holds (Unix ms).
    pub since: Option<i64>,
    /// What the endpoint's task last said: `listening on …`, the error.
    pub detail: Option<String>,
    pub last_message_at: Option<i64>,
    /// Rows waiting for this destination (queued and in flight).
    pub queue_depth: u64,
    pub in_flight: u64,
    /// Rows waiting after a failed attempt.
    pub failing: u64,
    /// Dead letters not discarded.
    pub dead: u64,
    /// Received from it plus delivered to it since midnight, site time.
    pub messages_today: u64,
    pub alerts: Vec<String>,
    /// `live`, or `sandbox`: deliveries captured or sent to `sandbox_url`.
    pub mode: &'static str,
}

/// Journal use above this share of its size cap raises an alert.
const JOURNAL_ALERT_SHARE: f64 = 0.9;

/// The dashboard: every endpoint, and alerts about the whole gateway.
pub struct Overview {
    pub endpoints: Vec<EndpointView>,
    pub alerts: Vec<String>,
}

/// Every endpoint as the dashboard shows it.
pub async fn endpoint_views(state: &Shared) -> Result<Vec<EndpointView>, JournalError> {
    Ok(overview(state).await?.endpoints)
}

pub async fn overview(state: &Shared) -> Result<Overview, JournalError> {
    let config = state.config();
    let names: Vec<String> = config.endpoints.iter().map(|e| e.name.clone()).collect();
    let activity = state
        .journal
        .endpoint_activity(names, start_of_today(state))
        .await?;
    let tz = site_tz(state);
    let now = state.journal.now_ms();
    let mut alerts = Vec::new();
    let endpoints: Vec<EndpointView> = config
        .endpoints
        .iter()
        .zip(activity)
        .map(|(e, a)| {
            let link = state.health.get(&e.name);
            let (status, since) = match (&link, e.enabled) {
                (_, false) => (Status::Disabled, None),
                (Some(l), true) => {
                    let (s, since) = l.status(now);
                    (s, Some(since))
                }
                (None, true) => (Status::Unknown, None),
            };
            let detail = link.as_ref().and_then(|l| l.detail.clone());
            let mut endpoint_alerts = Vec::new();
            let at = |ms: i64| super::format::time(ms, &tz);
            match (status, since) {
                (Status::Down, Some(t)) => endpoint_alerts.push(format!(
                    "down since {}{}",
                    at(t),
                    detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                (Status::Paused, Some(t)) => endpoint_alerts.push(format!(
                    "paused by its circuit breaker since {}{}; its messages wait: fix the endpoint, then resume it",
                    at(t),
                    detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )),
                (Status::Degraded, Some(t)) => endpoint_alerts.push(format!(
                    "failing since {}{}",
                    at(t),
                    detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
                _ => {}
            }
            if a.dead > 0 {
                endpoint_alerts.push(format!(
                    "{} dead letter{}{}",
                    a.dead,
                    if a.dead == 1 { "" } else { "s" },
                    a.dead_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
            if a.failing > 0 && !matches!(status, Status::Down | Status::Degraded) {
                endpoint_alerts.push(format!(
                    "{} deliveries waiting to be retried{}",
                    a.failing,
                    a.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
            for alert in &endpoint_alerts {
                alerts.push(format!("{}: {alert}", e.name));
            }
            EndpointView {
                name: e.name.clone(),
                kind: e.kind.type_name(),
                direction: e.direction.to_string(),
                enabled: e.enabled,
                status: status.as_str(),
                since,
                detail,
                last_message_at: match (a.last_delivered_at, a.last_received_at) {
                    (Some(d), Some(r)) => Some(d.max(r)),
                    (d, r) => d.or(r),
                },
                queue_depth: a.queued + a.in_flight,
                in_flight: a.in_flight,
                failing: a.failing,
                dead: a.dead,
                messages_today: a.received_since + a.delivered_since,
                alerts: endpoint_alerts,
                mode: e.protection.mode.as_str(),
            }
        })
        .collect();
    let cap = state.config().journal.max_size;
    let used = state.journal.live_bytes().await?;
    if cap > 0 && used as f64 >= cap as f64 * JOURNAL_ALERT_SHARE {
        alerts.insert(
            0,
            format!(
                "journal at {:.0} % of its size cap ({} of {} MiB): new messages are refused at the cap",
                used as f64 * 100.0 / cap as f64,
                used >> 20,
                cap >> 20
            ),
        );
    }
    let device = state.service.device(&state.journal);
    for (i, alert) in crate::service::readiness::device_alerts(&device)
        .into_iter()
        .enumerate()
    {
        alerts.insert(i, alert);
    }
    let newer_schema = state.journal.newer_schema();
    if let Some(reason) = newer_schema.and(state.journal.unwritable_reason()) {
        alerts.insert(0, reason);
    } else if state.journal.unwritable() {
        alerts.insert(
            0,
            "the disk holding the journal is full: every message is refused and nothing can be changed until space is freed"
                .to_string(),
        );
    }
    Ok(Overview { endpoints, alerts })
}

pub async fn endpoints(State(state): State<Shared>) -> Response {
    match overview(&state).await {
        Ok(o) => Json(json!({ "endpoints": o.endpoints, "alerts": o.alerts })).into_response(),
        Err(e) => journal_error(e),
    }
}

pub async fn messages(State(state): State<Shared>, Query(p): Query<FilterParams>) -> Response {
    let filter = match p.filter(&site_tz(&state)) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let (before, limit) = match p.paging() {
        Ok(x) => x,
        Err(e) => return bad_request(e),
    };
    match state.journal.list_messages(filter, before, limit).await {
        Ok(page) => Json(json::Page::from(&page)).into_response(),
        Err(e) => journal_error(e),
    }
}

/// A delivery's state as the viewer and the API name it (`failing`,
/// `in-flight`, `discarded`...), the same names the message list uses.
/// `captured` for a row settled in sandbox mode.
pub fn delivery_state(
    o: &crate::journal::OutboxRecord,
    discarded: bool,
    captured: bool,
) -> &'static str {
    use crate::journal::OutboxState;
    if captured && o.state == OutboxState::Delivered {
        return "captured";
    }
    // `state_name` takes the journal's state codes.
    let code = match o.state {
        OutboxState::Queued => 0,
        OutboxState::Leased => 1,
        OutboxState::Delivered => 2,
        OutboxState::Dead => 3,
    };
    crate::journal::state_name(code, o.attempts, discarded)
}

/// One message with its payload: audited as a view of patient data.
pub async fn message(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let view = match messages::view(&state.ops, &caller.actor(), id, "api").await {
        Ok(v) => v,
        Err(Refusal::NotFound(_)) => return not_found(),
        Err(Refusal::Journal(e)) => return journal_error(e),
        Err(e) => return refusal_json(&e),
    };
    let MessageView {
        message: m,
        outbox,
        events,
        discards,
        captures,
    } = view;
    let outbox: Vec<_> = outbox
        .iter()
        .map(|o| {
            let discard = discards.get(&o.id);
            let capture = captures.get(&o.id);
            json!({
                "id": o.id,
                "destination": o.destination,
                "transform": o.transform,
                "lane": o.lane,
                "state": delivery_state(o, discard.is_some(), capture.is_some()),
                "captured": capture.and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok()),
                "attempts": o.attempts,
                "next_attempt_at": o.next_attempt_at,
                "last_error": o.last_error,
                "discarded": discard.map(|(at, actor, reason)| json!({"at": at, "by": actor, "reason": reason})),
            })
        })
        .collect();
    let events: Vec<_> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "at": e.at, "outbox_id": e.outbox_id, "kind": e.kind,
                "outcome": e.outcome, "duration_ms": e.duration_ms, "detail": e.detail, "actor": e.actor,
            })
        })
        .collect();
    Json(json!({
        "id": m.id,
        "source": m.source,
        "message_type": m.message_type,
        "content_type": m.content_type,
        "control_id": m.control_id,
        "patient_id": m.patient_id,
        "received_at": m.received_at,
        "payload": String::from_utf8_lossy(&m.payload),
        "ack": m.ack.as_deref().map(String::from_utf8_lossy),
        "outbox": outbox,
        "events": events,
    }))
    .into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct StatsParams {
    pub window: Option<String>,
    /// A range of one's own instead of a window: times as the filters
    /// take them.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The time the statistics cover: a named window ending now, or a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRange {
    /// `1h`, `24h`, `7d`, or `custom`.
    pub name: &'static str,
    pub since: i64,
    pub until: i64,
    pub buckets: usize,
}

impl StatsRange {
    /// From `p`: `from` and `to` (both, `from` before `to`) when given,
    /// else the window; buckets of at least a minute, the statistics'
    /// grain.
    pub fn of(p: &StatsParams, tz: &jiff::tz::TimeZone, now: i64) -> Result<StatsRange, String> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        match (given(&p.from), given(&p.to)) {
            (None, None) => {
                let (name, span, buckets) = window(p.window.as_deref())?;
                Ok(StatsRange {
                    name,
                    since: now - span,
                    until: now,
                    buckets,
                })
            }
            (Some(f), Some(t)) => {
                let since = parse_time(f, tz).map_err(|e| format!("from: {e}"))?;
                let until = parse_time(t, tz).map_err(|e| format!("to: {e}"))?;
                if since >= until {
                    return Err("from must be before to".into());
                }
                let minutes = ((until - since) / 60_000).max(1);
                Ok(StatsRange {
                    name: "custom",
                    since,
                    until,
                    buckets: minutes.min(24) as usize,
                })
            }
            _ => Err("a range needs both from and to".into()),
        }
    }

    pub fn bucket_ms(&self) -> i64 {
        (self.until - self.since) / self.buckets as i64
    }
}

/// `1h`, `24h` or `7d` → (ms, buckets).
pub fn window(w: Option<&str>) -> Result<(&'static str, i64, usize), String> {
    match w.unwrap_or("24h") {
        "1h" => Ok(("1h", 3_600_000, 12)),
        "24h" | "1d" => Ok(("24h", 86_400_000, 24)),
        "7d" => Ok(("7d", 7 * 86_400_000, 28)),
        other => Err(format!("window: `{other}` is not one of 1h, 24h, 7d")),
    }
}

pub async fn stats(State(state): State<Shared>, Query(p): Query<StatsParams>) -> Response {
    let range = match StatsRange::of(&p, &site_tz(&state), state.journal.now_ms()) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let names = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    let (name, since, until) = (range.name, range.since, range.until);
    match state
        .journal
        .endpoint_stats_between(names, since, until, range.buckets)
        .await
    {
        Ok(s) => {
            let endpoints: Vec<_> = s.iter().map(json::Stats::from).collect();
            Json(json!({ "window": name, "since": since, "until": until, "endpoints": endpoints }))
                .into_response()
        }
        Err(e) => journal_error(e),
    }
}

pub async fn retry_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match control::messages::retry_one(&state.ops, &caller.actor(), id).await {
        Ok(BulkOutcome { rows, truncated }) => {
            Json(json!({ "retried": rows, "truncated": truncated })).into_response()
        }
        Err(e) => refusal_json(&e),
    }
}

pub async fn retry_matching(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(p): Json<FilterParams>,
) -> Response {
    let filter = match p.filter(&site_tz(&state)) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    match control::messages::retry_matching(&state.ops, &caller.actor(), filter).await {
        Ok(BulkOutcome { rows, truncated }) => {
            Json(json!({ "retried": rows, "truncated": truncated })).into_response()
        }
        Err(e) => refusal_json(&e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DiscardBody {
    pub reason: String,
}

pub async fn discard_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Json(body): Json<DiscardBody>,
) -> Response {
    match control::messages::discard(&state.ops, &caller.actor(), id, &body.reason).await {
        Ok(n) => Json(json!({ "discarded": n })).into_response(),
        Err(e) => refusal_json(&e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditParams {
    pub before: Option<i64>,
}

pub async fn audit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<AuditParams>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    match state.journal.audit_log(p.before, 200).await {
        Ok(rows) => {
            let audit: Vec<_> = rows.iter().map(json::Audit::from).collect();
            Json(json!({ "audit": audit })).into_response()
        }
        Err(e) => journal_error(e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TokenBody {
    pub label: String,
    /// `viewer`, `operator` or `admin`; default `viewer`. Never more than
    /// the owner's role when used.
    pub role: Option<String>,
    /// Days until the token stops working; none: until revoked.
    pub expires_in_days: Option<u32>,
}

/// Creates an API token for the calling administrator; the token is shown
/// once and only its hash is kept.
pub async fn create_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<TokenBody>,
) -> Response {
    let request = TokenRequest {
        label: body.label,
        role: body.role,
        expires_in_days: body.expires_in_days,
    };
    match control::users::create_token(&state.ops, &caller.actor(), &request).await {
        Ok(t) => (
            StatusCode::CREATED,
            Json(json!({ "id": t.id, "token": t.token, "label": t.label, "role": t.role.as_str(), "expires_at": t.expires_at })),
        )
            .into_response(),
        Err(e) => refusal_json(&e),
    }
}

pub async fn tokens(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    match state.journal.admin_tokens().await {
        Ok(t) => {
            let tokens: Vec<_> = t.iter().map(json::Token::from).collect();
            Json(json!({ "tokens": tokens })).into_response()
        }
        Err(e) => journal_error(e),
    }
}

pub async fn revoke_token(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match control::users::revoke_token(&state.ops, &caller.actor(), id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal_json(&e),
    }
}
