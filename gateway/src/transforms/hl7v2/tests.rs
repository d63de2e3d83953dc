use super::*;
use crate::transforms::fhir::*;

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

fn resources<'a>(bundle: &'a Bundle, ty: &str) -> Vec<&'a Resource> {
    bundle
        .entry
        .iter()
        .map(|e| &e.resource)
        .filter(|r| r.type_name() == ty)
        .collect()
}

#[test]
fn a_discharge_finishes_the_encounter_with_an_end_and_a_cancelled_discharge_reopens_it() {
    let a03 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A03|9|P|2.5\rEVN|A03|20260405100000\rPID|||77^^^H||Roe^Jo\rPV1||I|W1^3^^H||||||||||||||||V1^^^H|||||||||||||||||||||||||20260402221500\r";
    let b = to_bundle(&stored("his", a03), &TimeZone::UTC).unwrap();
    let [Resource::Encounter(e)] = resources(&b, "Encounter")[..] else {
        panic!()
    };
    assert_eq!(e.status, "finished");
    let period = e.period.as_ref().unwrap();
    assert_eq!(period.end.as_deref(), Some("2026-04-05T10:00:00+00:00"));
    assert_eq!(e.location[0].status.as_deref(), Some("completed"));

    let a13 = String::from_utf8_lossy(a03).replace("A03", "A13");
    let b = to_bundle(&stored("his", a13.as_bytes()), &TimeZone::UTC).unwrap();
    let [Resource::Encounter(e)] = resources(&b, "Encounter")[..] else {
        panic!()
    };
    assert_eq!(e.status, "in-progress");
    assert_eq!(e.period.as_ref().unwrap().end, None);
}

#[test]
fn a_merge_links_the_surviving_and_the_merged_patient_both_ways() {
    let a40 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A40|9|P|2.5\rEVN|A40|20260405100000\rPID|||77^^^H||Roe^Jo\rMRG|66^^^H\r";
    let b = to_bundle(&stored("his", a40), &TimeZone::UTC).unwrap();
    let patients = resources(&b, "Patient");
    let [Resource::Patient(merged), Resource::Patient(surviving)] = patients[..] else {
        panic!("{patients:?}")
    };
    assert_eq!(merged.active, Some(false));
    assert_eq!(merged.link[0].type_, "replaced-by");
    assert_eq!(surviving.link[0].type_, "replaces");
    let urls: Vec<_> = b.entry.iter().map(|e| e.full_url.as_str()).collect();
    assert_eq!(
        merged.link[0].other.reference.as_deref(),
        Some(urls[1]),
        "the merged record points at the survivor"
    );
    assert_eq!(surviving.link[0].other.reference.as_deref(), Some(urls[0]));
}

#[test]
fn an_hl7_null_in_a_field_creates_nothing() {
    let a08 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|9|P|2.5\rPID|||77^^^H||Roe^Jo||\"\"|\"\"|||\"\"\r";
    let b = to_bundle(&stored("his", a08), &TimeZone::UTC).unwrap();
    let [Resource::Patient(p)] = resources(&b, "Patient")[..] else {
        panic!()
    };
    assert_eq!((p.birth_date.as_ref(), p.gender.as_ref()), (None, None));
    assert!(p.address.is_empty());
}

#[test]
fn order_control_and_order_status_set_the_request_and_medication_status() {
    let status = |orc: &str, rx: bool| {
        let detail = if rx {
            "RXO|ASA^Aspirin^L|100||mg"
        } else {
            "OBR|1|P1^HIS||CRP^CRP^L"
        };
        let text = format!(
            "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ORM^O01|9|P|2.3\rPID|||77^^^H\r{orc}\r{detail}\r"
        );
        let b = to_bundle(&stored("his", text.as_bytes()), &TimeZone::UTC).unwrap();
        match &b.entry[1].resource {
            Resource::ServiceRequest(sr) => sr.status.clone(),
            Resource::MedicationRequest(mr) => mr.status.clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(status("ORC|NW|P1^HIS", false), "active");
    assert_eq!(status("ORC|CA|P1^HIS", false), "revoked");
    assert_eq!(status("ORC|XO|P1^HIS", false), "active");
    assert_eq!(status("ORC|SC|P1^HIS|F1^LIS||CM", false), "completed");
    assert_eq!(status("ORC|HD|P1^HIS", false), "on-hold");
    assert_eq!(status("ORC|CA|P1^HIS", true), "cancelled");
    assert_eq!(status("ORC|DC|P1^HIS", true), "stopped");
}

#[test]
fn a_cancelled_appointment_keeps_its_times_and_gets_an_end_from_the_duration() {
    let s15 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||SIU^S15|9|P|2.3\rSCH|A-1||||||||20|MIN|^^^20260417113000\rPID|||77^^^H\r";
    let b = to_bundle(&stored("his", s15), &TimeZone::UTC).unwrap();
    let [Resource::Appointment(a)] = resources(&b, "Appointment")[..] else {
        panic!()
    };
    assert_eq!(a.status, "cancelled");
    assert_eq!(a.end.as_deref(), Some("2026-04-17T11:50:00+00:00"));
}

#[test]
fn an_ft1_without_a_code_takes_its_description_and_one_with_neither_is_skipped() {
    let dft = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||DFT^P03|9|P|2.3\rPID|||77^^^H\rFT1|1|||||||Cast\rFT1|2\r";
    let b = to_bundle(&stored("his", dft), &TimeZone::UTC).unwrap();
    let charges = resources(&b, "ChargeItem");
    let [Resource::ChargeItem(c)] = charges[..] else {
        panic!("{charges:?}")
    };
    assert_eq!(c.code.text.as_deref(), Some("Cast"));
}
