//! Link state machine tests. Time is simulated: `Sim::advance` moves a
//! base `Instant` forward and fires timers; nothing sleeps.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::astm::frame::{encode_frame, encode_records, ACK, ENQ, EOT, ETB, ETX, NAK};
use crate::astm::message::content_hash;

struct Sim {
    link: Link,
    now: Instant,
}

impl Sim {
    fn new() -> Self {
        Self::with(LinkConfig::default())
    }

    fn with(config: LinkConfig) -> Self {
        Sim {
            link: Link::new(config),
            now: Instant::now(),
        }
    }

    fn drain(&mut self) -> (Vec<u8>, Vec<Event>) {
        let mut written = Vec::new();
        let mut events = Vec::new();
        while let Some(out) = self.link.poll_output() {
            match out {
                Output::Write(b) => written.extend(b),
                Output::Event(e) => events.push(e),
            }
        }
        (written, events)
    }

    fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, Vec<Event>) {
        self.link.handle_input(self.now, bytes);
        self.drain()
    }

    fn advance(&mut self, secs: f64) -> (Vec<u8>, Vec<Event>) {
        self.now += Duration::from_secs_f64(secs);
        self.link.handle_timeout(self.now);
        self.drain()
    }

    fn commit(&mut self, ok: bool) -> (Vec<u8>, Vec<Event>) {
        self.link.commit_done(self.now, ok);
        self.drain()
    }

    /// ENQ accepted; the session is open.
    fn open(&mut self) {
        assert_eq!(self.feed(&[ENQ]).0, vec![ACK]);
    }
}

fn recs(lines: &[&str]) -> Vec<Vec<u8>> {
    lines.iter().map(|l| l.as_bytes().to_vec()).collect()
}

fn chemistry() -> Vec<Vec<u8>> {
    crate::astm::message::tests::sample(crate::astm::message::tests::CHEMISTRY)
}

fn completed(events: &[Event]) -> Option<&Vec<Vec<u8>>> {
    events.iter().find_map(|e| match e {
        Event::MessageComplete { records } => Some(records),
        _ => None,
    })
}

fn incomplete(events: &[Event]) -> Option<&IncompleteMessage> {
    events.iter().find_map(|e| match e {
        Event::Incomplete(i) => Some(i),
        _ => None,
    })
}

// ---------------------------------------------------------------- receiving

#[test]
fn an_enq_is_answered_with_ack_and_starts_a_session() {
    let mut sim = Sim::new();
    let (w, e) = sim.feed(&[ENQ]);
    assert_eq!(w, vec![ACK]);
    assert_eq!(e, vec![Event::SessionStarted]);
    assert_eq!(sim.link.phase(), LinkPhase::Receiving);
}

#[test]
fn an_enq_is_answered_with_nak_when_the_caller_cannot_receive() {
    let mut sim = Sim::new();
    sim.link.set_ready(false);
    let (w, e) = sim.feed(&[ENQ]);
    assert_eq!(w, vec![NAK]);
    assert_eq!(e, vec![Event::RefusedBusy]);
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
}

#[test]
fn noise_in_neutral_is_ignored() {
    let mut sim = Sim::new();
    let (w, e) = sim.feed(b"\x06\x15garbage\x04\x02\x03\r\n");
    assert!(w.is_empty() && e.is_empty());
}

#[test]
fn a_bad_checksum_is_answered_with_nak() {
    let mut sim = Sim::new();
    sim.open();
    let mut frame = encode_frame(1, b"H|\\^&\r", true);
    let n = frame.len();
    frame[n - 3] = if frame[n - 3] == b'0' { b'1' } else { b'0' };
    let (w, e) = sim.feed(&frame);
    assert_eq!(w, vec![NAK]);
    assert!(matches!(
        e[0],
        Event::FrameRejected(FrameError::BadChecksum { .. })
    ));
    // The good retransmission is accepted as frame 1.
    let (w, _) = sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    assert_eq!(w, vec![ACK]);
}

#[test]
fn a_wrong_frame_number_is_answered_with_nak() {
    let mut sim = Sim::new();
    sim.open();
    let (w, e) = sim.feed(&encode_frame(2, b"H|\\^&\r", true));
    assert_eq!(w, vec![NAK]);
    assert_eq!(
        e,
        vec![Event::FrameRejected(FrameError::WrongFrameNumber {
            expected: 1,
            found: 2
        })]
    );
}

#[test]
fn a_restricted_character_inside_text_is_answered_with_nak() {
    let mut sim = Sim::new();
    sim.open();
    let (w, e) = sim.feed(&encode_frame(1, b"H|\\^&\x11\r", true));
    assert_eq!(w, vec![NAK]);
    assert_eq!(
        e,
        vec![Event::FrameRejected(FrameError::CharacterError(0x11))]
    );
}

#[test]
fn a_frame_without_etx_or_etb_is_answered_with_nak() {
    let mut sim = Sim::new();
    sim.open();
    let (w, _) = sim.feed(b"\x021H|\\^&\r\n");
    assert_eq!(w, vec![NAK]);
}

