//! The message log with its filters and live stream; the filter form and
//! the message list are shared with the errors page.

use crate::admin::api::json;
use crate::admin::api::{site_tz, FilterParams};
use crate::admin::auth::{still_valid, Caller};
use crate::admin::format::time;
use crate::admin::Shared;
use crate::journal::{MessageFilter, MessagePage};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::{context, Value};
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
        key => p.key,
        text => p.text,
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
        ("key", &p.key),
        ("text", &p.text),
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
        _ if p.key.as_deref().is_some_and(|k| !k.trim().is_empty())
            || p.text.as_deref().is_some_and(|t| !t.trim().is_empty()) =>
        {
            None
        }
        q if q.is_empty() => Some("/logs/stream".to_string()),
        q => Some(format!("/logs/stream?{q}")),
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
        .and_then(crate::journal::LiveCursor::parse)
    {
        Some(cursor) => cursor,
        None => match state.journal.live_cursor().await {
            Ok(id) => id,
            Err(e) => return journal_error(&state, e),
        },
    };
    struct Live {
        state: Shared,
        caller: Caller,
        filter: MessageFilter,
        tz: jiff::tz::TimeZone,
        after: crate::journal::LiveCursor,
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
                    live.after = events.last().map_or(live.after, |(cursor, _)| *cursor);
                    for (cursor, e) in events.iter().filter(|(_, e)| e.matches(&live.filter)) {
                        let mut data =
                            serde_json::to_value(json::Live::from(e)).unwrap_or_default();
                        data["time"] = time(e.at, &live.tz).into();
                        live.pending.push_back(
                            Event::default()
                                .event("log")
                                .id(cursor.to_string())
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
