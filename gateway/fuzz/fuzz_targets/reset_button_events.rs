//! Fuzz the reset button's reading of an input event device: any bytes,
//! read as `struct input_event` records, must never panic, and each
//! record's fields must come back from where the kernel puts them.

#![no_main]

use ecko_hal::reset_button::{decode_input_event, INPUT_EVENT_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for chunk in data.chunks_exact(INPUT_EVENT_SIZE) {
        let record: &[u8; INPUT_EVENT_SIZE] = chunk.try_into().unwrap();
        let (kind, code, value) = decode_input_event(record);
        let tail = INPUT_EVENT_SIZE - 8;
        assert_eq!(kind.to_ne_bytes(), record[tail..tail + 2]);
        assert_eq!(code.to_ne_bytes(), record[tail + 2..tail + 4]);
        assert_eq!(value.to_ne_bytes(), record[tail + 4..]);
    }
});
