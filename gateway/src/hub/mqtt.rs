//! The one module that knows rumqttc: its MQTT 5 client (`rumqttc::v5`)
//! and its 3.1.1 one behind the same few types, so the uplink is written
//! once for both.
//!
//! What the uplink hears ([`Happened`]) is only what it relies on: the
//! CONNACK and its session flag, the packet id each publication was sent
//! with, the PUBACK of each id, publications from the broker (to be
//! acknowledged by hand), and the end of a connection ([`Failure`]).
//!
//! Two things differ between the versions and are settled here:
//!
//! - An MQTT 5 PUBACK carries a reason code: only success (or "no
//!   matching subscribers", which is success for a publisher) acknowledges
//!   a publication; anything else is a refusal and reported as such, so an
//!   event is never released on it.
//! - A 3.1.1 broker answers a 5 CONNECT with CONNACK return code 1
//!   ("unacceptable protocol version": two bytes, too short for a 5
//!   CONNACK, so rumqttc cannot read it) or closes the connection.
//!   [`Failure::answered_as_v311`] says a failure before any CONNACK looks
//!   like that, which `link` falls back to 3.1.1 on.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::v5::mqttbytes::QoS as Qos5;

/// Which MQTT a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V5,
    V311,
}

impl Protocol {
    /// As the status and health payloads and the log name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V5 => "5",
            Protocol::V311 => "3.1.1",
        }
    }
}

/// Delivery guarantee of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

/// The client's options, of either version.
#[derive(Clone)]
pub enum Options {
    V5(Box<rumqttc::v5::MqttOptions>),
    V311(Box<rumqttc::MqttOptions>),
}

/// The handle publications, subscriptions and acknowledgements are
/// submitted through; requests queue for the [`Connection`].
#[derive(Debug, Clone)]
pub enum Client {
    V5(rumqttc::v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// A publication from the broker, to acknowledge with [`Client::try_ack`].
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    /// What the acknowledgement is made from; boxed, as a 5 packet with
    /// its properties is large.
    packet: Box<Packet>,
}

#[derive(Debug, Clone)]
enum Packet {
    V5(p5::Publish),
    V311(rumqttc::Publish),
}

/// What a connection reported, as far as the uplink cares.
#[derive(Debug)]
pub enum Happened {
    /// CONNACK: publications may be submitted.
    Connected { session_present: bool },
    /// A publication went out with packet id `pkid` (0 for QoS 0).
    Sent(u16),
    /// The next publication is held back until `pkid` is acknowledged.
    HeldBack(u16),
    /// The PUBACK of `pkid`; `accepted` is false for an MQTT 5 refusal.
    Acked { pkid: u16, accepted: bool },
    /// A publication from the broker.
    Delivered(Delivery),
    /// The DISCONNECT asked for went out.
    Disconnected,
    /// Anything else (pings, SUBACKs, acknowledgements sent).
    Other,
}

/// A connection that failed or ended.
#[derive(Debug)]
pub struct Failure {
    pub error: String,
    /// An MQTT 5 CONNECT answered the way a 3.1.1 broker answers it.
    pub answered_as_v311: bool,
}

/// rumqttc's event loop of either version: connects on the first
/// [`Connection::poll`] and again on the first after a failure.
pub enum Connection {
    V5 {
        eventloop: Box<rumqttc::v5::EventLoop>,
        connacked: bool,
    },
    V311(Box<rumqttc::EventLoop>),
}

impl Options {
    pub fn protocol(&self) -> Protocol {
        match self {
            Options::V5(_) => Protocol::V5,
            Options::V311(_) => Protocol::V311,
        }
    }
}

impl Connection {
    /// A client and its connection, with `queue` requests queued at most
    /// and `timeout` seconds to connect.
    pub fn open(options: Options, queue: usize, timeout: u64) -> (Client, Connection) {
        match options {
            Options::V5(mut o) => {
                o.set_request_channel_capacity(queue)
                    .set_connection_timeout(timeout);
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(*o, queue);
                let connection = Connection::V5 {
                    eventloop: Box::new(eventloop),
                    connacked: false,
                };
                (Client::V5(client), connection)
            }
            Options::V311(mut o) => {
                o.set_request_channel_capacity(queue);
                let (client, mut eventloop) = rumqttc::AsyncClient::new(*o, queue);
                let mut network = eventloop.network_options();
                network.set_connection_timeout(timeout);
                eventloop.set_network_options(network);
                (Client::V311(client), Connection::V311(Box::new(eventloop)))
            }
        }
    }