#[test]
fn a_frame_cut_short_by_a_new_stx_is_dropped_and_the_new_one_answered() {
    let mut sim = Sim::new();
    sim.open();
    let mut bytes = b"\x021H|\\^".to_vec();
    bytes.extend(encode_frame(1, b"H|\\^&\r", true));
    assert_eq!(sim.feed(&bytes).0, vec![ACK]);
}

#[test]
fn a_repeated_previous_frame_is_acked_and_ignored() {
    let mut sim = Sim::new();
    sim.open();
    let f1 = encode_frame(1, b"H|\\^&\r", true);
    assert_eq!(sim.feed(&f1).0, vec![ACK]);
    let (w, e) = sim.feed(&f1);
    assert_eq!(w, vec![ACK]);
    assert_eq!(e, vec![Event::DuplicateFrame { number: 1 }]);
    sim.feed(&encode_frame(2, b"P|1\r", true));
    let (w, e) = sim.feed(&encode_frame(3, b"L|1|N\r", true));
    assert!(w.is_empty());
    // The duplicate H did not enter the message twice.
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "P|1", "L|1|N"]));
}

#[test]
fn the_last_frame_is_acknowledged_only_after_the_commit() {
    let mut sim = Sim::new();
    sim.open();
    let frames = encode_records(&chemistry(), 240);
    let last = frames.len() - 1;
    for f in &frames[..last] {
        let (w, e) = sim.feed(f);
        assert_eq!(w, vec![ACK]);
        assert!(completed(&e).is_none());
    }
    let (w, e) = sim.feed(&frames[last]);
    assert!(w.is_empty(), "no answer before the commit");
    assert_eq!(completed(&e).unwrap(), &chemistry());
    // However long the commit takes, the receive timer does not fire.
    let (w, e) = sim.advance(120.0);
    assert!(w.is_empty() && e.is_empty());
    assert_eq!(sim.commit(true).0, vec![ACK]);
    let (_, e) = sim.feed(&[EOT]);
    assert_eq!(e, vec![Event::SessionEnded]);
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
}

#[test]
fn a_failed_commit_is_answered_with_nak_and_the_retransmission_completes_the_message_again() {
    let mut sim = Sim::new();
    sim.open();
    let frames = encode_records(&recs(&["H|\\^&", "P|1", "L|1|N"]), 240);
    sim.feed(&frames[0]);
    sim.feed(&frames[1]);
    let (_, e) = sim.feed(&frames[2]);
    assert!(completed(&e).is_some());
    assert_eq!(sim.commit(false).0, vec![NAK]);
    let (w, e) = sim.feed(&frames[2]);
    assert!(w.is_empty());
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "P|1", "L|1|N"]));
    assert_eq!(sim.commit(true).0, vec![ACK]);
}

#[test]
fn a_retransmission_while_the_commit_is_pending_is_absorbed() {
    let mut sim = Sim::new();
    sim.open();
    let frames = encode_records(&recs(&["H|\\^&", "L|1|N"]), 240);
    sim.feed(&frames[0]);
    sim.feed(&frames[1]);
    sim.advance(15.0);
    let (w, e) = sim.feed(&frames[1]);
    assert!(w.is_empty() && e.is_empty());
    assert_eq!(sim.commit(true).0, vec![ACK]);
    // The ACK was lost; the next retransmission is a duplicate.
    assert_eq!(sim.feed(&frames[1]).0, vec![ACK]);
}

#[test]
fn commit_done_without_a_pending_message_does_nothing() {
    let mut sim = Sim::new();
    let (w, e) = sim.commit(true);
    assert!(w.is_empty() && e.is_empty());
    sim.open();
    let (w, e) = sim.commit(false);
    assert!(w.is_empty() && e.is_empty());
}

#[test]
fn the_receive_timer_discards_a_partial_message_after_thirty_seconds() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    sim.feed(&encode_frame(2, b"P|1|par", false));
    let (_, e) = sim.advance(29.9);
    assert!(e.is_empty());
    let (w, e) = sim.advance(0.2);
    assert!(w.is_empty());
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.reason, IncompleteReason::ReceiveTimeout);
    assert_eq!(inc.records, recs(&["H|\\^&"]));
    assert_eq!(inc.partial, b"P|1|par");
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    assert!(completed(&e).is_none());
}

#[test]
fn a_session_ending_before_the_terminator_leaves_an_incomplete_message() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    sim.feed(&encode_frame(2, b"P|1\r", true));
    let (_, e) = sim.feed(&[EOT]);
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.reason, IncompleteReason::EndedWithoutTerminator);
    assert_eq!(inc.records.len(), 2);
    assert_eq!(e.last(), Some(&Event::SessionEnded));
}

