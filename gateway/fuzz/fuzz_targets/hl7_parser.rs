//! Fuzz the HL7 v2 layer: parsing, batch splitting, ACK building and ACK
//! reading must never panic, and every ACK we build must itself parse and
//! answer the right control id.

#![no_main]

use ecko_protocol::hl7::{
    build_ack, build_ack_for_unreadable, split_batch, AckCode, AckContent, AckError, Charset,
    Message, ParseOptions, ReceivedAck,
};
use libfuzzer_sys::fuzz_target;

const CHARSETS: [Charset; 5] = [
    Charset::Ascii,
    Charset::Latin1,
    Charset::Latin9,
    Charset::Utf8,
    Charset::Windows1252,
];

fn walk(m: &Message) {
    for s in m.segments() {
        let _ = (s.id(), s.sequence());
        for n in 0..=s.field_count() + 1 {
            let Some(f) = s.field(n) else { continue };
            let _ = f.value();
            for r in f.repetitions() {
                for c in 1..4 {
                    if let Some(c) = r.component(c) {
                        let _ = c.value();
                        let _ = c.subcomponent(2).map(|v| v.value());
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let opts = ParseOptions {
        fallback_charset: CHARSETS[usize::from(ctl) % CHARSETS.len()],
    };
    // Type inferred from AckContent: the Unix epoch in UTC.
    let ts = Default::default();
    let content = |code, error| AckContent {
        code,
        control_id: "FUZZ-1",
        timestamp: &ts,
        text: Some("text | with ^ separators"),
        error,
    };

    if let Ok(batch) = split_batch(input) {
        for m in batch.messages {
            if let Ok(m) = Message::parse(m, &opts) {
                walk(&m);
            }
        }
    }
    let _ = ReceivedAck::parse(input, &opts);

    match Message::parse(input, &opts) {
        Ok(m) => {
            walk(&m);
            let ack = build_ack(&m, &content(AckCode::AA, None));
            let r = match ReceivedAck::parse(&ack, &opts) {
                Ok(r) => r,
                Err(e) => panic!("our ACK does not read back: {e}"),
            };
            assert_eq!(r.code, AckCode::AA);
            let id = &m.identity().control_id;
            if !m.had_decode_errors() && id.is_ascii() {
                assert!(r.acknowledges(id), "{:?} vs {id:?}", r.control_id);
            }
        }
        Err(e) => {
            let error = AckError::from(&e);
            let ack = build_ack_for_unreadable(input, &content(AckCode::AE, Some(&error)), &opts);
            if let Err(e) = Message::parse(&ack, &opts) {
                panic!("ACK for unreadable input does not parse: {e}");
            }
        }
    }
});
