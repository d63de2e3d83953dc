//! Fuzz the transforms that make files and documents of HL7 v2 (the
//! accounting rows of `charges-csv` and `charges-json`, the ABDM document
//! of `abdm-diagnostic-report`): whatever a sender put in a message, each
//! answers with its output or an error, never a panic, and JSON output is
//! valid JSON.

#![no_main]

use ecko_message::StoredMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (transform, message_type, json) in [
        ("charges-csv", "DFT^P03", false),
        ("charges-json", "DFT^P03", true),
        ("abdm-diagnostic-report", "ORU^R01", true),
    ] {
        let message = StoredMessage {
            id: 1,
            received_at: 0,
            envelope: ecko_message::Envelope {
                source: "fuzz".into(),
                dedup_key: None,
                message_type: message_type.into(),
                content_type: "x-application/hl7-v2+er7".into(),
                control_id: None,
                patient_id: None,
                payload: data.to_vec(),
                ack: None,
                hints: Default::default(),
            },
        };
        if let Ok(out) =
            ecko_fhir::apply(transform, &message, &ecko_fhir::TransformContext::default())
        {
            if json {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
                assert!(parsed.is_ok(), "{transform} wrote invalid JSON");
            }
        }
    }
});