#[test]
fn an_enq_inside_a_session_is_not_answered() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    // An ACK here would acknowledge whatever frame the sender is waiting on.
    let (w, e) = sim.feed(&[ENQ]);
    assert!(w.is_empty() && e.is_empty());
    // Inside a frame it is a character error.
    let mut frame = encode_frame(2, b"P|1\r", true);
    frame[3] = ENQ;
    assert_eq!(sim.feed(&frame).0, vec![NAK]);
    // A sender that really restarted finds the line free after the timer.
    let (_, e) = sim.advance(30.0);
    assert_eq!(
        incomplete(&e).unwrap().reason,
        IncompleteReason::ReceiveTimeout
    );
    assert_eq!(sim.feed(&[ENQ]).0, vec![ACK]);
}

#[test]
fn a_new_header_before_the_terminator_makes_the_previous_records_incomplete() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    sim.feed(&encode_frame(2, b"P|1\r", true));
    let (_, e) = sim.feed(&encode_frame(3, b"H|\\^&\r", true));
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.reason, IncompleteReason::NewHeaderBeforeTerminator);
    let (_, e) = sim.feed(&encode_frame(4, b"L|1|N\r", true));
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "L|1|N"]));
}

#[test]
fn a_record_split_over_etb_frames_is_joined() {
    let mut sim = Sim::new();
    sim.open();
    let long = format!("C|1|I|{}|G", "x".repeat(600));
    let records = vec![
        b"H|\\^&".to_vec(),
        long.clone().into_bytes(),
        b"L|1|N".to_vec(),
    ];
    let frames = encode_records(&records, 240);
    assert_eq!(frames.len(), 5);
    let mut events = Vec::new();
    for f in &frames {
        events.extend(sim.feed(f).1);
    }
    assert_eq!(completed(&events).unwrap(), &records);
}

#[test]
fn several_records_in_one_frame_are_split_at_cr() {
    let mut sim = Sim::new();
    sim.open();
    let (_, e) = sim.feed(&encode_frame(1, b"H|\\^&\rP|1\rL|1|N\rH|\\^&\r", true));
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "P|1", "L|1|N"]));
    sim.commit(true);
    // The H after L starts the next message.
    let (_, e) = sim.feed(&encode_frame(2, b"L|1|N\r", true));
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "L|1|N"]));
}

#[test]
fn frame_numbers_wrap_from_seven_to_zero_on_receipt() {
    let mut sim = Sim::new();
    sim.open();
    let mut records = vec![b"H|\\^&".to_vec(), b"P|1".to_vec(), b"O|1|S".to_vec()];
    for i in 1..=8 {
        records.push(format!("R|{i}|^^^T{i}|{i}").into_bytes());
    }
    records.push(b"L|1|N".to_vec());
    let frames = encode_records(&records, 240);
    assert_eq!(frames[7][1], b'0');
    let mut events = Vec::new();
    for f in &frames {
        events.extend(sim.feed(f).1);
    }
    assert_eq!(completed(&events).unwrap(), &records);
}

#[test]
fn a_garbled_checksum_is_accepted_when_the_profile_makes_it_optional() {
    let config = LinkConfig {
        profile: Profile {
            checksum_required: false,
            ..Profile::default()
        },
        ..LinkConfig::default()
    };
    let mut sim = Sim::with(config);
    sim.open();
    assert_eq!(sim.feed(b"\x021H|\\^&\r\x03ZZ\r\n").0, vec![ACK]);
    assert_eq!(sim.feed(b"\x022P|1\r\x03\r\n").0, vec![ACK]);
    let mut strict = Sim::new();
    strict.open();
    assert_eq!(strict.feed(b"\x021H|\\^&\r\x03ZZ\r\n").0, vec![NAK]);
}

#[test]
fn a_message_over_the_size_limit_is_refused_and_reported_too_large() {
    let config = LinkConfig {
        profile: Profile {
            max_message_bytes: 100,
            ..Profile::default()
        },
        ..LinkConfig::default()
    };
    let mut sim = Sim::with(config);
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    let big = vec![b'x'; 120];
    let (w, e) = sim.feed(&encode_frame(2, &big, true));
    assert_eq!(w, vec![NAK]);
    assert_eq!(e, vec![Event::FrameRejected(FrameError::TooLong)]);
    let (_, e) = sim.feed(&[EOT]);
    assert_eq!(incomplete(&e).unwrap().reason, IncompleteReason::TooLarge);
}

#[test]
fn raw_mode_delivers_a_message_at_its_l_record() {
    for term in ["\r", "\n", "\r\n"] {
        let config = LinkConfig {
            profile: Profile {
                framing: Framing::Raw {
                    terminator: LineTerminator::CrLf,
                },
                ..Profile::default()
            },
            ..LinkConfig::default()
        };
        let mut sim = Sim::with(config);
        let text: String = chemistry()
            .iter()
            .map(|r| format!("{}{term}", String::from_utf8_lossy(r)))
            .collect();
        let (w, e) = sim.feed(&text.as_bytes()[..50]);
        assert!(w.is_empty() && e.is_empty());
        let (w, e) = sim.feed(&text.as_bytes()[50..]);
        assert!(w.is_empty());
        assert_eq!(completed(&e).unwrap(), &chemistry());
        // Nothing to acknowledge on a raw line.
        assert!(sim.commit(true).0.is_empty());
    }
}

