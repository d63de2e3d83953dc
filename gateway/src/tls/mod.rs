//! Every TLS configuration of the gateway, built here and nowhere else:
//! MLLP listeners and senders, the admin page, FHIR endpoints, the hub
//! uplink's MQTT broker, `send` and `probe`.
//!
//! Only rustls with the ring provider ([`provider`]): OpenSSL and aws-lc are
//! hard to build for the device, and one provider means one set of cipher
//! suites and one behaviour to reason about. `cargo tree -i aws-lc-sys` and
//! `cargo tree -i openssl-sys` stay empty.
//!
//! - [`server`]: what a listener presents and which clients it accepts.
//! - [`client`]: how a client verifies its server (a CA bundle, the system's
//!   trust store, or one pinned certificate) and proves itself (mutual TLS).
//! - [`certificates`]: the admin page's self-signed device certificate.
//! - [`pem`]: the operator's PEM files, read with errors that name them.
//! - [`upload`]: a PEM file uploaded from the admin page, checked before a
//!   setting refers to it.

pub mod certificates;
pub mod client;
mod pem;
mod pinned;
pub mod server;
#[cfg(test)]
pub(crate) mod test_pki;
pub mod upload;

pub use client::{
    broker_client_config, client_config, https_client_config, server_name, HttpsTrust,
};
pub use pem::certificate_expiry;
pub use server::{admin_server_config, server_config};

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The crypto provider every configuration uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
