//! The message viewer: what the journal knows of one message (its facts,
//! each delivery with its state, the history of events, the payload laid
//! out by format, the acknowledgement sent, the raw bytes), with the retry
//! and discard forms; what one delivery sends (the FHIR Bundle, made
//! afresh) and the message's bytes, shown and downloaded.

use crate::admin::api::{delivery_state, site_tz};
use crate::admin::auth::{Caller, Role};
use crate::admin::format::time;
use crate::admin::payload::{payload, printable};
use crate::admin::Shared;
use crate::control::messages::{self, MessageView};
use crate::control::{self, Refusal};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::{context, Value};

use super::*;

pub async fn message(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    let view = match messages::view(&state.ops, &caller.actor(), id, "page").await {
        Ok(v) => v,
        Err(e) => return message_refused(&state, &caller, &e),
    };
    let tz = site_tz(&state);
    state.templates.page(
        StatusCode::OK,
        "message.html",
        &format!("Message #{id}"),
        Some(&caller),
        viewer_values(&caller, id, view, &tz),
    )
}

/// The viewer's values (`message.html`).
fn viewer_values(caller: &Caller, id: i64, view: MessageView, tz: &jiff::tz::TimeZone) -> Value {
    let MessageView {
        message: m,
        outbox,
        events,
        discards,
        captures,
    } = view;
    let deliveries: Vec<Value> = outbox
        .iter()
        .map(|o| {
            let discard = discards.get(&o.id);
            let capture = captures.get(&o.id);
            context! {
                id => o.id,
                destination => o.destination,
                transform => o.transform,
                state => delivery_state(o, discard.is_some(), capture.is_some()),
                captured => capture
                    .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                    .map(Value::from_serialize),
                attempts => o.attempts,
                error => o.last_error,
                discarded => discard.map(|(at, by, reason)| context! { at => time(*at, tz), by, reason }),
            }
        })
        .collect();
    let history: Vec<Value> = collapse_attempts(&events)
        .into_iter()
        .map(|(e, repeats)| {
            let destination = e
                .outbox_id
                .and_then(|oid| outbox.iter().find(|o| o.id == oid))
                .map(|o| o.destination.as_str());
            context! {
                at => time(e.at, tz),
                until => repeats.map(|(_, last)| time(last, tz)),
                repeats => repeats.map(|(n, _)| n),
                kind => e.kind,
                destination,
                outcome => e.outcome,
                duration_ms => e.duration_ms,
                detail => e.detail,
                actor => e.actor,
            }
        })
        .collect();
    context! {
        id,
        received => time(m.received_at, tz),
        source => m.source,
        message_type => m.message_type,
        control_id => m.control_id,
        patient_id => m.patient_id,
        content_type => m.content_type,
        size => m.payload.len(),
        operator => caller.role >= Role::Operator,
        back => format!("/messages/{id}"),
        deliveries,
        history,
        payload => Value::from_serialize(payload(&m.content_type, &m.message_type, &m.payload)),
        ack => m.ack.as_deref().map(|a| printable(&String::from_utf8_lossy(a))),
        raw => printable(&String::from_utf8_lossy(&m.payload)),
    }
}

/// The history with each run of failed attempts of one delivery that failed
/// the same way (same outcome, same error but for numbers and ids) as one
/// row: its first event, and how many it stands for with the time of the
/// last. An outage's hundred retries read as one line.
fn collapse_attempts(
    events: &[crate::journal::EventRecord],
) -> Vec<(&crate::journal::EventRecord, Option<(usize, i64)>)> {
    let same = |a: &crate::journal::EventRecord, b: &crate::journal::EventRecord| {
        a.kind == "attempt"
            && b.kind == "attempt"
            && a.outbox_id == b.outbox_id
            && a.outcome == b.outcome
            && a.outcome.as_deref() != Some("delivered")
            && control::errors::shape(a.detail.as_deref().unwrap_or_default())
                == control::errors::shape(b.detail.as_deref().unwrap_or_default())
    };
    let mut out: Vec<(&crate::journal::EventRecord, Option<(usize, i64)>)> = Vec::new();
    for e in events {
        if let Some((first, repeats)) = out.last_mut() {
            if same(first, e) {
                let n = repeats.map_or(1, |(n, _)| n);
                *repeats = Some((n + 1, e.at));
                continue;
            }
        }
        out.push((e, None));
    }
    out
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DownloadQuery {
    /// Present (`?download=1`): the body as a file to save, not a page.
    pub download: Option<String>,
}

/// What delivery `oid` of message `id` sends, as a page or (`?download=1`)
/// a file.
pub async fn delivery_rendering(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, oid)): Path<(i64, i64)>,
    Query(q): Query<DownloadQuery>,
) -> Response {
    let download = q.download.is_some();
    let channel = if download { "download" } else { "page" };
    let r = match messages::rendering(&state.ops, &caller.actor(), id, oid, channel).await {
        Ok(r) => r,
        Err(e) => return message_refused(&state, &caller, &e),
    };
    match (&r.body, download) {
        (Ok((content_type, body)), true) => {
            let ext = if content_type.contains("json") {
                "json"
            } else {
                "bin"
            };
            attachment(
                content_type,
                &format!("message-{id}-{}.{ext}", r.destination),
                body.clone(),
            )
        }
        _ => state.templates.page(
            StatusCode::OK,
            "delivery.html",
            &format!("Message #{id} to {}", r.destination),
            Some(&caller),
            context! {
                id,
                oid,
                destination => r.destination,
                transform => r.transform,
                body => r.body.as_ref().ok().map(|(_, b)| printable(&String::from_utf8_lossy(b))),
                error => r.body.as_ref().err(),
            },
        ),
    }
}

/// Message `id` as received, as a file.
pub async fn message_raw(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Response {
    match messages::export(&state.ops, &caller.actor(), id, "download").await {
        Ok(m) => {
            let ext = raw_extension(&m.content_type);
            attachment(
                "application/octet-stream",
                &format!("message-{id}.{ext}"),
                m.envelope.payload,
            )
        }
        Err(e) => message_refused(&state, &caller, &e),
    }
}

/// The file name's extension for a payload of `content_type`.
fn raw_extension(content_type: &str) -> &'static str {
    let ct = content_type.to_ascii_lowercase();
    if ct.contains("hl7") {
        "hl7"
    } else if ct.contains("astm") {
        "astm"
    } else if ct.contains("json") {
        "json"
    } else if ct.contains("dicom") {
        "dcm.json"
    } else {
        "bin"
    }
}

fn attachment(content_type: &str, name: &str, body: Vec<u8>) -> Response {
    // Names are built here from ids and endpoint names; quotes and path
    // separators are kept out all the same.
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ActionForm {
    pub csrf: String,
    pub reason: String,
    /// The page the form was on (see [`safe_back`](super::safe_back)).
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

fn message_refused(state: &AdminState, caller: &Caller, e: &Refusal) -> Response {
    match e {
        Refusal::NotFound(_) => problem(
            state,
            StatusCode::NOT_FOUND,
            Some(caller),
            "There is no such message.",
        ),
        e => refused(state, Some(caller), e),
    }
}
