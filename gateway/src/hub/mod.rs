//! The uplink to the central Integration Hub over MQTT (`[hub]`).
//!
//! One connection per gateway to a standard MQTT broker (MQTT 5, or 3.1.1
//! where the broker speaks only that; see `connect` and `link`; `mqtt` is
//! the one module that knows the MQTT client), under the topic prefix `ecko/{site}/{device}/`:
//!
//! - `status`, retained: online with version and uptime when connected,
//!   offline when stopping and, through the Last Will, when the connection
//!   dies;
//! - `events`: durable. Journalled first (`watch`, the journal's own
//!   trigger for dead letters, `control::config` for changes), published
//!   from the journal's hub outbox, and released only on the PUBACK of the
//!   packet that carried each (`inflight` holds the rule);
//! - `health` and `stats`: telemetry, made fresh when due, never queued
//!   (`telemetry`);
//! - `cmd/+` in, `reply/{id}` out: commands, read (`commands`), checked
//!   against the device's command policy for age, replay and permission
//!   (`command_policy`), a pushed configuration's signature verified before
//!   its text is parsed (`signature`), run through the same `control`
//!   services as the admin page (`dispatch`) and answered with a result or
//!   a typed error (`reply`);
//! - `orders` in: FHIR orders for the analyzers behind this gateway, read
//!   (`orders`), journalled through `control::orders` and acknowledged to
//!   the broker only after the commit (`order_intake`), then served by
//!   host query and download like orders added locally.
//!
//! `docs/hub-protocol.md` is the contract with the hub: every topic, its
//! direction, QoS and retain flag, and the CDDL of each payload
//! (`payload`: CBOR, or JSON for debugging).
//!
//! The rooms this one uses: `config` (its settings), `journal` (the hub
//! outbox, queue depths, statistics), `health` (endpoint states), `tls` (the
//! broker's client configuration), `control` (the running gateway behind
//! `control::Gateway`), `service` (the device's clock), `ecko-hal` (free
//! disk).

mod backoff;
mod command_policy;
mod commands;
mod connect;
mod dispatch;
mod events;
mod firmware;
mod inflight;
mod link;
mod log_upload;
mod mqtt;
mod order_intake;
mod orders;
pub mod payload;
mod reply;
mod signature;
mod status;
pub mod telemetry;
mod topics;
mod uplink;
mod watch;

/// The readers of a command's payload, as `dispatch` runs them, without a
/// journal or a policy in between: for the fuzz target of command bodies.
pub mod command_decoders {
    pub use super::commands::{header, Command, Header};
    pub use super::firmware::bundle_url;
    pub use super::reply::{payload as reply_payload, CommandError};
}

pub use connect::ConnectError;
pub use dispatch::Dispatcher;
pub use topics::Topics;

use crate::control::Gateway;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// Starts the uplink of the running `gateway` (its `[hub]` as it is now)
/// and the watcher that journals its events; both end on `stop`.
pub fn start(gateway: Arc<dyn Gateway>, stop: CancellationToken) -> JoinHandle<()> {
    let config = gateway.config().hub.clone();
    let journalled = Arc::new(Notify::new());
    let watcher = tokio::spawn(watch::run(
        gateway.clone(),
        Arc::new(ecko_hal::storage::LinuxStorage),
        journalled.clone(),
        stop.clone(),
    ));
    tokio::spawn(async move {
        if let Err(e) = uplink::Uplink::run(config, gateway, journalled, stop.clone()).await {
            tracing::error!(error = %e, "the hub uplink is not available");
            stop.cancelled().await;
        }
        let _ = watcher.await;
    })
}
