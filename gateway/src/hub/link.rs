//! The task that drives the MQTT connection (`mqtt`): connects, reconnects
//! after a wait from [`Backoff`], and forwards what happens to the uplink.
//!
//! After a lost connection it waits for the uplink to say it has forgotten
//! that connection's publications ([`LinkEvent::Lost`] carries the way to
//! say so), then throws away the client's own copies — its retransmission
//! queue and the requests not taken yet — before connecting again. That is
//! what lets `inflight` match packet ids to events from each connection's
//! start: everything the client sends on a connection was submitted after
//! the uplink learnt of it.
//!
//! # Which MQTT
//!
//! With `protocol = "auto"` the first connection is MQTT 5. When a broker
//! answers it the way a 3.1.1 broker does (see `mqtt`), the link logs that
//! once and from then on connects with 3.1.1, for as long as the gateway
//! runs; a restart tries 5 again. Each [`LinkEvent::Connected`] hands the
//! uplink the client of the connection just made.

use super::backoff::Backoff;
use super::mqtt::{Client, Connection, Happened, Options, Protocol};
use tokio::sync::{mpsc, oneshot};

/// Requests the client queues for the connection; far more than the event
/// window and the few other publications ever need.
pub const CLIENT_QUEUE: usize = 512;

/// Seconds to connect (TCP, TLS and CONNACK).
const CONNECT_TIMEOUT: u64 = 10;

/// What the uplink hears from the link.
#[derive(Debug)]
pub enum LinkEvent {
    /// CONNACK: publications may be submitted through `client`.
    Connected {
        session_present: bool,
        protocol: Protocol,
        client: Client,
    },
    /// Anything else the connection reported.
    Mqtt(Happened),
    /// The connection failed or was lost; no reconnect before `forgotten`
    /// is answered (or dropped).
    Lost {
        error: String,
        forgotten: oneshot::Sender<()>,
    },
}

/// Connects with `options` (and with `fallback`, 3.1.1, once a broker
/// turns 5 down) until the uplink is gone.
pub async fn run(
    options: Options,
    mut fallback: Option<Options>,
    mut backoff: Backoff,
    to_uplink: mpsc::Sender<LinkEvent>,
) {
    let mut protocol = options.protocol();
    let (mut client, mut connection) = Connection::open(options, CLIENT_QUEUE, CONNECT_TIMEOUT);
    loop {
        let event = match connection.poll().await {
            Ok(Happened::Connected { session_present }) => {
                backoff.reset();
                LinkEvent::Connected {
                    session_present,
                    protocol,
                    client: client.clone(),
                }
            }
            Ok(Happened::Other) => continue,
            Ok(happened) => LinkEvent::Mqtt(happened),
            Err(failure) => {
                if failure.answered_as_v311 {
                    // No CONNACK on this connection, so the uplink has
                    // nothing of it to forget.
                    if let Some(v311) = fallback.take() {
                        tracing::warn!(
                            error = failure.error,
                            "the hub broker does not take MQTT 5; using MQTT 3.1.1 until the gateway restarts"
                        );
                        protocol = v311.protocol();
                        (client, connection) =
                            Connection::open(v311, CLIENT_QUEUE, CONNECT_TIMEOUT);
                        continue;
                    }
                }
                let error = match failure.answered_as_v311 {
                    true => format!(
                        "the broker answered MQTT 5 the way a 3.1.1 broker does; `protocol = 5` needs an MQTT 5 broker (`auto` falls back to 3.1.1): {}",
                        failure.error
                    ),
                    false => failure.error,
                };
                let (forgotten, wait) = oneshot::channel();
                if to_uplink
                    .send(LinkEvent::Lost { error, forgotten })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = wait.await;
                connection.forget();
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        if to_uplink.send(event).await.is_err() {
            return;
        }
    }
}
