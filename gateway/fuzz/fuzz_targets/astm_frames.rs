//! The ASTM link layer fed arbitrary bytes, with time moving and the
//! caller's commits and queued messages interleaved, in every profile.
#![no_main]

use std::time::{Duration, Instant};

use ecko_protocol::astm::link::{Framing, LineTerminator, Link, LinkConfig, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framing = if mode & 1 == 0 {
        Framing::E1381
    } else {
        Framing::Raw {
            terminator: LineTerminator::CrLf,
        }
    };
    let config = LinkConfig {
        profile: Profile {
            framing,
            checksum_required: mode & 2 == 0,
            max_frame_text: usize::from(mode >> 2).max(1),
            max_message_bytes: 2048,
        },
        ..LinkConfig::default()
    };
    let mut link = Link::new(config);
    let mut now = Instant::now();
    // Chunks: one control byte, then up to 15 bytes of line input.
    for chunk in rest.chunks(16) {
        let Some((&ctl, bytes)) = chunk.split_first() else {
            continue;
        };
        match ctl & 7 {
            0 => link.commit_done(now, true),
            1 => link.commit_done(now, false),
            2 => {
                link.queue_message(now, vec![bytes.to_vec(), b"L|1|N".to_vec()]);
            }
            3 => link.set_ready(ctl & 8 == 0),
            _ => {}
        }
        link.handle_input(now, bytes);
        now += Duration::from_millis(u64::from(ctl >> 3) * 1000);
        if let Some(at) = link.poll_timeout() {
            if at <= now {
                link.handle_timeout(now);
            }
        }
        while link.poll_output().is_some() {}
    }
});
