use super::*;
use std::sync::Arc;

pub(crate) fn stored(source: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage {
        id: 1,
        received_at: 1_768_465_812_000,
        envelope: ecko_message::Envelope {
            source: source.into(),
            dedup_key: Some("k1".into()),
            message_type: "ASTM".into(),
            content_type: "application/astm".into(),
            control_id: None,
            patient_id: None,
            payload: payload.to_vec(),
            ack: None,
            hints: Default::default(),
        },
    }
}

#[test]
fn chemistry_results_become_patient_specimen_report_and_one_observation_per_result() {
    let text = include_bytes!("../../../protocol/src/astm/testdata/chemistry_results.astm");
    let berlin = TransformContext::new(TimeZone::get("Europe/Berlin").unwrap());
    let bundle = to_bundle(&stored("c311", text), &berlin).unwrap();
    let kinds: Vec<_> = bundle
        .entry
        .iter()
        .map(|e| e.resource.type_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "Device",
            "Patient",
            "Specimen",
            "Observation",
            "Observation",
            "Observation",
            "Observation",
            "DiagnosticReport",
            "Provenance"
        ]
    );
    let _ = Arc::new(());
}
