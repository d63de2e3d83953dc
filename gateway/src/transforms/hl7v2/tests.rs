use super::*;

fn stored(source: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage {
        id: 1,
        source: source.into(),
        dedup_key: None,
        message_type: "ORU^R01".into(),
        content_type: "application/hl7-v2".into(),
        control_id: None,
        patient_id: None,
        received_at: 1_773_477_015_000,
        payload: payload.to_vec(),
        ack: None,
    }
}

#[test]
fn an_oru_r01_becomes_patient_request_report_and_one_observation_per_obx() {
    let text = include_bytes!("../../protocol/hl7/testdata/oru_r01_v251.hl7");
    let bundle = to_bundle(&stored("lab", text), &TimeZone::UTC).unwrap();
    let kinds: Vec<_> = bundle
        .entry
        .iter()
        .map(|e| e.resource.type_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "Patient",
            "Specimen",
            "ServiceRequest",
            "Observation",
            "Observation",
            "Observation",
            "Observation",
            "DiagnosticReport",
            "Provenance"
        ]
    );
    let Resource::Observation(plt) = &bundle.entry[6].resource else {
        panic!()
    };
    let q = plt.value_quantity.as_ref().unwrap();
    assert_eq!(
        (q.system.as_deref(), q.code.as_deref()),
        (Some(UCUM), Some("10*3/uL"))
    );
    assert_eq!(plt.interpretation[0].coding[0].code.as_deref(), Some("L"));
    assert_eq!(
        plt.effective_date_time.as_deref(),
        Some("2026-03-14T09:29:00+01:00")
    );
    assert_eq!(
        plt.note[0].text,
        "Platelet clumps seen\\ recount suggested\nChecked by & reported to ward"
    );
}
