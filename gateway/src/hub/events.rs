//! The `events` payload of one journalled event.

use super::payload::{encode, VERSION};
use crate::config::PayloadFormat;
use crate::journal::HubEvent;
use serde_json::{json, Value};

/// The event as published: `id` is `{epoch}:{seq}`, unique for this
/// device's journal; the hub deduplicates by it (with the topic's site and
/// device), since an event may arrive more than once.
pub fn payload(format: PayloadFormat, epoch: &str, event: &HubEvent) -> Vec<u8> {
    let detail = event
        .detail
        .as_deref()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|_| Value::String(d.to_string())))
        .unwrap_or(Value::Null);
    encode(
        format,
        &json!({
            "v": VERSION,
            "id": format!("{epoch}:{}", event.id),
            "seq": event.id,
            "at": event.at,
            "kind": event.kind,
            "subject": event.subject,
            "detail": detail,
        }),
    )
}
