//! Fuzz the MLLP decoder: arbitrary bytes in arbitrary chunks must never
//! panic, never yield a frame above the maximum, never keep more than the
//! head of an oversized frame, and give the same frames however the input
//! is cut. Frames re-encoded must decode to themselves.

#![no_main]

use std::time::Instant;

use ecko_protocol::mllp::{encode, Decoder, Event, TOO_LARGE_HEAD_LEN};
use libfuzzer_sys::fuzz_target;

/// Frames and oversized frames, in order (noise reports depend on the cuts).
fn decode(input: &[u8], max: usize, chunk: usize, now: Instant) -> Vec<Event> {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        d.push(c, now);
        while let Some(e) = d.next_event() {
            match &e {
                Event::Frame(p) => assert!(p.len() <= max),
                Event::TooLarge { len, head, .. } => {
                    assert!(*len > max as u64);
                    assert!(head.len() <= TOO_LARGE_HEAD_LEN);
                }
                Event::Discarded { len } => {
                    assert!(*len > 0);
                    continue;
                }
            }
            out.push(e);
        }
        // The memory bound: a peer cannot make the decoder hold more than
        // one frame's worth, or the head of an oversized one.
        assert!(d.buffered_len() <= max.max(TOO_LARGE_HEAD_LEN));
        if !d.is_pending() {
            assert_eq!(d.buffered_len(), 0);
        }
    }
    if d.is_pending() {
        assert!(d.pending_since().is_some());
        assert!(d.abandon_partial().is_some());
    }
    assert!(!d.is_pending());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let max = usize::from(ctl & 0x3f) * 8;
    let chunk = usize::from(ctl >> 6) * 5 + 1;
    let now = Instant::now();

    let whole = decode(input, max, input.len(), now);
    let cut = decode(input, max, chunk, now);
    assert_eq!(whole, cut);

    let frames: Vec<Event> = whole
        .into_iter()
        .filter(|e| matches!(e, Event::Frame(_)))
        .collect();
    let mut wire = Vec::new();
    for f in &frames {
        if let Event::Frame(p) = f {
            wire.extend(encode(p));
        }
    }
    assert_eq!(decode(&wire, max, chunk, now), frames);
});