#[test]
fn raw_mode_discards_a_partial_message_after_the_receive_timer() {
    let config = LinkConfig {
        profile: Profile {
            framing: Framing::Raw {
                terminator: LineTerminator::Cr,
            },
            ..Profile::default()
        },
        ..LinkConfig::default()
    };
    let mut sim = Sim::with(config);
    sim.feed(b"H|\\^&\rP|1\rO|1|S");
    let (_, e) = sim.advance(31.0);
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.records.len(), 2);
    assert_eq!(inc.partial, b"O|1|S");
}

#[test]
fn an_eot_while_the_commit_is_pending_leaves_no_incomplete_copy_of_the_message() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    let (_, e) = sim.feed(&encode_frame(2, b"L|1|N\rH|\\^&\rP|1\r", true));
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "L|1|N"]));
    // The peer gives up waiting for the last ACK while we commit.
    let (_, e) = sim.feed(&[EOT]);
    let inc = incomplete(&e).expect("what followed L is incomplete");
    assert_eq!(inc.records, recs(&["H|\\^&", "P|1"]));
    assert_eq!(
        e.iter()
            .filter(|e| matches!(e, Event::Incomplete(_)))
            .count(),
        1
    );
    // Nothing after L: nothing incomplete at all.
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\rL|1|N\r", true));
    let (_, e) = sim.feed(&[EOT]);
    assert_eq!(incomplete(&e), None);
    assert_eq!(e, vec![Event::SessionEnded]);
}

#[test]
fn an_enq_followed_by_silence_leaves_no_incomplete_message() {
    let mut sim = Sim::new();
    sim.open();
    let (w, e) = sim.advance(30.0);
    assert!(w.is_empty());
    assert_eq!(e, vec![Event::ReceiveTimedOut]);
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
}

#[test]
fn closing_the_line_reports_what_was_received_as_incomplete() {
    let mut sim = Sim::new();
    sim.open();
    sim.feed(&encode_frame(1, b"H|\\^&\r", true));
    sim.feed(&encode_frame(2, b"P|1|par", false));
    sim.link.close(CloseCause::LineClosed);
    let (w, e) = sim.drain();
    assert!(w.is_empty());
    assert_eq!(
        e,
        vec![Event::Incomplete(IncompleteMessage {
            reason: IncompleteReason::LineClosed,
            records: recs(&["H|\\^&"]),
            partial: b"P|1|par".to_vec(),
        })]
    );
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    // An empty session, or one whose message is being committed, leaves
    // nothing behind.
    sim.open();
    sim.link.close(CloseCause::Shutdown);
    assert!(sim.drain().1.is_empty());
    sim.open();
    let (_, e) = sim.feed(&encode_frame(1, b"H|\\^&\rL|1|N\r", true));
    assert!(completed(&e).is_some());
    sim.link.close(CloseCause::Shutdown);
    assert!(sim.drain().1.is_empty());
}

#[test]
fn closing_a_raw_line_reports_a_partial_message_as_incomplete() {
    let mut sim = Sim::with(random_config(true, true));
    sim.feed(b"H|\\^&\nP|1\nO|1|S");
    sim.link.close(CloseCause::LineClosed);
    let (_, e) = sim.drain();
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.reason, IncompleteReason::LineClosed);
    assert_eq!(inc.records, recs(&["H|\\^&", "P|1"]));
    assert_eq!(inc.partial, b"O|1|S");
}

#[test]
fn closing_the_line_hands_back_every_message_not_yet_sent() {
    let mut sim = Sim::new();
    let a = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    let b = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|I"]));
    sim.drain();
    sim.feed(&[ACK]); // a is in flight
    sim.link.close(CloseCause::LineClosed);
    let (w, e) = sim.drain();
    assert!(w.is_empty());
    let failed: Vec<(OutboundId, SendFailure)> = e
        .iter()
        .filter_map(|e| match e {
            Event::SendFailed { id, reason, .. } => Some((*id, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [(a, SendFailure::LineClosed), (b, SendFailure::LineClosed)]
    );
    assert_eq!(sim.link.queued(), 0);
    assert_eq!(sim.link.poll_timeout(), None);
}

#[test]
fn raw_mode_reports_a_message_over_the_size_limit_as_too_large_instead_of_cutting_it() {
    let mut config = random_config(true, true);
    config.profile.max_message_bytes = 64;
    let mut sim = Sim::with(config);
    let big = format!("H|\\^&\nP|1\nR|1|^^^GLU|{}\nL|1|N\n", "9".repeat(100));
    let (_, e) = sim.feed(big.as_bytes());
    assert!(completed(&e).is_none(), "{e:?}");
    let inc = incomplete(&e).unwrap();
    assert_eq!(inc.reason, IncompleteReason::TooLarge);
    assert!(inc.records.iter().map(Vec::len).sum::<usize>() <= 64);
    // The next message is whole again.
    let (_, e) = sim.feed(b"H|\\^&\nL|1|N\n");
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "L|1|N"]));
    // A too-large message cut off by a new header is kept as too large.
    let (_, e) = sim.feed(big.replace("L|1|N\n", "").as_bytes());
    assert!(e.is_empty());
    let (_, e) = sim.feed(b"H|\\^&\nL|1|N\n");
    assert_eq!(incomplete(&e).unwrap().reason, IncompleteReason::TooLarge);
    assert_eq!(completed(&e).unwrap(), &recs(&["H|\\^&", "L|1|N"]));
}

