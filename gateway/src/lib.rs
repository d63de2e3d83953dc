//! Ecko Edge: the gateway daemon as a library.
//!
//! Messages flow `sources` → `journal` (one transaction, then the ACK) →
//! `delivery` workers (transforms from `ecko-fhir`) → `sinks`. The codecs
//! are in `ecko-protocol`, the envelope every room shares in `ecko-message`,
//! hardware in `ecko-hal`; `ARCHITECTURE.md` at the repository root is the
//! map and its rules.
//!
//! # Layout
//!
//! - [`config`]: the one TOML file → typed, validated [`config::Config`],
//!   with located errors; edits that keep comments; history and rollback.
//! - [`endpoints`]: one module per endpoint type behind
//!   [`endpoints::EndpointType`] (settings, form, probe, preflight, source
//!   or delivery worker) and the registry [`endpoints::TYPES`].
//! - [`journal`]: the only SQL. Ingest with group commit, the outbox and
//!   leases, orders, retention, browsing, statistics, the live feed, users
//!   and audit; `journal::external` for a second process.
//! - [`sources`]: MLLP listener, ASTM (serial, TCP), file drop.
//! - [`router`]: which message goes where, through which transform.
//! - [`delivery`]: one worker per destination: lease, transform, send,
//!   settle; HL7 application acknowledgements.
//! - [`sinks`]: FHIR over HTTP(S), MLLP sender, file.
//! - [`app`]: start-up, the supervisor that applies configuration live, the
//!   orderly shutdown.
//! - [`control`]: every operator action once (retry, discard, endpoint and
//!   configuration changes, users and tokens, orders), with its role and
//!   audit record, for the admin page, its JSON API and the command line.
//! - [`admin`]: the axum admin page and its JSON API.
//! - [`hub`]: the uplink to the central hub over MQTT: retained status,
//!   durable events from the journal, health and statistics.
//! - [`probe`], [`preflight`]: "test connection" steps; start-up
//!   preconditions that `check-config` reports.
//! - [`net`]: what every listener does with a connection: admission
//!   (allowlist, caps per address and in all), pacing (frame deadline,
//!   minimum data rate, idle), the file-descriptor limit, refusals logged
//!   and counted.
//! - [`tls`]: every rustls configuration.
//! - [`rate`]: the token bucket of `rate_limit`, shared by the REST
//!   listener (429 above it) and the delivery worker (waits for tokens).
//! - [`site`], [`health`]: the site's live time zone; endpoint health.
//! - [`service`]: the gateway as an appliance service: task progress and
//!   the watchdog it feeds, `/readyz` readiness, `/metrics`, the status
//!   LEDs.
//! - [`update`]: firmware updates on this box (`[update]`, over
//!   `ecko-image`): the slot marked good after the readiness check, a
//!   fallback reported, both slots shown.
//! - [`send`]: the MLLP test sender behind `ecko-gateway send`.

pub mod admin;
pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod delivery;
pub mod endpoints;
pub mod factory_reset;
pub mod health;
pub mod hub;
pub mod journal;
pub mod listeners;
pub mod net;
pub mod preflight;
pub mod probe;
pub mod rate;
pub mod router;
pub mod send;
pub mod service;
pub mod sinks;
pub mod site;
pub mod sources;
pub mod ssh;
pub mod tls;
pub mod update;

/// The error and every cause below it, `: ` between them: reqwest's,
/// rustls' and the journal's own texts stop at the first. Shared by every
/// room that reports an error to a person.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
