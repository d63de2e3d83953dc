//! The message log with its filters and live stream, and the message
//! viewer with its retry and discard forms.

use crate::admin::api::json;
use crate::admin::api::{site_tz, FilterParams};
use crate::admin::auth::{still_valid, Caller, Role};
use crate::admin::render::{csrf_field, esc, page, payload, printable, time};
use crate::admin::Shared;
use crate::control::messages::{self, MessageView};
use crate::control::{self, Refusal};
use crate::journal::{MessageFilter, MessagePage};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::{context, Value};
use std::fmt::Write;
use std::time::Duration;

use super::*;

/// The filter form's values (`_filters.html`) for a page at `action`.
pub(super) fn filter_values(action: &str, p: &FilterParams, state: &Shared) -> Value {
    let endpoints: Vec<String> = state
        .config()
        .endpoints
        .iter()
        .map(|e| e.name.clone())
        .collect();
    context! {
        action,
        endpoints,
        statuses => MessageFilter::STATUSES,
        endpoint => p.endpoint,
        status => p.status,
        message_type => p.message_type,
        control_id => p.control_id,
        patient_id => p.patient_id,
        from => p.from,
        to => p.to,
    }
}

pub(super) fn query_string(p: &FilterParams, before: Option<i64>) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("endpoint", &p.endpoint),
        ("status", &p.status),
        ("message_type", &p.message_type),
        ("control_id", &p.control_id),
        ("patient_id", &p.patient_id),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            pairs.push((k, v.to_string()));
        }
    }
    if let Some(b) = before {
        pairs.push(("before", b.to_string()));
    }
    serde_urlencoded::to_string(&pairs).unwrap_or_default()
}

/// The message list's rows (`_messages.html`).
pub(super) fn message_values(page_: &MessagePage, tz: &jiff::tz::TimeZone) -> Vec<Value> {
    page_
        .messages
        .iter()
        .map(|m| {
            let deliveries: Vec<_> = m
                .deliveries
                .iter()
                .map(|d| {
                    context! {
                        destination => d.destination,
                        state => d.state,
                        error => d.last_error.as_deref().filter(|_| d.state != "delivered"),
                    }
                })
                .collect();
            context! {
                id => m.id,
                received => time(m.received_at, tz),
                source => m.source,
                message_type => m.message_type,
                control_id => m.control_id,
                patient_id => m.patient_id,
                status => m.status,
                deliveries,
            }
        })
        .collect()
}

/// Retry and discard forms for one message; `back` is the page (path and
/// query) they return to.
pub(super) fn action_forms(c: &Caller, id: i64, back: &str) -> String {
    if c.role < Role::Operator {
        return String::new();
    }
    format!(
        "<form method=\"post\" action=\"/messages/{id}/retry\" class=\"inline\">{csrf}{back}<button class=\"retry\">Retry</button></form> \
         <form method=\"post\" action=\"/messages/{id}/discard\" class=\"inline\" data-confirm=\"Discard this message's undelivered deliveries?\">{csrf}{back}<input name=\"reason\" placeholder=\"reason\" required size=\"14\"><button class=\"discard\">Discard</button></form>",
        csrf = csrf_field(c),
        back = back_field(back),
    )
}

pub(super) fn back_field(back: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"back\" value=\"{}\">",
        esc(back)
    )
}

pub(super) async fn message_list(
    state: &Shared,
    p: &FilterParams,
) -> Result<(MessageFilter, MessagePage), Response> {
    let filter = p
        .filter(&site_tz(state))
        .map_err(|e| problem(state, StatusCode::BAD_REQUEST, None, &e))?;
    let (before, limit) = p
        .paging()
        .map_err(|e| problem(state, StatusCode::BAD_REQUEST, None, &e))?;
    let page_ = state
        .journal
        .list_messages(filter.clone(), before, limit)
        .await
        .map_err(|e| journal_error(state, e))?;
    Ok((filter, page_))
}