#[test]
fn raw_mode_sends_records_with_the_configured_terminator() {
    let config = LinkConfig {
        profile: Profile {
            framing: Framing::Raw {
                terminator: LineTerminator::CrLf,
            },
            ..Profile::default()
        },
        ..LinkConfig::default()
    };
    let mut sim = Sim::with(config);
    let id = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    let (w, e) = sim.drain();
    assert_eq!(w, b"H|\\^&\r\nL|1|N\r\n");
    assert_eq!(e, vec![Event::Sent { id }]);
}

// ------------------------------------------------------------------ sending

/// Plays a well-behaved receiver for the gateway's frames.
fn send_all(sim: &mut Sim, records: Vec<Vec<u8>>) -> (OutboundId, Vec<Vec<u8>>) {
    let id = sim.link.queue_message(sim.now, records);
    assert_eq!(sim.drain().0, vec![ENQ]);
    let mut frames = Vec::new();
    let (mut w, _) = sim.feed(&[ACK]);
    while w != vec![EOT] {
        frames.push(w);
        w = sim.feed(&[ACK]).0;
    }
    (id, frames)
}

#[test]
fn a_queued_message_is_sent_in_frames_after_enq_is_acknowledged() {
    let mut sim = Sim::new();
    let id = sim.link.queue_message(sim.now, chemistry());
    assert_eq!(sim.drain().0, vec![ENQ]);
    assert_eq!(sim.link.phase(), LinkPhase::Establishing);
    let expected = encode_records(&chemistry(), 240);
    for (i, f) in expected.iter().enumerate() {
        let (w, e) = sim.feed(&[ACK]);
        assert_eq!(&w, f, "frame {i}");
        assert!(e.is_empty());
    }
    let (w, e) = sim.feed(&[ACK]);
    assert_eq!(w, vec![EOT]);
    assert_eq!(e, vec![Event::Sent { id }]);
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
}

#[test]
fn frames_are_split_at_the_profile_limit() {
    let mut sim = Sim::new();
    let long = format!("O|1|S||{}", "^^^T\\".repeat(100));
    let (_, frames) = send_all(&mut sim, vec![b"H|\\^&".to_vec(), long.into_bytes()]);
    // 506 bytes with CR: 240 + 240 + 26, after the H frame.
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[1].len(), 247);
    assert_eq!(frames[1][frames[1].len() - 5], ETB);
    assert_eq!(frames[3][frames[3].len() - 5], ETX);

    let mut small = Sim::with(LinkConfig {
        profile: Profile {
            max_frame_text: 64,
            ..Profile::default()
        },
        ..LinkConfig::default()
    });
    let (_, frames) = send_all(&mut small, vec![vec![b'C'; 200]]);
    assert_eq!(frames.len(), 4);
}

#[test]
fn outbound_frame_numbers_wrap_from_seven_to_zero() {
    let mut sim = Sim::new();
    let records: Vec<Vec<u8>> = (0..9).map(|i| format!("C|{i}").into_bytes()).collect();
    let (_, frames) = send_all(&mut sim, records);
    let numbers: Vec<u8> = frames.iter().map(|f| f[1]).collect();
    assert_eq!(numbers, b"123456701");
}

#[test]
fn a_nak_to_enq_means_busy_and_enq_is_retried_after_ten_seconds() {
    let mut sim = Sim::new();
    let id = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    let (w, e) = sim.feed(&[NAK]);
    assert!(w.is_empty());
    assert!(matches!(e[0], Event::Deferred { id: i, reason: DeferReason::Busy, .. } if i == id));
    assert_eq!(
        sim.link.poll_timeout(),
        Some(sim.now + Duration::from_secs(10))
    );
    assert!(sim.advance(9.9).0.is_empty());
    assert_eq!(sim.advance(0.1).0, vec![ENQ]);
}

