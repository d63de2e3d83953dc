//! MLLP framing: `0x0B payload 0x1C 0x0D`.
//!
//! [`Decoder`] is a sans-I/O streaming decoder: the caller [`push`]es whatever
//! bytes the socket gave it, together with a monotonic "now", then pulls
//! [`Event`]s with [`next_event`] until it returns `None` (the rest is
//! incomplete and waits for more bytes). Scanning resumes where the previous
//! push stopped, so a large frame arriving in many small reads costs linear
//! time.
//!
//! Rules, and why:
//!
//! - Bytes outside a frame (before a start block, between frames) are dropped
//!   and reported as [`Event::Discarded`] so the caller can log them; they are
//!   never part of a payload.
//! - A frame whose payload grows beyond the configured maximum (default
//!   16 MiB) is not buffered further: the decoder keeps only the first
//!   [`TOO_LARGE_HEAD_LEN`] bytes (enough to read MSH and answer with an `AR`),
//!   counts the rest while skipping to the end of that frame, and then reports
//!   [`Event::TooLarge`]. Memory stays bounded by the maximum whatever the
//!   peer sends. [`Decoder::oversized`] says so as soon as the limit is
//!   crossed, for a caller that answers and closes rather than reading the
//!   rest (the MLLP listener does).
//! - End block without the carriage return: a frame ends at `0x1C`. The
//!   following byte is swallowed if it is `0x0D`; anything else is treated as
//!   the bytes after a frame (a new `0x0B` starts the next frame, other bytes
//!   are discarded). We do not wait for the `0x0D` before releasing the frame,
//!   because a sender that omits it would otherwise wait forever for its ACK.
//! - A start block inside a frame means the sender gave up on the previous
//!   frame and started again: the partial payload is reported as discarded
//!   and a new frame begins. HL7 payloads never contain `0x0B` or `0x1C`.
//! - Framing timeout: [`Decoder::pending_since`] tells when the frame now in
//!   progress started (the `now` of the push that brought its start block).
//!   The caller compares it with its clock (default limit
//!   [`DEFAULT_FRAME_TIMEOUT`]) and calls [`Decoder::abandon_partial`] when the
//!   peer has stalled mid-frame.
//!
//! [`push`]: Decoder::push
//! [`next_event`]: Decoder::next_event

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Start block (VT).
pub const START_BLOCK: u8 = 0x0B;
/// End block (FS).
pub const END_BLOCK: u8 = 0x1C;
/// Carriage return that follows the end block.
pub const CARRIAGE_RETURN: u8 = 0x0D;
/// Default maximum payload length: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Default time a frame may stay incomplete before the caller gives up on it.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// How many leading payload bytes of an oversized frame are kept.
pub const TOO_LARGE_HEAD_LEN: usize = 4096;

/// What the decoder found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete frame; the payload without the framing bytes.
    Frame(Vec<u8>),
    /// Bytes dropped because they were outside a frame, or belonged to a
    /// frame abandoned by a new start block.
    Discarded {
        /// How many bytes were dropped.
        len: usize,
    },
    /// A frame exceeded the maximum length and was skipped up to its end.
    TooLarge {
        /// Total payload length seen for the frame.
        len: u64,
        /// The first [`TOO_LARGE_HEAD_LEN`] payload bytes (to read MSH).
        head: Vec<u8>,
        /// Whether the frame was ended by an end block (`false` when a new
        /// start block cut it short).
        ended: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between frames.
    Idle {
        /// The previous byte was an end block: swallow one CR.
        after_end: bool,
    },
    /// Collecting a payload.
    InFrame { since: Instant },
    /// Skipping the rest of an oversized frame.
    Skipping { since: Instant, len: u64 },
}

