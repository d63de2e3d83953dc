//! The MQTT connection's options from `[hub]`: the broker, the device's
//! identity (client certificate or username and password), the TLS
//! configuration of the `tls` room, keepalive, the persistent session and
//! the Last Will.
//!
//! MQTT 3.1.1, not 5: every broker a fleet might grow onto speaks it, and
//! nothing the uplink does needs 5 (command ids are in the topic, the reply
//! topic follows from it, a persistent session is `clean_session = false`).
//! How long the broker keeps an absent gateway's session is the broker's
//! setting in 3.1.1 (mosquitto: `persistent_client_expiration`).

use super::status;
use super::topics::Topics;
use crate::config::HubConfig;
use crate::tls::{broker_client_config, HttpsTrust, TlsError};
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use std::sync::Arc;

/// Publications in flight the client allows at once.
pub const INFLIGHT: u16 = 100;

/// Largest packet either way: a pushed configuration fits with room.
pub const MAX_PACKET: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("[hub]: {0}")]
    Config(String),
    #[error("[hub]: {0}")]
    Tls(#[from] TlsError),
}

/// The client's options for `config`, with its Last Will on `topics`.
pub fn options(config: &HubConfig, topics: &Topics) -> Result<MqttOptions, ConnectError> {
    let broker = config.broker().map_err(ConnectError::Config)?;
    let mut o = MqttOptions::new(config.client_id(), broker.host, broker.port);
    o.set_keep_alive(config.keepalive.0)
        // The broker keeps the subscriptions and the QoS 1 commands sent
        // while the gateway is away.
        .set_clean_session(false)
        // Commands are acknowledged once handled, so one arriving just
        // before a crash comes again.
        .set_manual_acks(true)
        .set_inflight(INFLIGHT)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_last_will(LastWill::new(
            topics.status(),
            status::offline(config.format, "connection lost"),
            QoS::AtLeastOnce,
            true,
        ));
    if let Some(user) = &config.username {
        o.set_credentials(user.clone(), config.password.clone().unwrap_or_default());
    }
    if broker.tls {
        let trust = HttpsTrust {
            ca_file: config.ca_file.clone(),
            pinned_cert: None,
            identity: config.cert.clone().zip(config.key.clone()),
        };
        let tls = broker_client_config(&trust)?;
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    Ok(o)
}