#[test]
fn contention_yields_to_the_instrument_and_retries_after_twenty_seconds() {
    let mut sim = Sim::new();
    let id = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    // Both sides sent ENQ at once: we do not answer, we back off.
    let (w, e) = sim.feed(&[ENQ]);
    assert!(w.is_empty());
    assert!(matches!(
        e[0],
        Event::Deferred {
            reason: DeferReason::Contention,
            ..
        }
    ));
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    // The instrument repeats its ENQ after 1 s and gets the line.
    sim.advance(1.0);
    assert_eq!(sim.feed(&[ENQ]).0, vec![ACK]);
    sim.feed(&encode_frame(1, b"H|\\^&\rL|1|N\r", true));
    assert_eq!(sim.commit(true).0, vec![ACK]);
    let (w, _) = sim.feed(&[EOT]);
    assert!(w.is_empty(), "our retry waits for the contention timer");
    assert_eq!(sim.advance(19.0).0, vec![ENQ]);
    let (_, frames) = {
        let mut out = Vec::new();
        let (mut w, mut e) = sim.feed(&[ACK]);
        while w != vec![EOT] {
            out.push(w);
            (w, e) = sim.feed(&[ACK]);
        }
        assert_eq!(e, vec![Event::Sent { id }]);
        (id, out)
    };
    assert_eq!(frames.len(), 2);
}

#[test]
fn the_contention_wait_is_configurable() {
    let mut config = LinkConfig::default();
    config.timers.contention_retry = Duration::from_secs(1);
    let mut sim = Sim::with(config);
    sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    sim.feed(&[ENQ]);
    assert_eq!(sim.advance(1.0).0, vec![ENQ]);
}

#[test]
fn an_unanswered_enq_ends_with_eot_and_is_retried() {
    let mut sim = Sim::new();
    sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    let (w, e) = sim.advance(15.0);
    assert_eq!(w, vec![EOT]);
    assert!(matches!(
        e[0],
        Event::Deferred {
            reason: DeferReason::NoAnswer,
            ..
        }
    ));
    assert_eq!(sim.advance(10.0).0, vec![ENQ]);
}

#[test]
fn a_frame_without_an_answer_in_fifteen_seconds_ends_the_transfer_and_the_message_goes_again_whole()
{
    let mut sim = Sim::new();
    let records = recs(&["H|\\^&", "L|1|N"]);
    let id = sim.link.queue_message(sim.now, records.clone());
    sim.drain();
    let (first, _) = sim.feed(&[ACK]);
    sim.feed(&[ACK]);
    // Frame 2 goes unanswered: LIS01-A2 enters termination, no retransmission.
    assert!(sim.advance(14.9).0.is_empty());
    let (w, e) = sim.advance(0.1);
    assert_eq!(w, vec![EOT]);
    assert_eq!(
        e,
        vec![Event::SendFailed {
            id,
            records: records.clone(),
            reason: SendFailure::NoAnswer
        }]
    );
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    // Queued again, it waits the busy delay and starts over at frame 1.
    sim.link.queue_message(sim.now, records);
    assert!(sim.drain().0.is_empty());
    assert!(sim.advance(9.9).0.is_empty());
    assert_eq!(sim.advance(0.1).0, vec![ENQ]);
    assert_eq!(sim.feed(&[ACK]).0, first);
}

#[test]
fn a_nak_makes_the_sender_retransmit_the_same_frame() {
    let mut sim = Sim::new();
    sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    let (first, _) = sim.feed(&[ACK]);
    assert_eq!(sim.feed(&[NAK]).0, first);
    // Any answer other than ACK or EOT counts as NAK.
    assert_eq!(sim.feed(b"?").0, first);
}

#[test]
fn six_retransmissions_then_eot_and_the_message_is_handed_back() {
    let mut sim = Sim::new();
    let records = recs(&["H|\\^&", "L|1|N"]);
    let id = sim.link.queue_message(sim.now, records.clone());
    sim.drain();
    let (first, _) = sim.feed(&[ACK]);
    for i in 0..6 {
        let (w, e) = sim.feed(&[NAK]);
        assert_eq!(w, first, "retransmission {}", i + 1);
        assert!(e.is_empty());
        // Answers keep coming, so the answer timer never fires.
        assert!(sim.advance(14.0).0.is_empty());
    }
    let (w, e) = sim.feed(&[NAK]);
    assert_eq!(w, vec![EOT]);
    assert_eq!(
        e,
        vec![Event::SendFailed {
            id,
            records,
            reason: SendFailure::Retransmissions
        }]
    );
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    assert_eq!(sim.link.queued(), 0);
}

#[test]
fn the_retransmission_limit_is_configurable() {
    let mut sim = Sim::with(LinkConfig {
        max_retransmissions: 1,
        ..LinkConfig::default()
    });
    sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    let (first, _) = sim.feed(&[ACK]);
    assert_eq!(sim.feed(&[NAK]).0, first);
    assert_eq!(sim.feed(&[NAK]).0, vec![EOT]);
}