/// Streaming MLLP decoder. See the module note for the rules.
#[derive(Debug)]
pub struct Decoder {
    max_frame_len: usize,
    state: State,
    buf: Vec<u8>,
    head: Vec<u8>,
    noise: usize,
    events: VecDeque<Event>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder {
    /// A decoder that accepts payloads up to `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Decoder {
            max_frame_len,
            state: State::Idle { after_end: false },
            buf: Vec::new(),
            head: Vec::new(),
            noise: 0,
            events: VecDeque::new(),
        }
    }

    /// The configured maximum payload length.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Feed bytes read from the peer at monotonic time `now`.
    pub fn push(&mut self, mut data: &[u8], now: Instant) {
        while !data.is_empty() {
            match self.state {
                State::Idle { after_end } => {
                    if after_end {
                        self.state = State::Idle { after_end: false };
                        if data[0] == CARRIAGE_RETURN {
                            data = &data[1..];
                            continue;
                        }
                    }
                    match data.iter().position(|&b| b == START_BLOCK) {
                        Some(i) => {
                            self.noise += i;
                            self.flush_noise();
                            self.state = State::InFrame { since: now };
                            data = &data[i + 1..];
                        }
                        None => {
                            self.noise += data.len();
                            data = &[];
                        }
                    }
                }
                State::InFrame { since } => {
                    let stop = data
                        .iter()
                        .position(|&b| b == END_BLOCK || b == START_BLOCK);
                    let body_len = stop.unwrap_or(data.len());
                    if self.buf.len() + body_len > self.max_frame_len {
                        // Keep only the head; count the rest while skipping.
                        let seen = (self.buf.len() + body_len) as u64;
                        let mut head = std::mem::take(&mut self.buf);
                        head.truncate(TOO_LARGE_HEAD_LEN);
                        let room = TOO_LARGE_HEAD_LEN - head.len();
                        head.extend_from_slice(&data[..room.min(body_len)]);
                        self.head = head;
                        self.state = State::Skipping { since, len: seen };
                        data = &data[body_len..];
                        continue;
                    }
                    self.buf.extend_from_slice(&data[..body_len]);
                    match stop {
                        Some(i) if data[i] == END_BLOCK => {
                            let payload = std::mem::take(&mut self.buf);
                            self.events.push_back(Event::Frame(payload));
                            self.state = State::Idle { after_end: true };
                            data = &data[i + 1..];
                        }
                        Some(i) => {
                            // A new start block: the previous frame is abandoned.
                            let dropped = self.buf.len() + 1;
                            self.buf.clear();
                            self.events.push_back(Event::Discarded { len: dropped });
                            self.state = State::InFrame { since: now };
                            data = &data[i + 1..];
                        }
                        None => data = &[],
                    }
                }
                State::Skipping { since, len } => {
                    let stop = data
                        .iter()
                        .position(|&b| b == END_BLOCK || b == START_BLOCK);
                    let body_len = stop.unwrap_or(data.len());
                    let room = TOO_LARGE_HEAD_LEN.saturating_sub(self.head.len());
                    self.head.extend_from_slice(&data[..room.min(body_len)]);
                    match stop {
                        Some(i) => {
                            let ended = data[i] == END_BLOCK;
                            self.events.push_back(Event::TooLarge {
                                len: len + i as u64,
                                head: std::mem::take(&mut self.head),
                                ended,
                            });
                            self.state = if ended {
                                State::Idle { after_end: true }
                            } else {
                                State::InFrame { since: now }
                            };
                            data = &data[i + 1..];
                        }
                        None => {
                            self.state = State::Skipping {
                                since,
                                len: len + data.len() as u64,
                            };
                            data = &[];
                        }
                    }
                }
            }
        }
        self.flush_noise();
    }

    /// The next event, or `None` when everything pushed so far is consumed
    /// (a partial frame may still be pending).
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether a frame has started and not yet ended.
    pub fn is_pending(&self) -> bool {
        self.pending_since().is_some()
    }

    /// When the frame in progress started, if any.
    pub fn pending_since(&self) -> Option<Instant> {
        match self.state {
            State::Idle { .. } => None,
            State::InFrame { since } | State::Skipping { since, .. } => Some(since),
        }
    }

    /// How many payload bytes of the frame in progress have been seen.
    pub fn pending_len(&self) -> u64 {
        match self.state {
            State::Idle { .. } => 0,
            State::InFrame { .. } => self.buf.len() as u64,
            State::Skipping { len, .. } => len,
        }
    }

    /// The frame in progress once it is known to be too large, before its
    /// end has come: the payload length seen so far and its first
    /// [`TOO_LARGE_HEAD_LEN`] bytes (to read MSH). A caller that will not
    /// read the rest answers from this and closes the connection.
    pub fn oversized(&self) -> Option<(u64, &[u8])> {
        match self.state {
            State::Skipping { len, .. } => Some((len, &self.head)),
            _ => None,
        }
    }

    /// Payload bytes held for the frame in progress: at most the maximum
    /// frame length while it may still fit, at most
    /// [`TOO_LARGE_HEAD_LEN`] once it is known to be too large. Events not
    /// yet taken are not counted.
    pub fn buffered_len(&self) -> usize {
        self.buf.len() + self.head.len()
    }

    /// Drop the frame in progress (framing timeout, or the peer closed its
    /// side mid-frame). Returns how many payload bytes were dropped, or `None`
    /// when no frame was pending.
    pub fn abandon_partial(&mut self) -> Option<u64> {
        let dropped = match self.state {
            State::Idle { .. } => return None,
            State::InFrame { .. } => self.buf.len() as u64,
            State::Skipping { len, .. } => len,
        };
        self.buf = Vec::new();
        self.head = Vec::new();
        self.state = State::Idle { after_end: false };
        Some(dropped)
    }

    fn flush_noise(&mut self) {
        if self.noise > 0 {
            self.events.push_back(Event::Discarded { len: self.noise });
            self.noise = 0;
        }
    }
}

