//! The task that drives rumqttc's event loop: connects, reconnects after a
//! wait from [`Backoff`], and forwards what happens to the uplink.
//!
//! After a lost connection it waits for the uplink to say it has forgotten
//! that connection's publications ([`LinkEvent::Lost`] carries the way to
//! say so), then throws away rumqttc's own copies — its retransmission
//! queue and the requests not taken yet — before connecting again. That is
//! what lets `inflight` match packet ids to events from each connection's
//! start: everything rumqttc sends on a connection was submitted after the
//! uplink learnt of it.

use super::backoff::Backoff;
use rumqttc::{Event, EventLoop, Packet};
use tokio::sync::{mpsc, oneshot};

/// What the uplink hears from the link.
#[derive(Debug)]
pub enum LinkEvent {
    /// CONNACK: publications may be submitted.
    Connected { session_present: bool },
    /// Anything else the event loop reported.
    Mqtt(Event),
    /// The connection failed or was lost; no reconnect before `forgotten`
    /// is answered (or dropped).
    Lost {
        error: String,
        forgotten: oneshot::Sender<()>,
    },
}

/// Runs `eventloop` until the uplink is gone.
pub async fn run(
    mut eventloop: EventLoop,
    mut backoff: Backoff,
    to_uplink: mpsc::Sender<LinkEvent>,
) {
    loop {
        let event = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                LinkEvent::Connected {
                    session_present: ack.session_present,
                }
            }
            Ok(event) => LinkEvent::Mqtt(event),
            Err(e) => {
                let (forgotten, wait) = oneshot::channel();
                if to_uplink
                    .send(LinkEvent::Lost {
                        error: e.to_string(),
                        forgotten,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = wait.await;
                // rumqttc moved its unacknowledged publications and the
                // requests not yet taken to `pending`; submissions made
                // since then are taken by `clean` too.
                // Events of the old connection not yet returned, and a
                // publication held back for a taken packet id, go too.
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                eventloop.state.collision = None;
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        if to_uplink.send(event).await.is_err() {
            return;
        }
    }
}