    /// The next thing that happened on the connection.
    pub async fn poll(&mut self) -> Result<Happened, Failure> {
        match self {
            Connection::V5 {
                eventloop,
                connacked,
            } => match eventloop.poll().await {
                Ok(event) => {
                    let happened = from_v5(event);
                    if matches!(happened, Happened::Connected { .. }) {
                        *connacked = true;
                    }
                    Ok(happened)
                }
                Err(e) => {
                    let answered_as_v311 = !*connacked && looks_like_v311_answer(&e);
                    *connacked = false;
                    Err(Failure {
                        error: e.to_string(),
                        answered_as_v311,
                    })
                }
            },
            Connection::V311(eventloop) => match eventloop.poll().await {
                Ok(event) => Ok(from_v311(event)),
                Err(e) => Err(Failure {
                    error: e.to_string(),
                    answered_as_v311: false,
                }),
            },
        }
    }

    /// Throws away the client's own copies of the lost connection's
    /// publications: its retransmission queue, the requests not taken yet,
    /// the events not returned yet and a publication held back for a taken
    /// packet id (see `link`).
    pub fn forget(&mut self) {
        match self {
            Connection::V5 { eventloop, .. } => {
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
            }
            Connection::V311(eventloop) => {
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
            }
        }
    }
}

impl Client {
    pub fn try_publish(
        &self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match self {
            Client::V5(c) => c
                .try_publish(topic, qos_v5(qos), retain, payload)
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_publish(topic, qos_v311(qos), retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes to `filter` with QoS 1.
    pub fn try_subscribe(&self, filter: String) -> Result<(), String> {
        match self {
            Client::V5(c) => c
                .try_subscribe(filter, Qos5::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Acknowledges `delivery`, which must have come through this client.
    pub fn try_ack(&self, delivery: &Delivery) -> Result<(), String> {
        match (self, delivery.packet.as_ref()) {
            (Client::V5(c), Packet::V5(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            (Client::V311(c), Packet::V311(p)) => c.try_ack(p).map_err(|e| e.to_string()),
            _ => Err("a delivery of the other MQTT version".into()),
        }
    }

    pub fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V311(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

pub fn qos_v5(qos: Qos) -> Qos5 {
    match qos {
        Qos::AtMostOnce => Qos5::AtMostOnce,
        Qos::AtLeastOnce => Qos5::AtLeastOnce,
    }
}

pub fn qos_v311(qos: Qos) -> rumqttc::QoS {
    match qos {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
    }
}

fn from_v5(event: rumqttc::v5::Event) -> Happened {
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    match event {
        Event::Incoming(p5::Packet::ConnAck(ack)) => Happened::Connected {
            session_present: ack.session_present,
        },
        Event::Incoming(p5::Packet::PubAck(ack)) => Happened::Acked {
            pkid: ack.pkid,
            accepted: matches!(
                ack.reason,
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
            ),
        },
        Event::Incoming(p5::Packet::Publish(p)) => Happened::Delivered(Delivery {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.clone(),
            packet: Box::new(Packet::V5(p)),
        }),
        Event::Outgoing(Outgoing::Publish(pkid)) => Happened::Sent(pkid),
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => Happened::HeldBack(pkid),
        Event::Outgoing(Outgoing::Disconnect) => Happened::Disconnected,
        _ => Happened::Other,
    }
}

fn from_v311(event: rumqttc::Event) -> Happened {
    use rumqttc::{Event, Outgoing, Packet as P};
    match event {
        Event::Incoming(P::ConnAck(ack)) => Happened::Connected {
            session_present: ack.session_present,
        },
        Event::Incoming(P::PubAck(ack)) => Happened::Acked {
            pkid: ack.pkid,
            accepted: true,
        },
        Event::Incoming(P::Publish(p)) => Happened::Delivered(Delivery {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            packet: Box::new(Packet::V311(p)),
        }),
        Event::Outgoing(Outgoing::Publish(pkid)) => Happened::Sent(pkid),
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => Happened::HeldBack(pkid),
        Event::Outgoing(Outgoing::Disconnect) => Happened::Disconnected,
        _ => Happened::Other,
    }
}

/// A failure of an MQTT 5 connection before its CONNACK that a 3.1.1
/// broker's answer to the CONNECT explains: the connection closed, or an
/// answer that is no MQTT 5 packet. Not a TCP or TLS failure (a TLS 1.3
/// server refusing the client's certificate says so only in an alert read
/// after the CONNECT went out), a timeout or a CONNACK that refuses for
/// another reason.
fn looks_like_v311_answer(e: &rumqttc::v5::ConnectionError) -> bool {
    use rumqttc::v5::mqttbytes::Error as Decode;
    use rumqttc::v5::{ConnectionError as E, StateError as S};
    use std::io::ErrorKind;
    let closed = |io: &std::io::Error| {
        matches!(
            io.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe
        )
    };
    match e {
        E::ConnectionRefused(code) => matches!(
            code,
            p5::ConnectReturnCode::UnsupportedProtocolVersion
                | p5::ConnectReturnCode::RefusedProtocolVersion
        ),
        E::MqttState(S::ConnectionAborted) => true,
        E::MqttState(S::Io(io) | S::Deserialization(Decode::Io(io))) => closed(io),
        E::MqttState(S::Deserialization(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::{ConnectionError as E, StateError as S};

    #[test]
    fn only_a_closed_connection_or_an_unreadable_answer_before_the_connack_looks_like_a_v311_broker(
    ) {
        let unreadable = S::Deserialization(rumqttc::v5::mqttbytes::Error::MalformedPacket);
        assert!(looks_like_v311_answer(&E::MqttState(unreadable)));
        assert!(looks_like_v311_answer(&E::MqttState(S::ConnectionAborted)));
        assert!(looks_like_v311_answer(&E::ConnectionRefused(
            p5::ConnectReturnCode::UnsupportedProtocolVersion
        )));
        for other in [
            E::ConnectionRefused(p5::ConnectReturnCode::BadUserNamePassword),
            E::ConnectionRefused(p5::ConnectReturnCode::NotAuthorized),
            E::Io(std::io::ErrorKind::ConnectionRefused.into()),
            E::MqttState(S::Io(std::io::ErrorKind::InvalidData.into())),
            // rustls: "received fatal alert: CertificateRequired".
            E::MqttState(S::Deserialization(rumqttc::v5::mqttbytes::Error::Io(
                std::io::Error::new(std::io::ErrorKind::InvalidData, "fatal alert"),
            ))),
        ] {
            assert!(!looks_like_v311_answer(&other), "{other:?}");
        }
    }

    #[test]
    fn an_mqtt5_puback_that_refuses_acknowledges_nothing() {
        let ack = |reason| {
            from_v5(rumqttc::v5::Event::Incoming(p5::Packet::PubAck(
                p5::PubAck {
                    pkid: 4,
                    reason,
                    properties: None,
                },
            )))
        };
        for (reason, accepted) in [
            (p5::PubAckReason::Success, true),
            (p5::PubAckReason::NoMatchingSubscribers, true),
            (p5::PubAckReason::QuotaExceeded, false),
            (p5::PubAckReason::NotAuthorized, false),
        ] {
            match ack(reason) {
                Happened::Acked {
                    pkid: 4,
                    accepted: a,
                } => assert_eq!(a, accepted, "{reason:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