#[test]
fn a_receiver_interrupt_ends_the_session_and_the_message_is_sent_again_later() {
    let mut sim = Sim::new();
    let id = sim.link.queue_message(sim.now, chemistry());
    sim.drain();
    sim.feed(&[ACK]); // frame 1
    let (w, e) = sim.feed(&[EOT]); // interrupt instead of ACK
    assert_eq!(w, vec![EOT]);
    assert!(
        matches!(e[0], Event::Deferred { id: i, reason: DeferReason::Interrupted, .. } if i == id)
    );
    assert_eq!(sim.link.phase(), LinkPhase::Neutral);
    // The peer may now send; we receive.
    assert_eq!(sim.feed(&[ENQ]).0, vec![ACK]);
    sim.feed(&[EOT]);
    assert!(sim.advance(14.0).0.is_empty());
    assert_eq!(sim.advance(1.0).0, vec![ENQ]);
    // The message starts again at frame 1 with H.
    let (w, _) = sim.feed(&[ACK]);
    assert_eq!(w, encode_records(&chemistry(), 240)[0]);
}

#[test]
fn an_interrupt_answering_the_last_frame_counts_as_sent() {
    let mut sim = Sim::new();
    let id = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    sim.drain();
    sim.feed(&[ACK]);
    sim.feed(&[ACK]);
    let (w, e) = sim.feed(&[EOT]);
    assert_eq!(w, vec![EOT]);
    assert_eq!(e, vec![Event::Sent { id }]);
}

#[test]
fn an_enq_from_the_instrument_goes_first_when_we_have_something_queued_later() {
    let mut sim = Sim::new();
    sim.open();
    let id = sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
    // Receiving: our message waits.
    assert!(sim.drain().0.is_empty());
    let (w, _) = sim.feed(&[EOT]);
    assert_eq!(w, vec![ENQ]);
    let (_, frames) = {
        let mut frames = Vec::new();
        let (mut w, mut e) = sim.feed(&[ACK]);
        while w != vec![EOT] {
            frames.push(w);
            (w, e) = sim.feed(&[ACK]);
        }
        assert_eq!(e, vec![Event::Sent { id }]);
        (id, frames)
    };
    assert_eq!(frames.len(), 2);
}

// ------------------------------------------------------------- properties

fn random_config(raw: bool, checksum_required: bool) -> LinkConfig {
    LinkConfig {
        profile: Profile {
            framing: if raw {
                Framing::Raw {
                    terminator: LineTerminator::Lf,
                }
            } else {
                Framing::E1381
            },
            checksum_required,
            max_message_bytes: 4096,
            ..Profile::default()
        },
        ..LinkConfig::default()
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_link(
        chunks in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..64), 0u16..40_000, any::<u8>()),
            0..40,
        ),
        raw in any::<bool>(),
        checksum_required in any::<bool>(),
    ) {
        let mut sim = Sim::with(random_config(raw, checksum_required));
        for (bytes, millis, action) in chunks {
            match action % 8 {
                0 => sim.link.commit_done(sim.now, true),
                1 => sim.link.commit_done(sim.now, false),
                2 => {
                    sim.link.queue_message(sim.now, recs(&["H|\\^&", "L|1|N"]));
                }
                3 => sim.link.set_ready(action & 0x80 == 0),
                _ => {}
            }
            sim.link.handle_input(sim.now, &bytes);
            sim.now += Duration::from_millis(u64::from(millis));
            sim.link.handle_timeout(sim.now);
            sim.drain();
        }
    }

    #[test]
    fn arbitrary_frames_with_valid_envelopes_never_panic_the_link(
        frames in proptest::collection::vec(
            (0u8..8, proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()),
            0..20,
        ),
    ) {
        let mut sim = Sim::new();
        sim.open();
        for (n, text, last) in frames {
            let (_, e) = sim.feed(&encode_frame(n, &text, last));
            if completed(&e).is_some() {
                sim.commit(n % 2 == 0);
            }
        }
    }

    #[test]
    fn a_sender_and_a_receiver_over_a_lossy_line_deliver_every_message_exactly_once(
        seed in any::<u64>(),
        count in 1usize..6,
        noise_percent in 0u32..15,
        loss_percent in 0u32..4,
    ) {
        lossy_line_run(seed, count, noise_percent, loss_percent);
    }
}

