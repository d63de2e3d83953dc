//! The E1381 / LIS01-A2 link layer as a sans-I/O state machine.
//!
//! # Phases
//!
//! One serial line (or TCP stream) carries both directions, but only one
//! side transmits at a time. The line is always in one of these phases:
//!
//! - **Neutral**: nobody owns the line. An `ENQ` from the analyzer is
//!   answered `ACK` (we become receiver) or `NAK` when the caller said it
//!   cannot take messages now ([`Link::set_ready`]). When the caller queued an
//!   outbound message we send `ENQ` ourselves.
//! - **Establishment** (we sent `ENQ`): `ACK` moves us to transfer, `NAK`
//!   means "busy" and we try again after `busy_retry` (LIS01-A2: at least
//!   10 s). An `ENQ` in answer is *contention*: the instrument has priority,
//!   so the gateway, as the host, backs off for `contention_retry` (at least
//!   20 s for the host, so the instrument's own re-`ENQ` after 1 s wins) and
//!   waits for that `ENQ` in neutral. No answer within `answer` (15 s):
//!   `EOT` and retry later.
//! - **Transfer**: frames `<STX> FN text <ETB|ETX> C1 C2 <CR><LF>`, numbered
//!   1..7, 0, 1 … from 1 in every session, each answered before the next.
//! - **Termination**: the sender's `EOT`; the line returns to neutral. This
//!   phase has no duration here, so [`LinkPhase`] does not list it.
//!
//! # Timers (all from [`Timers`], time is an input)
//!
//! The caller passes `now` to every call and asks [`Link::poll_timeout`] when
//! to call [`Link::handle_timeout`]; nothing here reads a clock, so tests run
//! simulated hours in microseconds.
//!
//! - receiver: `receive` (30 s) without a frame or `EOT` ends the session and
//!   reports what arrived as an [`IncompleteMessage`] (never as a result).
//! - sender: `answer` (15 s) to wait for the answer to `ENQ` or to a frame.
//!   E1381 / LIS01-A2 treat a missing answer during transfer differently
//!   from a `NAK`: the sender does not retransmit but aborts the transfer
//!   by entering termination (`EOT`), keeping the message to repeat it
//!   whole later. After a `NAK` the frame is retransmitted, up to
//!   `max_retransmissions` (6) times; then the same: `EOT`. In both cases
//!   the message is handed back ([`Event::SendFailed`] with its
//!   [`SendFailure`]) and the next `ENQ` waits `busy_retry`; the caller
//!   decides whether and when to queue it again.
//!
//! # Acknowledge after commit
//!
//! In ASTM a message is the records `H` … `L`. They are handed to the caller
//! once per complete message ([`Event::MessageComplete`]), not per record,
//! because the journal stores messages and the FHIR transform needs the
//! whole tree. Every frame before the one that carries the `L` record is
//! acknowledged at once (the analyzer cannot go on otherwise), but the frame
//! carrying `L` is answered only when the caller calls
//! [`Link::commit_done`]: `true` → `ACK`, `false` → `NAK`, so the analyzer
//! keeps its copy and retransmits that frame, which completes the message
//! again. While a commit is pending, the receive timer is stopped (our own
//! slowness must not discard the message) and retransmissions of that frame
//! are absorbed without an answer.
//!
//! Frames acknowledged before the `L` belong to no result until the `L`
//! arrives: a session that ends (by `EOT`, the receive timer, or the line
//! going away: [`Link::close`]), or a new `H` that starts before the `L`,
//! turns them into an [`IncompleteMessage`] kept for inspection. A message
//! whose commit is under way when the session ends is the caller's (its
//! commit goes on); only records after its `L` are incomplete. A session
//! in which nothing arrived leaves nothing to inspect.
//!
//! A repeated previous frame (our `ACK` was lost) is acknowledged again and
//! ignored. A message that was committed but whose final `ACK` was lost and
//! whose sender then gave up will come again in a later session; the journal
//! recognises it by [`super::message::content_hash`].
//!
//! # Raw mode
//!
//! Some analyzers on TCP skip E1381 framing entirely: records separated by a
//! line terminator, a message ends at its `L` record, nothing is
//! acknowledged on the wire. [`Framing::Raw`] covers them with the same
//! events, so the source above does not care. A raw message that outgrows
//! [`Profile::max_message_bytes`] is reported incomplete (`TooLarge`) at its
//! `L`, never cut short and passed on as a result.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::frame::{self, FrameError, ACK, CR, ENQ, EOT, ETB, ETX, LF, NAK, STX};

