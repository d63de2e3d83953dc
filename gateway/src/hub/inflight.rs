//! Which journalled event each packet id carries, so that an event leaves
//! the journal only on the PUBACK of its own packet.
//!
//! # The rule
//!
//! rumqttc keeps unacknowledged publications in memory only, and gives
//! no handle from a publish call to the packet id it later assigns. So the
//! uplink trusts it for nothing across a lost connection:
//!
//! 1. Every publication is submitted from one task, in order, and recorded
//!    here in the same order ([`Inflight::submitted`]).
//! 2. rumqttc assigns packet ids in the order it takes requests and
//!    reports each as `Outgoing::Publish(pkid)` ([`Inflight::sent`]); the
//!    oldest submission without an id is the one that got it. QoS 0
//!    publications report id 0 and are forgotten there.
//! 3. The PUBACK of that id ([`Inflight::acked`]) names the event that may
//!    now be released from the journal. An MQTT 5 PUBACK that refuses
//!    ([`Inflight::refused`]) releases nothing: the event is kept aside
//!    and published again on the next connection, like one without a
//!    PUBACK.
//! 4. When the connection is lost, rumqttc's copies (its retransmission
//!    queue and the requests not yet taken) are thrown away before the next
//!    connection (see `link`), and every event here without a PUBACK is
//!    published again from the journal ([`Inflight::lost`]). Nothing sent
//!    on the old connection can then report an id on the new one, so the
//!    order of step 2 holds from each connection's start.
//!
//! A broker acknowledges QoS 1 in order (MQTT 3.1.1 and 5, 4.6); should one not,
//! rumqttc holds back a publication whose id is still taken
//! (`Outgoing::AwaitAck`) and sends it once that id is acknowledged, which
//! [`Inflight::waits_for`] follows.

use std::collections::{HashMap, VecDeque};

/// What one publication carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The journalled event of this id.
    Event(i64),
    /// Anything not journalled: status, telemetry, a reply.
    Other,
}

#[derive(Debug, Default)]
pub struct Inflight {
    /// Submitted, no packet id reported yet, oldest first.
    unsent: VecDeque<Carried>,
    /// Sent with QoS 1, waiting for the PUBACK of its id.
    unacked: HashMap<u16, Carried>,
    /// Held back by rumqttc until its id is free.
    held: Option<(u16, Carried)>,
    /// Events whose PUBACK refused them, for the next connection.
    refused: Vec<i64>,
}

impl Inflight {
    /// A publication was handed to the client.
    pub fn submitted(&mut self, carried: Carried) {
        self.unsent.push_back(carried);
    }

    /// rumqttc reported a publication sent with packet id `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        let carried = match self.held {
            Some((id, c)) if id == pkid => {
                self.held = None;
                Some(c)
            }
            _ => self.unsent.pop_front(),
        };
        match carried {
            Some(c) if pkid != 0 => {
                self.unacked.insert(pkid, c);
            }
            Some(_) => {}
            None => tracing::warn!(pkid, "a publication was reported that was never submitted"),
        }
    }

    /// rumqttc holds the next publication back until `pkid` is acknowledged.
    pub fn waits_for(&mut self, pkid: u16) {
        if let Some(c) = self.unsent.pop_front() {
            self.held = Some((pkid, c));
        }
    }

    /// The PUBACK of `pkid`: the event it carried, if it carried one.
    pub fn acked(&mut self, pkid: u16) -> Option<i64> {
        match self.unacked.remove(&pkid) {
            Some(Carried::Event(id)) => Some(id),
            _ => None,
        }
    }

    /// An MQTT 5 PUBACK of `pkid` that refuses it: the event it carried,
    /// if it carried one, which stays in the journal.
    pub fn refused(&mut self, pkid: u16) -> Option<i64> {
        match self.unacked.remove(&pkid) {
            Some(Carried::Event(id)) => {
                self.refused.push(id);
                Some(id)
            }
            _ => None,
        }
    }

    /// Events handed to the client and not acknowledged yet (refused ones
    /// too, so a broker refusing everything fills the window rather than
    /// being sent the whole outbox).
    pub fn events_in_flight(&self) -> usize {
        let is_event = |c: &Carried| matches!(c, Carried::Event(_));
        self.refused.len()
            + self.unsent.iter().filter(|c| is_event(c)).count()
            + self.unacked.values().filter(|c| is_event(c)).count()
            + self.held.iter().filter(|(_, c)| is_event(c)).count()
    }

    /// The connection is gone: forgets everything, and returns the events
    /// that had no PUBACK (to publish again), smallest id first.
    pub fn lost(&mut self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .unsent
            .drain(..)
            .chain(self.unacked.drain().map(|(_, c)| c))
            .chain(self.held.take().map(|(_, c)| c))
            .filter_map(|c| match c {
                Carried::Event(id) => Some(id),
                Carried::Other => None,
            })
            .chain(self.refused.drain(..))
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_released_only_by_the_puback_of_the_packet_that_carried_it() {
        let mut f = Inflight::default();
        f.submitted(Carried::Other); // status, QoS 1
        f.submitted(Carried::Event(7));
        f.submitted(Carried::Other); // health, QoS 0
        f.submitted(Carried::Event(8));
        f.sent(1);
        f.sent(2);
        f.sent(0);
        f.sent(3);
        assert_eq!(f.events_in_flight(), 2);
        assert_eq!(f.acked(1), None);
        assert_eq!(f.acked(3), Some(8));
        assert_eq!(f.acked(3), None, "a second PUBACK releases nothing");
        assert_eq!(f.acked(2), Some(7));
        assert_eq!(f.events_in_flight(), 0);
    }

    #[test]
    fn a_lost_connection_gives_back_every_event_without_a_puback() {
        let mut f = Inflight::default();
        for id in [3, 4, 5] {
            f.submitted(Carried::Event(id));
        }
        f.sent(1);
        f.sent(2);
        assert_eq!(f.acked(1), Some(3));
        assert_eq!(f.lost(), vec![4, 5]);
        assert_eq!(f.events_in_flight(), 0);
        // The next connection starts its own order.
        f.submitted(Carried::Event(4));
        f.sent(9);
        assert_eq!(f.acked(9), Some(4));
    }

    #[test]
    fn an_event_whose_puback_refuses_it_is_not_released_and_goes_again_after_the_connection() {
        let mut f = Inflight::default();
        f.submitted(Carried::Event(5));
        f.submitted(Carried::Event(6));
        f.sent(1);
        f.sent(2);
        assert_eq!(f.refused(1), Some(5));
        assert_eq!(f.acked(1), None, "a refused id releases nothing later");
        assert_eq!(f.acked(2), Some(6));
        assert_eq!(f.events_in_flight(), 1);
        assert_eq!(f.lost(), vec![5]);
        assert_eq!(f.events_in_flight(), 0);
    }

    #[test]
    fn a_publication_held_back_for_a_taken_id_is_matched_when_it_is_sent() {
        let mut f = Inflight::default();
        f.submitted(Carried::Event(1));
        f.submitted(Carried::Event(2));
        f.sent(1);
        f.waits_for(1);
        assert_eq!(f.acked(1), Some(1));
        f.sent(1);
        assert_eq!(f.acked(1), Some(2));
    }
}