/// A gateway sending to a gateway-like receiver through a line that
/// corrupts (`noise_percent`), and drops or cuts short (`loss_percent`) what
/// the sender writes and drops the receiver's answers (`loss_percent`); the
/// receiving "journal" stores by content hash, as the real journal does,
/// and fails 10 % of its commits.
///
/// Corruption is answered NAK and repaired frame by frame; a lost frame or
/// a lost answer runs out the answer timer, which LIS01-A2 answers by
/// aborting the whole message (EOT) and sending it again later, so losses
/// are kept to a few percent: a line losing a fifth of its bytes would
/// never get an eight-frame message through, whatever the implementation.
///
/// Two limits of E1381 itself shape the channel model. Answers (ACK, NAK,
/// EOT) are dropped, never altered: nothing protects them, so a NAK turned
/// into an ACK loses a frame whatever the implementation. Corruption
/// substitutes printable characters: noise that creates an STX in the
/// middle of a frame makes the receiver resynchronise on the frame's tail,
/// which then passes the 8-bit checksum by chance about once in 16 000
/// tries; a serial line catches most of those with parity.
fn lossy_line_run(seed: u64, count: usize, noise_percent: u32, loss_percent: u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let now0 = Instant::now();
    let mut now = now0;
    let mut tx = Link::new(LinkConfig::default());
    let mut rx = Link::new(LinkConfig::default());
    let messages: Vec<Vec<Vec<u8>>> = (0..count)
        .map(|i| {
            let mut m = chemistry();
            m[2] = format!("O|1|SID{seed}-{i}||^^^GLU|R").into_bytes();
            // Some long records so ETB splitting is on the line too.
            if i % 2 == 1 {
                m.insert(3, format!("C|1|I|{}|G", "z".repeat(300 + i)).into_bytes());
                m.insert(4, b"R|1|^^^GLU|5.4".to_vec());
                m.truncate(5);
                m.push(b"L|1|N".to_vec());
            }
            m
        })
        .collect();
    let hashes: HashSet<String> = messages.iter().map(|m| content_hash(m)).collect();
    let mut ids = HashMap::new();
    for m in &messages {
        ids.insert(tx.queue_message(now, m.clone()), m.clone());
    }
    let mut journal: HashMap<String, usize> = HashMap::new();
    let mut sent = HashSet::new();
    let mut steps = 0;
    while sent.len() < count {
        steps += 1;
        assert!(steps < 200_000, "no progress");
        assert!(
            now - now0 < Duration::from_secs(24 * 3600),
            "took a simulated day"
        );
        let mut moved = false;
        while let Some(out) = tx.poll_output() {
            moved = true;
            match out {
                Output::Write(mut bytes) => {
                    let roll = rng.random_range(0..100);
                    if roll < loss_percent {
                        continue;
                    }
                    if roll < loss_percent + noise_percent && bytes.len() > 1 {
                        let i = rng.random_range(0..bytes.len());
                        let mut noise = rng.random_range(0x20..0x7Fu8);
                        if noise == bytes[i] {
                            noise ^= 0x01;
                        }
                        bytes[i] = noise;
                    } else if roll < 2 * loss_percent + noise_percent && bytes.len() > 1 {
                        bytes.truncate(rng.random_range(1..bytes.len()));
                    }
                    rx.handle_input(now, &bytes);
                }
                Output::Event(Event::Sent { id }) => {
                    sent.insert(id);
                }
                Output::Event(Event::SendFailed { records, .. }) => {
                    let id = tx.queue_message(now, records.clone());
                    ids.insert(id, records);
                }
                Output::Event(_) => {}
            }
        }
        while let Some(out) = rx.poll_output() {
            moved = true;
            match out {
                Output::Write(bytes) => {
                    if rng.random_range(0..100) >= loss_percent {
                        tx.handle_input(now, &bytes);
                    }
                }
                Output::Event(Event::MessageComplete { records }) => {
                    let hash = content_hash(&records);
                    assert!(hashes.contains(&hash), "delivered content was never sent");
                    let ok = rng.random_range(0..100) >= 10;
                    if ok {
                        *journal.entry(hash).or_default() += 1;
                    }
                    rx.commit_done(now, ok);
                }
                Output::Event(_) => {}
            }
        }
        if !moved {
            let next = [tx.poll_timeout(), rx.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) => now = now.max(at),
                None => panic!("both sides idle with {} of {count} sent", sent.len()),
            }
            tx.handle_timeout(now);
            rx.handle_timeout(now);
        }
    }
    // Every message reported sent is in the journal; the journal keeps
    // each content once however often the line made it arrive.
    let stored: HashSet<&String> = journal.keys().collect();
    assert_eq!(stored.len(), count);
    for hash in &hashes {
        assert!(journal.contains_key(hash), "message lost");
    }
}

/// Seeds that once broke delivery: an ENQ made of noise inside a session
/// was answered, and the sender took that ACK for its last frame.
#[test]
fn a_noisy_line_that_once_lost_a_message_delivers_it() {
    lossy_line_run(3518795371806354718, 2, 19, 3);
    lossy_line_run(3951507030185897, 3, 23, 3);
}

#[test]
fn a_clean_line_delivers_each_message_exactly_once_without_deduplication() {
    let mut tx = Sim::new();
    let mut rx = Sim::new();
    let mut delivered = Vec::new();
    for i in 0..3 {
        let mut m = chemistry();
        m[2] = format!("O|1|S{i}").into_bytes();
        tx.link.queue_message(tx.now, m);
    }
    let mut sent = 0;
    for _ in 0..1000 {
        let (w, e) = tx.drain();
        sent += e.iter().filter(|e| matches!(e, Event::Sent { .. })).count();
        rx.link.handle_input(rx.now, &w);
        let (w2, e2) = rx.drain();
        for e in e2 {
            if let Event::MessageComplete { records } = e {
                delivered.push(records);
                rx.link.commit_done(rx.now, true);
            }
        }
        let (w3, _) = rx.drain();
        tx.link.handle_input(tx.now, &[w2, w3].concat());
        if sent == 3 {
            break;
        }
    }
    assert_eq!(sent, 3);
    assert_eq!(delivered.len(), 3);
}