mod events;
mod receive;
mod settings;

pub use events::*;
pub use settings::*;

/// Records without their CR, in order.
type Records = Vec<Vec<u8>>;

#[derive(Debug)]
struct Outbound {
    id: OutboundId,
    records: Vec<Vec<u8>>,
}

/// Where the byte collector is inside a frame.
#[derive(Debug)]
enum Collect {
    Idle,
    /// After STX: FN, text, up to ETB/ETX.
    Body(Vec<u8>),
    /// After ETB/ETX: checksum, CR, LF.
    Trailer {
        body: Vec<u8>,
        trailer: Vec<u8>,
    },
}

/// What to restore if the commit of the message fails.
#[derive(Debug)]
struct PendingCommit {
    number: u8,
    keep: usize,
    record_buf: Vec<u8>,
    /// Records after L in the same frame: start of the next message.
    carry: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Rx {
    expected: u8,
    last_accepted: Option<u8>,
    collect: Collect,
    record_buf: Vec<u8>,
    records: Vec<Vec<u8>>,
    size: usize,
    too_large: bool,
    /// The frame being collected outgrew the message limit.
    frame_too_long: bool,
    deadline: Instant,
    pending: Option<PendingCommit>,
}

impl Rx {
    fn new(now: Instant, timers: &Timers) -> Self {
        Rx {
            expected: 1,
            last_accepted: None,
            collect: Collect::Idle,
            record_buf: Vec::new(),
            records: Vec::new(),
            size: 0,
            too_large: false,
            frame_too_long: false,
            deadline: now + timers.receive,
            pending: None,
        }
    }

    fn take_incomplete(&mut self, reason: IncompleteReason) -> Option<IncompleteMessage> {
        if let Some(pending) = self.pending.take() {
            // The message up to L is the caller's commit, whatever its
            // outcome; only what followed its L is left here.
            self.records = pending.carry;
            self.record_buf.clear();
        }
        if self.records.is_empty() && self.record_buf.is_empty() && !self.too_large {
            return None;
        }
        let reason = if self.too_large {
            IncompleteReason::TooLarge
        } else {
            reason
        };
        self.size = 0;
        self.too_large = false;
        Some(IncompleteMessage {
            reason,
            records: std::mem::take(&mut self.records),
            partial: std::mem::take(&mut self.record_buf),
        })
    }
}

#[derive(Debug)]
struct Tx {
    out: Outbound,
    frames: Vec<Vec<u8>>,
    index: usize,
    retransmissions: u8,
    deadline: Instant,
}

#[derive(Debug)]
enum State {
    Neutral,
    Establishing { deadline: Instant },
    Receiving(Rx),
    Sending(Tx),
}

#[derive(Debug, Default)]
struct RawRx {
    /// The record being received, as far as the size limit lets it grow.
    line: Vec<u8>,
    /// First byte of the record being received, even when `line` is full:
    /// it decides whether the record is an H or an L.
    first: Option<u8>,
    records: Vec<Vec<u8>>,
    size: usize,
    /// Bytes were dropped: the message can only end incomplete.
    too_large: bool,
    deadline: Option<Instant>,
}

impl RawRx {
    fn take_incomplete(&mut self, reason: IncompleteReason) -> Option<IncompleteMessage> {
        let records = std::mem::take(&mut self.records);
        let partial = std::mem::take(&mut self.line);
        let too_large = std::mem::take(&mut self.too_large);
        self.first = None;
        self.size = 0;
        self.deadline = None;
        if records.is_empty() && partial.is_empty() && !too_large {
            return None;
        }
        Some(IncompleteMessage {
            reason: if too_large {
                IncompleteReason::TooLarge
            } else {
                reason
            },
            records,
            partial,
        })
    }
}

/// One ASTM line, both directions. See the module docs for the rules.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    state: State,
    raw: RawRx,
    ready: bool,
    queue: VecDeque<Outbound>,
    next_enq_at: Option<Instant>,
    next_id: u64,
    out: VecDeque<Output>,
}

