//! Fuzz the ASTM → FHIR transform: whatever an analyzer put in a message
//! that was accepted, the transform answers with a Bundle or an error,
//! never a panic, and a Bundle is valid JSON.

#![no_main]

use ecko_message::StoredMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let message = StoredMessage {
        id: 1,
        received_at: 0,
        envelope: ecko_message::Envelope {
            source: "fuzz".into(),
            dedup_key: None,
            message_type: "ASTM".into(),
            content_type: "application/x-astm".into(),
            control_id: None,
            patient_id: None,
            payload: data.to_vec(),
            ack: None,
            hints: Default::default(),
        },
    };
    if let Ok(json) = ecko_fhir::apply("astm-fhir", &message, &ecko_fhir::TransformContext::default()) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&json);
        assert!(parsed.is_ok(), "the transform wrote invalid JSON");
    }
});
