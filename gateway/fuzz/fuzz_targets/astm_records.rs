//! The ASTM record parser and message tree fed arbitrary records, with
//! every accessor exercised.
#![no_main]

use ecko_protocol::astm::message::{
    content_hash, CommentExt, Message, ParseOptions, TimeZone,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records: Vec<Vec<u8>> = data
        .split(|&b| b == b'\r' || b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    let _ = content_hash(&records);
    let Ok(msg) = Message::parse(
        &records,
        &ParseOptions {
            check_sequence: false,
        },
    ) else {
        return;
    };
    let tz = TimeZone::UTC;
    let _ = (
        msg.header.sender(),
        msg.header.timestamp(&tz),
        msg.termination_code(),
    );
    for c in &msg.header.comments {
        let _ = (c.comment_text(), c.comment_source(), c.comment_type());
    }
    for p in &msg.patients {
        let _ = (p.name(), p.practice_patient_id(), p.sex());
        for o in &p.orders {
            let _ = (
                o.specimen_id(),
                o.instrument_specimen_id(),
                o.universal_test_ids(),
            );
            let _ = (o.requested_at(&tz), o.collected_at(&tz), o.report_type());
            for r in &o.results {
                let _ = (
                    r.universal_test_id(),
                    r.value(),
                    r.units(),
                    r.reference_range(),
                );
                let _ = (
                    r.abnormal_flags(),
                    r.status(),
                    r.operator(),
                    r.instrument_id(),
                );
                let _ = (r.started_at(&tz), r.completed_at(&tz));
                for c in &r.comments {
                    let _ = c.comment_text();
                }
            }
        }
    }
    for q in &msg.queries {
        let _ = (
            q.starting_range(),
            q.ending_range(),
            q.universal_test_ids(),
            q.request_status(),
        );
    }
    let _ = Message::parse(&records, &ParseOptions::default());
});