impl Link {
    pub fn new(config: LinkConfig) -> Self {
        Link {
            config,
            state: State::Neutral,
            raw: RawRx::default(),
            ready: true,
            queue: VecDeque::new(),
            next_enq_at: None,
            next_id: 1,
            out: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    pub fn phase(&self) -> LinkPhase {
        match self.state {
            State::Neutral => LinkPhase::Neutral,
            State::Establishing { .. } => LinkPhase::Establishing,
            State::Receiving(_) => LinkPhase::Receiving,
            State::Sending(_) => LinkPhase::Sending,
        }
    }

    /// Whether we accept new sessions; `false` answers ENQ with NAK (for
    /// example when the journal is full).
    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }

    /// Number of outbound messages not yet sent (including the one in
    /// flight).
    pub fn queued(&self) -> usize {
        self.queue.len() + usize::from(matches!(self.state, State::Sending(_)))
    }

    /// Next output to perform, in the order produced. Drain it after every
    /// call.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Link::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match &self.state {
            State::Neutral => None,
            State::Establishing { deadline } => Some(*deadline),
            State::Receiving(rx) if rx.pending.is_none() => Some(rx.deadline),
            State::Receiving(_) => None,
            State::Sending(tx) => Some(tx.deadline),
        };
        let send = match (&self.state, self.queue.is_empty(), self.next_enq_at) {
            (State::Neutral, false, Some(at)) => Some(at),
            _ => None,
        };
        [state, send, self.raw.deadline].into_iter().flatten().min()
    }

    /// Queues records (without CR) as one outbound message. It is sent when
    /// the line is free; the id comes back in [`Event::Sent`],
    /// [`Event::Deferred`] or [`Event::SendFailed`].
    pub fn queue_message(&mut self, now: Instant, records: Vec<Vec<u8>>) -> OutboundId {
        let id = OutboundId(self.next_id);
        self.next_id += 1;
        self.queue.push_back(Outbound { id, records });
        self.maybe_start_send(now);
        id
    }

    /// Bytes read from the line.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        match self.config.profile.framing {
            Framing::E1381 => {
                for &b in bytes {
                    self.on_byte(now, b);
                }
            }
            Framing::Raw { .. } => {
                for &b in bytes {
                    self.on_raw_byte(now, b);
                }
            }
        }
        self.maybe_start_send(now);
    }

    /// Fires whatever timer is due at `now`; harmless when none is.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Establishing { deadline } if now >= *deadline => {
                self.write(vec![EOT]);
                self.state = State::Neutral;
                self.defer_front(now, DeferReason::NoAnswer, self.config.timers.busy_retry);
            }
            State::Receiving(rx) if rx.pending.is_none() && now >= rx.deadline => {
                let incomplete = rx.take_incomplete(IncompleteReason::ReceiveTimeout);
                self.state = State::Neutral;
                self.event(Event::ReceiveTimedOut);
                if let Some(incomplete) = incomplete {
                    self.event(Event::Incomplete(incomplete));
                }
            }
            State::Sending(tx) if now >= tx.deadline => {
                // LIS01-A2: no answer in time aborts the transfer; the
                // message is repeated whole later, never frame by frame.
                self.abort_send(now, SendFailure::NoAnswer);
            }
            _ => {}
        }
        if self.raw.deadline.is_some_and(|deadline| now >= deadline) {
            if let Some(incomplete) = self.raw.take_incomplete(IncompleteReason::ReceiveTimeout) {
                self.event(Event::Incomplete(incomplete));
            }
        }
        self.maybe_start_send(now);
    }

    /// The line is gone (or the gateway stops): whatever was received but
    /// not completed is reported [`Event::Incomplete`], and every outbound
    /// message not yet sent, the one in flight included, is handed back as
    /// [`Event::SendFailed`] with [`SendFailure::LineClosed`]. A commit
    /// still pending stays the caller's. Nothing is written: the line is
    /// gone. The link is neutral and empty afterwards.
    pub fn close(&mut self, cause: CloseCause) {
        let reason = match cause {
            CloseCause::LineClosed => IncompleteReason::LineClosed,
            CloseCause::Shutdown => IncompleteReason::Shutdown,
        };
        match std::mem::replace(&mut self.state, State::Neutral) {
            State::Receiving(mut rx) => {
                if let Some(incomplete) = rx.take_incomplete(reason) {
                    self.event(Event::Incomplete(incomplete));
                }
            }
            State::Sending(tx) => self.queue.push_front(tx.out),
            State::Neutral | State::Establishing { .. } => {}
        }
        if let Some(incomplete) = self.raw.take_incomplete(reason) {
            self.event(Event::Incomplete(incomplete));
        }
        self.next_enq_at = None;
        while let Some(out) = self.queue.pop_front() {
            self.event(Event::SendFailed {
                id: out.id,
                records: out.records,
                reason: SendFailure::LineClosed,
            });
        }
    }

    /// The caller's answer to [`Event::MessageComplete`]: `true` once the
    /// message is durably stored (→ ACK), `false` if it could not be (→ NAK;
    /// the peer keeps it and retransmits). Ignored when nothing waits, for
    /// example because the peer ended the session meanwhile.
    pub fn commit_done(&mut self, now: Instant, ok: bool) {
        let receive = self.config.timers.receive;
        let State::Receiving(rx) = &mut self.state else {
            return;
        };
        let Some(pending) = rx.pending.take() else {
            return;
        };
        rx.deadline = now + receive;
        if ok {
            rx.last_accepted = Some(pending.number);
            rx.expected = frame::next_frame_number(pending.number);
            rx.size = pending.carry.iter().map(Vec::len).sum();
            rx.records = pending.carry;
            rx.record_buf.clear();
            self.write(vec![ACK]);
        } else {
            rx.records.truncate(pending.keep);
            rx.record_buf = pending.record_buf;
            rx.size = rx.records.iter().map(Vec::len).sum::<usize>() + rx.record_buf.len();
            self.write(vec![NAK]);
        }
        self.maybe_start_send(now);
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Output::Write(bytes));
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn defer_front(&mut self, now: Instant, reason: DeferReason, wait: Duration) {
        let retry_at = now + wait;
        self.next_enq_at = Some(retry_at);
        if let Some(front) = self.queue.front() {
            let id = front.id;
            self.event(Event::Deferred {
                id,
                reason,
                retry_at,
            });
        }
    }

    fn maybe_start_send(&mut self, now: Instant) {
        if !matches!(self.state, State::Neutral) || self.queue.is_empty() {
            return;
        }
        if self.next_enq_at.is_some_and(|at| now < at) {
            return;
        }
        self.next_enq_at = None;
        match self.config.profile.framing {
            Framing::E1381 => {
                self.write(vec![ENQ]);
                self.state = State::Establishing {
                    deadline: now + self.config.timers.answer,
                };
            }
            Framing::Raw { terminator } => {
                // Nothing on the wire confirms receipt: written means sent.
                while let Some(out) = self.queue.pop_front() {
                    let mut bytes = Vec::new();
                    for record in &out.records {
                        bytes.extend_from_slice(record);
                        bytes.extend_from_slice(terminator.bytes());
                    }
                    self.write(bytes);
                    self.event(Event::Sent { id: out.id });
                }
            }
        }
    }

    fn on_byte(&mut self, now: Instant, b: u8) {
        match &mut self.state {
            State::Neutral => {
                if b == ENQ {
                    self.accept_enq(now);
                }
                // LIS01-A2: in neutral everything but ENQ is ignored.
            }
            State::Establishing { .. } => match b {
                ACK => self.start_transfer(now),
                NAK => {
                    self.state = State::Neutral;
                    self.defer_front(now, DeferReason::Busy, self.config.timers.busy_retry);
                }
                ENQ => {
                    // Contention: the instrument wins. We do not answer this
                    // ENQ; the instrument repeats it after >= 1 s and finds
                    // us neutral, while our own ENQ waits longer.
                    self.state = State::Neutral;
                    self.defer_front(
                        now,
                        DeferReason::Contention,
                        self.config.timers.contention_retry,
                    );
                }
                _ => {}
            },
            State::Sending(_) => match b {
                ACK => self.frame_accepted(now, false),
                EOT => self.frame_accepted(now, true),
                // LIS01-A2: any answer other than ACK or EOT counts as NAK.
                _ => self.retransmit_or_fail(now),
            },
            State::Receiving(_) => self.on_rx_byte(now, b),
        }
    }

    fn accept_enq(&mut self, now: Instant) {
        if self.ready {
            self.state = State::Receiving(Rx::new(now, &self.config.timers));
            self.write(vec![ACK]);
            self.event(Event::SessionStarted);
        } else {
            self.state = State::Neutral;
            self.write(vec![NAK]);
            self.event(Event::RefusedBusy);
        }
    }

    fn start_transfer(&mut self, now: Instant) {
        let Some(out) = self.queue.pop_front() else {
            // Queue emptied meanwhile: release the line properly.
            self.write(vec![EOT]);
            self.state = State::Neutral;
            return;
        };
        let frames = frame::encode_records(&out.records, self.config.profile.max_frame_text);
        if frames.is_empty() {
            self.write(vec![EOT]);
            self.state = State::Neutral;
            self.event(Event::Sent { id: out.id });
            return;
        }
        self.write(frames[0].clone());
        self.state = State::Sending(Tx {
            out,
            frames,
            index: 0,
            retransmissions: 0,
            deadline: now + self.config.timers.answer,
        });
    }

    fn frame_accepted(&mut self, now: Instant, interrupt: bool) {
        let answer = self.config.timers.answer;
        let State::Sending(tx) = &mut self.state else {
            return;
        };
        tx.index += 1;
        tx.retransmissions = 0;
        tx.deadline = now + answer;
        let done = tx.index >= tx.frames.len();
        if !done && !interrupt {
            let next = tx.frames[tx.index].clone();
            self.write(next);
            return;
        }
        let State::Sending(tx) = std::mem::replace(&mut self.state, State::Neutral) else {
            return;
        };
        self.write(vec![EOT]);
        if done {
            self.event(Event::Sent { id: tx.out.id });
        } else {
            // The receiver will discard the partial message, so it goes
            // again from H in a later session.
            self.queue.push_front(tx.out);
            self.defer_front(
                now,
                DeferReason::Interrupted,
                self.config.timers.interrupt_retry,
            );
        }
    }

    fn retransmit_or_fail(&mut self, now: Instant) {
        let answer = self.config.timers.answer;
        let max = self.config.max_retransmissions;
        let State::Sending(tx) = &mut self.state else {
            return;
        };
        if tx.retransmissions < max {
            tx.retransmissions += 1;
            tx.deadline = now + answer;
            let again = tx.frames[tx.index].clone();
            self.write(again);
            return;
        }
        self.abort_send(now, SendFailure::Retransmissions);
    }

    /// Termination phase after a failed transfer: EOT, the message back to
    /// the caller.
    fn abort_send(&mut self, now: Instant, reason: SendFailure) {
        let State::Sending(tx) = std::mem::replace(&mut self.state, State::Neutral) else {
            return;
        };
        self.write(vec![EOT]);
        // Others in the queue must not hammer a line that just failed.
        self.next_enq_at = Some(now + self.config.timers.busy_retry);
        self.event(Event::SendFailed {
            id: tx.out.id,
            records: tx.out.records,
            reason,
        });
    }
}

#[cfg(test)]
mod tests;
