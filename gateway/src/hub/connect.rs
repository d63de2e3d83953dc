//! The MQTT connection's options from `[hub]`: the broker, the device's
//! identity (client certificate or username and password), the TLS
//! configuration of the `tls` room, keepalive, the persistent session and
//! the Last Will.
//!
//! MQTT 5 where the broker offers it, 3.1.1 otherwise (`[hub] protocol`,
//! `auto` by default; `link` falls back). Nothing the uplink does needs
//! more than 3.1.1 has (command ids are in the topic, the reply topic
//! follows from it), so both carry the same topics and payloads; what 5
//! adds is that the gateway says how long the broker keeps its session
//! while it is away (`session_expiry`, clean start false). In 3.1.1 the
//! session is `clean_session = false` and how long an absent gateway's
//! session is kept is the broker's setting (mosquitto:
//! `persistent_client_expiration`).
//!
//! Everything else is set alike for both: manual acknowledgements, the
//! retained Last Will, keepalive, the largest packet, the publications in
//! flight (an MQTT 5 broker may allow fewer, by its receive maximum), and
//! TLS through the `tls` room's rustls configuration.

use super::mqtt::{qos_v311, qos_v5, Options, Protocol, Qos};
use super::status;
use super::topics::Topics;
use crate::config::HubConfig;
use crate::tls::{broker_client_config, HttpsTrust, TlsError};
use rumqttc::{TlsConfiguration, Transport};
use std::sync::Arc;

/// Publications in flight the client allows at once.
pub const INFLIGHT: u16 = 100;

/// Largest packet either way: a pushed configuration fits with room.
pub const MAX_PACKET: usize = 1 << 20;

/// The shortest keepalive on MQTT 5.
pub const MIN_KEEPALIVE_V5: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("[hub]: {0}")]
    Config(String),
    #[error("[hub]: {0}")]
    Tls(#[from] TlsError),
}

/// The client's options for `config` in `protocol`, with its Last Will on
/// `topics`.
pub fn options(
    config: &HubConfig,
    topics: &Topics,
    protocol: Protocol,
) -> Result<Options, ConnectError> {
    let broker = config.broker().map_err(ConnectError::Config)?;
    let will_payload = status::offline(config.format, "connection lost");
    // The will is retained: a hub subscribing later still learns the
    // gateway is gone.
    let will_qos = Qos::AtLeastOnce;
    let transport = match broker.tls {
        true => {
            let trust = HttpsTrust {
                ca_file: config.ca_file.clone(),
                pinned_cert: None,
                identity: config.cert.clone().zip(config.key.clone()),
            };
            let tls = broker_client_config(&trust)?;
            Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls)))
        }
        false => Transport::Tcp,
    };
    let login = config
        .username
        .clone()
        .map(|user| (user, config.password.clone().unwrap_or_default()));
    Ok(match protocol {
        Protocol::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(config.client_id(), broker.host, broker.port);
            let expiry = u32::try_from(config.session_expiry.0.as_secs()).unwrap_or(u32::MAX);
            // rumqttc's MQTT 5 client takes no keepalive under 5 s.
            o.set_keep_alive(config.keepalive.0.max(MIN_KEEPALIVE_V5))
                // The broker keeps the subscriptions and the QoS 1 commands
                // sent while the gateway is away, for `session_expiry`.
                .set_clean_start(false)
                .set_session_expiry_interval(Some(expiry))
                // Commands are acknowledged once handled, so one arriving
                // just before a crash comes again.
                .set_manual_acks(true)
                .set_outgoing_inflight_upper_limit(INFLIGHT)
                .set_max_packet_size(Some(MAX_PACKET as u32))
                .set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                    topics.status(),
                    will_payload,
                    qos_v5(will_qos),
                    true,
                    None,
                ))
                .set_transport(transport);
            if let Some((user, password)) = login {
                o.set_credentials(user, password);
            }
            Options::V5(Box::new(o))
        }
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(config.client_id(), broker.host, broker.port);
            o.set_keep_alive(config.keepalive.0)
                .set_clean_session(false)
                .set_manual_acks(true)
                .set_inflight(INFLIGHT)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                .set_last_will(rumqttc::LastWill::new(
                    topics.status(),
                    will_payload,
                    qos_v311(will_qos),
                    true,
                ))
                .set_transport(transport);
            if let Some((user, password)) = login {
                o.set_credentials(user, password);
            }
            Options::V311(Box::new(o))
        }
    })
}
