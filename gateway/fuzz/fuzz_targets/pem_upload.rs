//! A PEM file uploaded from the admin page, fed arbitrary bytes: the first
//! byte picks what the setting holds, the rest is the file; accepted with
//! what it holds or refused with a reason, never a panic. The rest, cut in
//! two at the second byte's share, is also checked as a certificate and
//! its key.
#![no_main]

use ecko_gateway::tls::upload::{check, check_pair, Holds};
use libfuzzer_sys::fuzz_target;

const NOW_MS: i64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let holds = match pick % 4 {
        0 => Holds::Certificate,
        1 => Holds::PrivateKey,
        2 => Holds::Trust,
        _ => Holds::Pinned,
    };
    if let Ok(accepted) = check(holds, file, NOW_MS) {
        assert_eq!(accepted.expires.is_none(), holds == Holds::PrivateKey);
        assert!(accepted.expires.is_none_or(|e| e > NOW_MS));
    }
    let cut = file.len() * usize::from(pick) / 255;
    let (cert, key) = file.split_at(cut.min(file.len()));
    let _ = check_pair(cert, key);
});