/// Frame `payload` for sending: `0x0B payload 0x1C 0x0D`.
///
/// The payload must not contain `0x0B` or `0x1C` (HL7 text never does).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    encode_into(payload, &mut out);
    out
}

/// Append the framed `payload` to `out`.
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 3);
    out.push(START_BLOCK);
    out.extend_from_slice(payload);
    out.push(END_BLOCK);
    out.push(CARRIAGE_RETURN);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut Decoder) -> Vec<Event> {
        std::iter::from_fn(|| d.next_event()).collect()
    }

    fn frame(p: &[u8]) -> Event {
        Event::Frame(p.to_vec())
    }

    #[test]
    fn a_whole_frame_in_one_push_yields_its_payload() {
        let mut d = Decoder::default();
        d.push(b"\x0bMSH|x\r\x1c\r", Instant::now());
        assert_eq!(drain(&mut d), vec![frame(b"MSH|x\r")]);
        assert!(!d.is_pending());
    }

    #[test]
    fn a_frame_split_across_every_byte_boundary_is_reassembled() {
        let wire = encode(b"MSH|^~\\&|A\rPID|1\r");
        for split in 0..=wire.len() {
            let mut d = Decoder::default();
            let now = Instant::now();
            d.push(&wire[..split], now);
            let mut events = drain(&mut d);
            d.push(&wire[split..], now);
            events.extend(drain(&mut d));
            assert_eq!(
                events,
                vec![frame(b"MSH|^~\\&|A\rPID|1\r")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_delivery_yields_every_frame_in_order() {
        let mut wire = encode(b"one");
        wire.extend(encode(b"two"));
        let mut d = Decoder::default();
        let mut events = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b), Instant::now());
            events.extend(drain(&mut d));
        }
        assert_eq!(events, vec![frame(b"one"), frame(b"two")]);
    }

    #[test]
    fn noise_before_and_between_frames_is_counted_and_dropped() {
        let mut d = Decoder::default();
        d.push(b"junk\x0bA\x1c\r\r\n\x0bB\x1c\rxx", Instant::now());
        assert_eq!(
            drain(&mut d),
            vec![
                Event::Discarded { len: 4 },
                frame(b"A"),
                Event::Discarded { len: 2 },
                frame(b"B"),
                Event::Discarded { len: 2 },
            ]
        );
    }

    #[test]
    fn end_block_without_carriage_return_still_ends_the_frame() {
        let mut d = Decoder::default();
        d.push(b"\x0bA\x1c", Instant::now());
        // Released at once: a sender that never sends the CR gets its ACK.
        assert_eq!(drain(&mut d), vec![frame(b"A")]);
        d.push(b"\x0bB\x1cX\x0bC\x1c\r", Instant::now());
        assert_eq!(
            drain(&mut d),
            vec![frame(b"B"), Event::Discarded { len: 1 }, frame(b"C")]
        );
    }

    #[test]
    fn the_carriage_return_after_an_end_block_in_the_next_push_is_swallowed() {
        let mut d = Decoder::default();
        d.push(b"\x0bA\x1c", Instant::now());
        d.push(b"\r", Instant::now());
        assert_eq!(drain(&mut d), vec![frame(b"A")]);
    }

    #[test]
    fn a_start_block_inside_a_frame_abandons_the_partial_frame() {
        let mut d = Decoder::default();
        d.push(b"\x0bhalf\x0bwhole\x1c\r", Instant::now());
        assert_eq!(
            drain(&mut d),
            vec![Event::Discarded { len: 5 }, frame(b"whole")]
        );
    }

    #[test]
    fn an_oversized_frame_is_skipped_to_its_end_and_reported_with_its_head() {
        let mut d = Decoder::new(8);
        d.push(b"\x0bMSH|0123", Instant::now());
        d.push(b"456789", Instant::now());
        assert!(drain(&mut d).is_empty());
        assert!(d.is_pending());
        d.push(b"abc\x1c\r\x0bok\x1c\r", Instant::now());
        assert_eq!(
            drain(&mut d),
            vec![
                Event::TooLarge {
                    len: 17,
                    head: b"MSH|0123456789abc".to_vec(),
                    ended: true
                },
                frame(b"ok"),
            ]
        );
    }

    #[test]
    fn an_oversized_frame_never_buffers_more_than_the_head() {
        let mut d = Decoder::new(1024);
        d.push(&[START_BLOCK], Instant::now());
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            d.push(&chunk, Instant::now());
            assert!(d.buf.capacity() <= 64 * 1024 + 1024);
            assert!(d.head.len() <= TOO_LARGE_HEAD_LEN);
            assert!(d.buffered_len() <= TOO_LARGE_HEAD_LEN);
        }
        assert_eq!(d.pending_len(), 64 * 64 * 1024);
        d.push(b"\x1c\r", Instant::now());
        assert_eq!(d.buffered_len(), 0);
        match drain(&mut d).as_slice() {
            [Event::TooLarge { len, head, ended }] => {
                assert_eq!(*len, 64 * 64 * 1024);
                assert_eq!(head.len(), TOO_LARGE_HEAD_LEN);
                assert!(ended);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_frame_is_known_to_be_oversized_as_soon_as_it_crosses_the_limit() {
        let mut d = Decoder::new(8);
        d.push(b"\x0bMSH|^~\\&", Instant::now());
        assert!(d.oversized().is_none(), "still within the limit");
        d.push(b"|A|B", Instant::now());
        let (len, head) = d.oversized().expect("over the limit, end not yet seen");
        assert_eq!((len, head), (12, &b"MSH|^~\\&|A|B"[..]));
        assert!(drain(&mut d).is_empty(), "no event before the end");
        d.push(b"\x1c\r", Instant::now());
        assert!(d.oversized().is_none());
    }

    #[test]
    fn a_frame_of_exactly_the_maximum_is_accepted() {
        let mut d = Decoder::new(4);
        d.push(&encode(b"abcd"), Instant::now());
        assert_eq!(drain(&mut d), vec![frame(b"abcd")]);
        d.push(&encode(b"abcde"), Instant::now());
        assert!(matches!(
            drain(&mut d).as_slice(),
            [Event::TooLarge { len: 5, .. }]
        ));
    }

    #[test]
    fn pending_since_is_the_time_of_the_push_that_started_the_frame() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut d = Decoder::default();
        assert_eq!(d.pending_since(), None);
        d.push(b"noise", t0);
        assert_eq!(d.pending_since(), None);
        d.push(b"\x0bMSH", t1);
        assert_eq!(d.pending_since(), Some(t1));
        d.push(b"|more", t1 + Duration::from_secs(30));
        assert_eq!(d.pending_since(), Some(t1));
        d.push(b"\x1c\r", t1 + Duration::from_secs(31));
        assert_eq!(d.pending_since(), None);
    }

    #[test]
    fn abandoning_a_stalled_frame_reports_its_size_and_resets() {
        let mut d = Decoder::default();
        assert_eq!(d.abandon_partial(), None);
        d.push(b"\x0bMSH|partial", Instant::now());
        assert_eq!(d.abandon_partial(), Some(11));
        assert!(!d.is_pending());
        d.push(b"rest\x1c\r\x0bnext\x1c\r", Instant::now());
        assert_eq!(
            drain(&mut d),
            vec![Event::Discarded { len: 6 }, frame(b"next")]
        );
    }

    #[test]
    fn encode_wraps_the_payload_in_start_and_end_blocks() {
        assert_eq!(encode(b"MSH"), b"\x0bMSH\x1c\r");
        assert_eq!(encode(b""), b"\x0b\x1c\r");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            max in 0usize..64,
        ) {
            let mut d = Decoder::new(max);
            let mut rest = data.as_slice();
            for c in cuts {
                let n = if rest.is_empty() { 0 } else { c % rest.len() };
                d.push(&rest[..n], Instant::now());
                prop_assert!(d.buffered_len() <= max.max(TOO_LARGE_HEAD_LEN));
                rest = &rest[n..];
                while let Some(e) = d.next_event() {
                    if let Event::Frame(p) = e { prop_assert!(p.len() <= max); }
                }
            }
            d.push(rest, Instant::now());
            while let Some(e) = d.next_event() {
                if let Event::Frame(p) = e { prop_assert!(p.len() <= max); }
            }
        }

        #[test]
        fn encoded_payloads_decode_back_in_order_however_they_are_cut(
            payloads in proptest::collection::vec(
                proptest::collection::vec(any::<u8>().prop_filter("no framing bytes", |b| *b != START_BLOCK && *b != END_BLOCK), 0..200),
                1..6),
            cut in any::<usize>(),
        ) {
            let mut wire = Vec::new();
            for p in &payloads { encode_into(p, &mut wire); }
            let cut = cut % (wire.len() + 1);
            let mut d = Decoder::default();
            d.push(&wire[..cut], Instant::now());
            d.push(&wire[cut..], Instant::now());
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| d.next_event())
                .map(|e| match e { Event::Frame(p) => Ok(p), other => Err(other) })
                .collect::<Result<_, _>>()
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(frames, payloads);
            prop_assert!(!d.is_pending());
        }
    }
}
