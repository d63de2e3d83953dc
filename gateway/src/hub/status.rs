//! The retained `status` payloads: online when connected, offline when the
//! gateway stops or (through the Last Will, published by the broker) when
//! its connection dies.

use super::mqtt::Protocol;
use super::payload::{encode, VERSION};
use crate::config::PayloadFormat;
use serde_json::json;

/// This build's version.
pub const GATEWAY_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Connected with `mqtt`: running since `started_at` (Unix ms), `uptime_s`
/// seconds.
pub fn online(format: PayloadFormat, now: i64, started_at: i64, mqtt: Protocol) -> Vec<u8> {
    encode(
        format,
        &json!({
            "v": VERSION,
            "state": "online",
            "version": GATEWAY_VERSION,
            "at": now,
            "started_at": started_at,
            "uptime_s": (now - started_at).max(0) / 1000,
            "mqtt": mqtt.as_str(),
        }),
    )
}

/// Gone, and why: `stopped`, or `connection lost` for the Last Will (which
/// is written at connection time, so it carries no time of its own).
pub fn offline(format: PayloadFormat, reason: &str) -> Vec<u8> {
    encode(
        format,
        &json!({
            "v": VERSION,
            "state": "offline",
            "version": GATEWAY_VERSION,
            "reason": reason,
        }),
    )
}
