//! What the link tells its caller: outputs to act on (bytes to write,
//! timers to arm) and events (a message received, a send finished or
//! failed, the line closed).

use super::frame::FrameError;
use std::time::Instant;

/// Handle for a queued outbound message, reported back in events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboundId(pub u64);

/// What the caller must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write to the line, as they are.
    Write(Vec<u8>),
    /// Something happened that the caller must know.
    Event(Event),
}

/// Why an outbound message is waiting although it was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferReason {
    /// The peer answered our ENQ with NAK.
    Busy,
    /// The peer sent ENQ at the same time; it goes first.
    Contention,
    /// Our ENQ got no answer in time.
    NoAnswer,
    /// The peer answered a frame with EOT (receiver interrupt) before the
    /// last frame; the whole message is sent again in a new session.
    Interrupted,
}

/// Why received content did not become a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompleteReason {
    /// No frame or EOT within the receive timer.
    ReceiveTimeout,
    /// EOT arrived before the L record.
    EndedWithoutTerminator,
    /// An H record started a new message before the L of the previous one.
    NewHeaderBeforeTerminator,
    /// The message exceeded [`Profile::max_message_bytes`].
    TooLarge,
    /// The line went away (end of file, I/O error) mid-message.
    LineClosed,
    /// The gateway shut down mid-message.
    Shutdown,
}

/// Why an outbound message was handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// A frame was refused more than `max_retransmissions` times.
    Retransmissions,
    /// No answer to a frame within the answer timer.
    NoAnswer,
    /// The line closed (or the gateway stopped) before it was sent.
    LineClosed,
}

/// Why [`Link::close`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// End of file or an I/O error on the line.
    LineClosed,
    /// The gateway is stopping.
    Shutdown,
}

/// Records that arrived but never formed an H..L message. Kept for
/// inspection only; it must never become a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteMessage {
    pub reason: IncompleteReason,
    /// Complete records (without CR) received so far.
    pub records: Vec<Vec<u8>>,
    /// Text of a record whose ETB frames arrived but not its ETX frame.
    pub partial: Vec<u8>,
}

/// Things the caller is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We accepted the peer's ENQ.
    SessionStarted,
    /// We answered the peer's ENQ with NAK because we are not ready.
    RefusedBusy,
    /// A received frame was answered with NAK.
    FrameRejected(FrameError),
    /// A repeat of the previous frame was acknowledged and ignored.
    DuplicateFrame { number: u8 },
    /// A whole H..L message arrived (records without their CR). Its last
    /// frame is answered only by [`Link::commit_done`].
    MessageComplete { records: Vec<Vec<u8>> },
    /// Content that will never be a result.
    Incomplete(IncompleteMessage),
    /// The peer ended its session with EOT.
    SessionEnded,
    /// The receive timer ended the peer's session (no frame and no EOT in
    /// time); anything received is reported as [`Event::Incomplete`].
    ReceiveTimedOut,
    /// An outbound message waits; we try again at `retry_at`.
    Deferred {
        id: OutboundId,
        reason: DeferReason,
        retry_at: Instant,
    },
    /// The peer acknowledged the last frame (or interrupted after it).
    Sent { id: OutboundId },
    /// The transfer was aborted (see [`SendFailure`]); the message is
    /// handed back unchanged.
    SendFailed {
        id: OutboundId,
        records: Vec<Vec<u8>>,
        reason: SendFailure,
    },
}

/// Coarse state, for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPhase {
    Neutral,
    /// We sent ENQ and wait for the answer.
    Establishing,
    /// The peer owns the line and sends frames.
    Receiving,
    /// We own the line and send frames.
    Sending,
}