pub async fn logs(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FilterParams>,
) -> Response {
    let (_, page_) = match message_list(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tz = site_tz(&state);
    // The live stream gets the same filters as the list below it.
    let stream = match query_string(&p, None) {
        q if q.is_empty() => "/logs/stream".to_string(),
        q => format!("/logs/stream?{q}"),
    };
    state.templates.page(
        StatusCode::OK,
        "logs.html",
        "Logs",
        Some(&caller),
        context! {
            filter => filter_values("/logs", &p, &state),
            stream,
            time_zone => state.config().site.time_zone,
            messages => message_values(&page_, &tz),
            actions => false,
            older => page_.next_before.map(|b| query_string(&p, Some(b))),
        },
    )
}

/// How often a live log checks that its session (or token) still holds.
pub(super) const SESSION_RECHECK: Duration = Duration::from_secs(1);

/// Server-Sent Events: every journal event after the client's last one
/// that matches the filters, with its time written in the site's time zone.
/// The stream ends when the session is logged out or expires, or the token
/// is revoked (checked every [`SESSION_RECHECK`]).
pub async fn log_stream(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(p): Query<FilterParams>,
    headers: HeaderMap,
) -> Response {
    let tz = site_tz(&state);
    let filter = match p.filter(&tz) {
        Ok(f) => f,
        Err(e) => return bad_request(&state, e),
    };
    let start = match headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(id) => id,
        None => match state.journal.last_event_id().await {
            Ok(id) => id,
            Err(e) => return journal_error(&state, e),
        },
    };
    struct Live {
        state: Shared,
        caller: Caller,
        filter: MessageFilter,
        tz: jiff::tz::TimeZone,
        after: i64,
        pending: std::collections::VecDeque<Event>,
        checked: std::time::Instant,
    }
    let live = Live {
        state,
        caller,
        filter,
        tz,
        after: start,
        pending: std::collections::VecDeque::new(),
        checked: std::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        loop {
            if live.checked.elapsed() >= SESSION_RECHECK {
                if !still_valid(&live.state, &live.caller).await {
                    return None;
                }
                live.checked = std::time::Instant::now();
            }
            if let Some(ev) = live.pending.pop_front() {
                return Some((Ok::<Event, std::convert::Infallible>(ev), live));
            }
            if live.state.shutdown.is_cancelled() {
                return None;
            }
            match live.state.journal.events_after(live.after, 200).await {
                Ok(events) if !events.is_empty() => {
                    live.after = events.last().map_or(live.after, |e| e.id);
                    for e in events.iter().filter(|e| e.matches(&live.filter)) {
                        let mut data =
                            serde_json::to_value(json::Live::from(e)).unwrap_or_default();
                        data["time"] = time(e.at, &live.tz).into();
                        live.pending.push_back(
                            Event::default()
                                .event("log")
                                .id(e.id.to_string())
                                .data(data.to_string()),
                        );
                    }
                    if !live.pending.is_empty() {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            tokio::select! {
                _ = live.state.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

// ---- message viewer ----

pub async fn message(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let view = match messages::view(&state.ops, &caller.actor(), id, "page").await {
        Ok(v) => v,
        Err(Refusal::NotFound(_)) => {
            return problem(
                &state,
                StatusCode::NOT_FOUND,
                Some(&caller),
                "There is no such message.",
            )
        }
        Err(Refusal::Journal(e)) => return journal_error(&state, e),
        Err(e) => {
            return problem(
                &state,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&caller),
                &e.to_string(),
            )
        }
    };
    let MessageView {
        message: m,
        outbox,
        events,
        discards,
    } = view;
    let tz = site_tz(&state);
    let mut body = format!(
        "<table class=\"facts\"><tr><th>Received</th><td>{}</td></tr><tr><th>Source</th><td>{}</td></tr><tr><th>Type</th><td>{}</td></tr>\
         <tr><th>Control id</th><td>{}</td></tr><tr><th>Patient id</th><td>{}</td></tr><tr><th>Content type</th><td>{}</td></tr><tr><th>Size</th><td>{} bytes</td></tr></table>",
        time(m.received_at, &tz),
        esc(&m.source),
        esc(&m.message_type),
        esc(m.control_id.as_deref().unwrap_or("")),
        esc(m.patient_id.as_deref().unwrap_or("")),
        esc(&m.content_type),
        m.payload.len(),
    );
    body.push_str(&action_forms(&caller, id, &format!("/messages/{id}")));
    body.push_str("<h2>Deliveries</h2><table id=\"deliveries\"><thead><tr><th>Destination</th><th>Transform</th><th>State</th><th>Attempts</th><th>Last error</th><th>Discarded</th></tr></thead><tbody>");
    for o in &outbox {
        let d = discards.get(&o.id);
        let state_name = match (o.state, d.is_some()) {
            (crate::journal::OutboxState::Dead, true) => "discarded",
            (crate::journal::OutboxState::Dead, false) => "dead",
            (crate::journal::OutboxState::Delivered, _) => "delivered",
            (crate::journal::OutboxState::Leased, _) => "in-flight",
            (crate::journal::OutboxState::Queued, _) if o.attempts > 0 => "failing",
            (crate::journal::OutboxState::Queued, _) => "queued",
        };
        let _ = write!(
            body,
            "<tr class=\"delivery st-{s}\"><td>{}</td><td>{}</td><td class=\"st-{s}\">{s}</td><td>{}</td><td class=\"error\">{}</td><td>{}</td></tr>",
            esc(&o.destination),
            esc(&o.transform),
            o.attempts,
            esc(o.last_error.as_deref().unwrap_or("")),
            d.map(|(at, by, why)| format!("{} by {}: {}", time(*at, &tz), esc(by), esc(why)))
                .unwrap_or_default(),
            s = state_name,
        );
    }
    body.push_str("</tbody></table><h2>History</h2><table id=\"history\"><thead><tr><th>Time</th><th>Event</th><th>Destination</th><th>Outcome</th><th>Duration</th><th>Response or error</th><th>By</th></tr></thead><tbody>");
    for e in &events {
        let dest = e
            .outbox_id
            .and_then(|oid| outbox.iter().find(|o| o.id == oid))
            .map(|o| o.destination.as_str())
            .unwrap_or("");
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"st-{o}\">{o}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(e.at, &tz),
            esc(&e.kind),
            esc(dest),
            e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
            esc(e.detail.as_deref().unwrap_or("")),
            esc(e.actor.as_deref().unwrap_or("")),
            o = esc(e.outcome.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table><h2>Payload</h2>");
    body.push_str(&payload(&m.content_type, &m.message_type, &m.payload));
    body.push_str("<h2>Acknowledgement sent</h2>");
    match &m.ack {
        Some(ack) => {
            let _ = write!(
                body,
                "<pre class=\"ack\">{}</pre>",
                esc(&printable(&String::from_utf8_lossy(ack)))
            );
        }
        None => body.push_str("<p>None (this source does not acknowledge).</p>"),
    }
    let _ = write!(
        body,
        "<h2>Raw</h2><pre class=\"raw\">{}</pre>",
        esc(&printable(&String::from_utf8_lossy(&m.payload)))
    );
    html(
        StatusCode::OK,
        page(&format!("Message #{id}"), Some(&caller), &body),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub csrf: String,
    pub reason: String,
    /// The page the form was on (see [`safe_back`]).
    pub back: String,
}

pub async fn retry_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    match control::messages::retry_one(&state.ops, &caller.actor(), id).await {
        Ok(_) => back(&f.back, "/errors", None),
        Err(e) => message_refused(&state, &caller, &e),
    }
}

pub async fn discard_one(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Response {
    match control::messages::discard(&state.ops, &caller.actor(), id, &f.reason).await {
        Ok(_) => back(&f.back, "/errors", None),
        Err(e) => message_refused(&state, &caller, &e),
    }
}

pub(super) fn message_refused(state: &AdminState, caller: &Caller, e: &Refusal) -> Response {
    match e {
        Refusal::NotFound(_) => problem(
            &state,
            StatusCode::NOT_FOUND,
            Some(caller),
            "There is no such message.",
        ),
        e => refused(state, Some(caller), e),
    }
}
