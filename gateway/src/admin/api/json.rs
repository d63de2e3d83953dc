//! The journal's records as the JSON API and the live log send them.
//!
//! Scripts and the hub read these fields, so their names and order are the
//! API's contract. They are written out here rather than derived on the
//! journal's types: a change to how the journal keeps a record must not
//! change the API unnoticed, and what is left out (a live event's patient)
//! is decided where the data leaves the gateway.

use crate::journal::{
    AuditRecord, DeliveryState, EndpointStats, LiveEvent, MessagePage, MessageSummary, TokenRecord,
};
use serde::Serialize;

/// `GET /api/v1/messages`.
#[derive(Serialize)]
pub struct Page<'a> {
    messages: Vec<Summary<'a>>,
    next_before: Option<i64>,
}

/// A message in a list: the log's pages and an endpoint's recent messages.
#[derive(Serialize)]
pub struct Summary<'a> {
    id: i64,
    received_at: i64,
    source: &'a str,
    message_type: &'a str,
    control_id: Option<&'a str>,
    patient_id: Option<&'a str>,
    size: i64,
    status: &'a str,
    deliveries: Vec<Delivery<'a>>,
}

#[derive(Serialize)]
struct Delivery<'a> {
    outbox_id: i64,
    destination: &'a str,
    state: &'a str,
    attempts: u32,
    last_error: Option<&'a str>,
    discarded: bool,
}

impl<'a> From<&'a MessagePage> for Page<'a> {
    fn from(p: &'a MessagePage) -> Self {
        Page {
            messages: p.messages.iter().map(Summary::from).collect(),
            next_before: p.next_before,
        }
    }
}

impl<'a> From<&'a MessageSummary> for Summary<'a> {
    fn from(m: &'a MessageSummary) -> Self {
        Summary {
            id: m.id,
            received_at: m.received_at,
            source: &m.source,
            message_type: &m.message_type,
            control_id: m.control_id.as_deref(),
            patient_id: m.patient_id.as_deref(),
            size: m.size,
            status: m.status,
            deliveries: m.deliveries.iter().map(Delivery::from).collect(),
        }
    }
}

impl<'a> From<&'a DeliveryState> for Delivery<'a> {
    fn from(d: &'a DeliveryState) -> Self {
        Delivery {
            outbox_id: d.outbox_id,
            destination: &d.destination,
            state: d.state,
            attempts: d.attempts,
            last_error: d.last_error.as_deref(),
            discarded: d.discarded,
        }
    }
}

/// One endpoint of `GET /api/v1/stats`.
#[derive(Serialize)]
pub struct Stats<'a> {
    name: &'a str,
    received: u64,
    attempts: u64,
    delivered: u64,
    failed: u64,
    success_rate: Option<f64>,
    avg_ms: Option<f64>,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    p99_ms: Option<i64>,
    rejected: u64,
    rejection_rate: Option<f64>,
    buckets: &'a [u64],
}

impl<'a> From<&'a EndpointStats> for Stats<'a> {
    fn from(s: &'a EndpointStats) -> Self {
        Stats {
            name: &s.name,
            received: s.received,
            attempts: s.attempts,
            delivered: s.delivered,
            failed: s.failed,
            success_rate: s.success_rate,
            avg_ms: s.avg_ms,
            p50_ms: s.p50_ms,
            p95_ms: s.p95_ms,
            p99_ms: s.p99_ms,
            rejected: s.rejected,
            rejection_rate: s.rejection_rate,
            buckets: &s.buckets,
        }
    }
}

/// One line of `GET /api/v1/audit`.
#[derive(Serialize)]
pub struct Audit<'a> {
    id: i64,
    at: i64,
    actor: &'a str,
    action: &'a str,
    target: Option<&'a str>,
    detail: Option<&'a str>,
}

impl<'a> From<&'a AuditRecord> for Audit<'a> {
    fn from(a: &'a AuditRecord) -> Self {
        Audit {
            id: a.id,
            at: a.at,
            actor: &a.actor,
            action: &a.action,
            target: a.target.as_deref(),
            detail: a.detail.as_deref(),
        }
    }
}

/// One token of `GET /api/v1/tokens` (never its secret, which the journal
/// does not have).
#[derive(Serialize)]
pub struct Token<'a> {
    id: i64,
    label: &'a str,
    owner: &'a str,
    role: &'a str,
    created_at: i64,
    expires_at: Option<i64>,
}

impl<'a> From<&'a TokenRecord> for Token<'a> {
    fn from(t: &'a TokenRecord) -> Self {
        Token {
            id: t.id,
            label: &t.label,
            owner: &t.owner,
            role: &t.role,
            created_at: t.created_at,
            expires_at: t.expires_at,
        }
    }
}

/// One event of the live log's stream. The patient id is left out: the
/// journal keeps it on the event only so that a log filtered by patient can
/// match, and the stream has no need to send it.
#[derive(Serialize)]
pub struct Live<'a> {
    id: i64,
    at: i64,
    kind: &'a str,
    outcome: Option<&'a str>,
    duration_ms: Option<i64>,
    message_id: Option<i64>,
    source: Option<&'a str>,
    destination: Option<&'a str>,
    message_type: Option<&'a str>,
    control_id: Option<&'a str>,
    actor: Option<&'a str>,
}

impl<'a> From<&'a LiveEvent> for Live<'a> {
    fn from(e: &'a LiveEvent) -> Self {
        Live {
            id: e.id,
            at: e.at,
            kind: &e.kind,
            outcome: e.outcome.as_deref(),
            duration_ms: e.duration_ms,
            message_id: e.message_id,
            source: e.source.as_deref(),
            destination: e.destination.as_deref(),
            message_type: e.message_type.as_deref(),
            control_id: e.control_id.as_deref(),
            actor: e.actor.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_page_keeps_the_field_names_and_order_scripts_read() {
        let page = MessagePage {
            messages: vec![MessageSummary {
                id: 7,
                received_at: 1_700_000_000_000,
                source: "lab".into(),
                message_type: "ORU^R01".into(),
                control_id: Some("C1".into()),
                patient_id: None,
                size: 81,
                status: "dead",
                deliveries: vec![DeliveryState {
                    outbox_id: 9,
                    destination: "hub".into(),
                    state: "dead",
                    attempts: 1,
                    last_error: Some("HTTP 503".into()),
                    discarded: false,
                }],
            }],
            next_before: Some(7),
        };
        assert_eq!(
            serde_json::to_string(&Page::from(&page)).unwrap(),
            concat!(
                r#"{"messages":[{"id":7,"received_at":1700000000000,"source":"lab","#,
                r#""message_type":"ORU^R01","control_id":"C1","patient_id":null,"size":81,"#,
                r#""status":"dead","deliveries":[{"outbox_id":9,"destination":"hub","#,
                r#""state":"dead","attempts":1,"last_error":"HTTP 503","discarded":false}]}],"#,
                r#""next_before":7}"#
            )
        );
    }

    #[test]
    fn a_live_event_is_sent_without_its_patient() {
        let e = LiveEvent {
            id: 1,
            at: 2,
            kind: "received".into(),
            outcome: None,
            duration_ms: None,
            message_id: Some(3),
            source: Some("lab".into()),
            destination: None,
            message_type: Some("ORU^R01".into()),
            control_id: Some("C1".into()),
            actor: None,
            patient_id: Some("P1".into()),
        };
        let sent = serde_json::to_string(&Live::from(&e)).unwrap();
        assert!(!sent.contains("patient") && !sent.contains("P1"), "{sent}");
    }
}
