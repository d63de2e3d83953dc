//! The order and specimen ids read from a stored payload for the log
//! page's search, fed arbitrary bytes as HL7 v2, ASTM or a DICOM record
//! (the first byte picks which): a list of short, distinct, non-empty
//! keys, never a panic.
#![no_main]

use ecko_message::{Envelope, StoredMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let content_type = match pick % 3 {
        0 => "x-application/hl7-v2+er7",
        1 => "application/x-astm",
        _ => ecko_protocol::dicom::record::CONTENT_TYPE,
    };
    let m = StoredMessage {
        id: 1,
        received_at: 0,
        envelope: Envelope {
            content_type: content_type.into(),
            payload: payload.to_vec(),
            ..Default::default()
        },
    };
    let keys = ecko_fhir::keys::search_keys(&m);
    assert!(keys.len() <= ecko_fhir::keys::KEYS_MAX);
    for (i, k) in keys.iter().enumerate() {
        assert!(!k.is_empty() && k.len() <= ecko_fhir::keys::KEY_MAX);
        assert!(!keys[..i].contains(k));
    }
});
