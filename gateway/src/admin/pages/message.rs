//! The message viewer: what the journal knows of one message (its facts,
//! each delivery with its state, the history of events, the payload laid
//! out by format, the acknowledgement sent, the raw bytes), with the retry
//! and discard forms.

use crate::admin::api::{delivery_state, site_tz};
use crate::admin::auth::{Caller, Role};
use crate::admin::format::time;
use crate::admin::payload::{payload, printable};
use crate::admin::Shared;
use crate::control::messages::{self, MessageView};
use crate::control::{self, Refusal};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
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
    } = view;
    let deliveries: Vec<Value> = outbox
        .iter()
        .map(|o| {
            let discard = discards.get(&o.id);
            context! {
                destination => o.destination,
                transform => o.transform,
                state => delivery_state(o, discard.is_some()),
                attempts => o.attempts,
                error => o.last_error,
                discarded => discard.map(|(at, by, reason)| context! { at => time(*at, tz), by, reason }),
            }
        })
        .collect();
    let history: Vec<Value> = events
        .iter()
        .map(|e| {
            let destination = e
                .outbox_id
                .and_then(|oid| outbox.iter().find(|o| o.id == oid))
                .map(|o| o.destination.as_str());
            context! {
                at => time(e.at, tz),
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
