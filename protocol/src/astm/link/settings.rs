//! How a link is set up: framing, line terminators, the profile of an
//! analyzer family, and the protocol's timers.

use super::frame;
use std::time::Duration;

/// How records travel on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// E1381 / LIS01-A2 frames, ENQ/ACK/EOT handshake.
    E1381,
    /// Records only, each followed by `terminator`; no handshake.
    Raw { terminator: LineTerminator },
}

/// Record separator for [`Framing::Raw`]. On receipt CR, LF and CR LF are
/// all accepted; this chooses what we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTerminator {
    Cr,
    CrLf,
    Lf,
}

impl LineTerminator {
    pub(super) fn bytes(self) -> &'static [u8] {
        match self {
            LineTerminator::Cr => b"\r",
            LineTerminator::CrLf => b"\r\n",
            LineTerminator::Lf => b"\n",
        }
    }
}

/// Per analyzer family deviations seen in the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub framing: Framing,
    /// Text bytes per frame we send (LIS01-A2: 240). Received frames may be
    /// longer: being strict there only loses results.
    pub max_frame_text: usize,
    /// `false` accepts frames with a missing or wrong checksum.
    pub checksum_required: bool,
    /// Bound on one received message, so a babbling line cannot exhaust
    /// memory. Beyond it frames are refused and the message is incomplete.
    pub max_message_bytes: usize,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            framing: Framing::E1381,
            max_frame_text: frame::DEFAULT_MAX_TEXT,
            checksum_required: true,
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// LIS01-A2 timers; defaults are the standard's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Receiver: longest wait for the next frame or EOT (30 s).
    pub receive: Duration,
    /// Sender: longest wait for an answer to ENQ or a frame (15 s).
    pub answer: Duration,
    /// Wait after a NAK to our ENQ or an unanswered ENQ (>= 10 s).
    pub busy_retry: Duration,
    /// Wait after contention; the host must leave >= 20 s.
    pub contention_retry: Duration,
    /// Wait after a receiver interrupt before trying again (>= 15 s).
    pub interrupt_retry: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            receive: Duration::from_secs(30),
            answer: Duration::from_secs(15),
            busy_retry: Duration::from_secs(10),
            contention_retry: Duration::from_secs(20),
            interrupt_retry: Duration::from_secs(15),
        }
    }
}

/// Everything the link needs to know about its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub profile: Profile,
    pub timers: Timers,
    /// Retransmissions of one frame before giving up (LIS01-A2: 6).
    pub max_retransmissions: u8,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            profile: Profile::default(),
            timers: Timers::default(),
            max_retransmissions: 6,
        }
    }
}
