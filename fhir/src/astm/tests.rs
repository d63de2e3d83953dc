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
            "ServiceRequest",
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

fn bundle_of(source: &str, content_type: &str, payload: &[u8]) -> serde_json::Value {
    let mut m = stored(source, payload);
    m.envelope.content_type = content_type.into();
    let cx = TransformContext::new(TimeZone::get("Europe/Berlin").unwrap());
    serde_json::to_value(to_bundle(&m, &cx).unwrap()).unwrap()
}

fn resources<'a>(bundle: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == kind)
        .collect()
}

fn codes(bundle: &serde_json::Value) -> Vec<String> {
    resources(bundle, "Observation")
        .iter()
        .map(|o| {
            o["code"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn notes_of(r: &serde_json::Value) -> Vec<String> {
    r["note"]
        .as_array()
        .map(|n| {
            n.iter()
                .map(|a| a["text"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const COBAS: &[u8] = include_bytes!("../../../tests/data/fhir/immuno_cobas_e411.astm");
const SYSMEX: &[u8] = include_bytes!("../../../tests/data/fhir/hematology_sysmex_xn.astm");
const BECKMAN: &[u8] = include_bytes!("../../../tests/data/fhir/chemistry_beckman_dilution.astm");

#[test]
fn a_test_code_in_component_5_becomes_an_observation_not_an_empty_message() {
    // Sysmex style `^^^^WBC^1`: component 4 empty, the code in 5, a
    // dilution in 6.
    let b = bundle_of("xn350", "application/x-astm", SYSMEX);
    assert_eq!(codes(&b), ["WBC", "RBC", "HGB", "PLT"]);
}

#[test]
fn a_code_followed_by_a_dilution_is_read_as_the_code() {
    // Roche cobas style `^^^687^1` and Beckman style `^^^GLU^^5`.
    let b = bundle_of("e411", "application/x-astm", COBAS);
    assert_eq!(codes(&b), ["687", "470"]);
    let b = bundle_of("au5800", "application/x-astm", BECKMAN);
    assert_eq!(codes(&b), ["GLU", "GLU", "CRE"]);
}

#[test]
fn the_same_test_at_two_dilutions_is_two_observations() {
    let b = bundle_of("au5800", "application/x-astm", BECKMAN);
    let ids: Vec<&str> = resources(&b, "Observation")
        .iter()
        .map(|o| o["identifier"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["B-5512/GLU", "B-5512/GLU/2", "B-5512/CRE"]);
    let values: Vec<f64> = resources(&b, "Observation")
        .iter()
        .map(|o| o["valueQuantity"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, [33.3, 41.7, 88.0]);
    // What tells the two apart is kept: the field as sent, dilution and all.
    let texts: Vec<&serde_json::Value> = resources(&b, "Observation")
        .iter()
        .map(|o| &o["code"]["text"])
        .collect();
    assert_eq!(texts[0], "^^^GLU^^1");
    assert_eq!(texts[1], "^^^GLU^^5");
}

#[test]
fn the_configured_component_is_read_and_an_empty_one_keeps_the_whole_test_id() {
    // Abbott style `^^^16^TSH^UNDILUTED^P`: the assay number in 4, its
    // name in 5. The automatic rule takes the number; a profile that wants
    // the name says 5.
    let text = b"H|\\^&|||ARCHITECT^9.45^i1SR01\rP|1||PT-9\rO|1|S-1||^^^16^TSH^UNDILUTED^P\rR|1|^^^16^TSH^UNDILUTED^P^^F|1.21|uIU/mL||N||F\rR|2|^^^^^^|5|\rL|1|N\r";
    let auto = bundle_of("i1000", "application/x-astm", text);
    assert_eq!(codes(&auto)[0], "16");
    let fifth = bundle_of("i1000", "application/x-astm; test-id-component=5", text);
    assert_eq!(codes(&fifth)[0], "TSH");
    // Component 6 is `UNDILUTED`; component 4 of a Sysmex result is empty,
    // so the code is the whole field as sent.
    let fourth = bundle_of("xn350", "application/x-astm; test-id-component=4", SYSMEX);
    assert_eq!(codes(&fourth)[0], "^^^^WBC^1");
    // An R-3 with nothing in it is still an Observation, coded as text.
    let empty = &resources(&auto, "Observation")[1]["code"];
    assert_eq!(empty["text"], "no test id (R-3 empty)");
    assert!(empty.get("coding").is_none());
}

#[test]
fn the_order_of_a_result_becomes_its_service_request_and_its_basis() {
    let b = bundle_of("e411", "application/x-astm", COBAS);
    let requests = resources(&b, "ServiceRequest");
    assert_eq!(requests.len(), 1);
    let sr = requests[0];
    assert_eq!(sr["identifier"][0]["value"], "0815-1234");
    assert_eq!(sr["status"], "completed");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["priority"], "routine");
    assert_eq!(sr["code"]["text"], "687, 470");
    let url = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "ServiceRequest")
        .unwrap()["fullUrl"]
        .clone();
    for kind in ["Observation", "DiagnosticReport"] {
        for r in resources(&b, kind) {
            assert_eq!(r["basedOn"][0]["reference"], url, "{kind}");
        }
    }
    assert_eq!(resources(&b, "Specimen")[0]["request"][0]["reference"], url);
}

#[test]
fn comments_after_p_o_and_r_become_notes_of_their_level() {
    let b = bundle_of("e411", "application/x-astm", COBAS);
    // C after O, then C after P, on the request.
    assert_eq!(
        notes_of(resources(&b, "ServiceRequest")[0]),
        [
            "Sample slightly hemolysed HEM",
            "Dialysis patient, draw before session"
        ]
    );
    // C after R on its Observation only.
    let obs = resources(&b, "Observation");
    assert_eq!(notes_of(obs[0]), ["Calibration lot 23514"]);
    assert!(notes_of(obs[1]).is_empty());
    assert!(resources(&b, "Patient")[0].get("note").is_none());
}

#[test]
fn without_a_patient_id_the_comments_of_the_order_and_patient_go_with_each_result() {
    let text = b"H|\\^&|||CA-660\rP|1\rC|1|L|Ward 3|G\rO|1|C-88||^^^^040^100\rC|1|I|Clot detected|G\rR|1|^^^^040^100|12.1|s||N||F\rR|2|^^^^050^100|31.5|s||N||F\rC|1|I|Repeat|G\rL|1|N\r";
    let b = bundle_of("ca660", "application/x-astm", text);
    assert!(resources(&b, "ServiceRequest").is_empty());
    let obs = resources(&b, "Observation");
    assert_eq!(codes(&b), ["040", "050"]);
    assert_eq!(notes_of(obs[0]), ["Clot detected", "Ward 3"]);
    assert_eq!(notes_of(obs[1]), ["Repeat", "Clot detected", "Ward 3"]);
}

#[test]
fn a_message_whose_results_have_no_test_id_still_arrives_as_observations() {
    let text = b"H|\\^&|||X\rP|1||PT-1\rO|1|S-7\rR|1||5.5|mmol/L||N||F\rR|2|^^^|6|\rL|1|N\r";
    let b = bundle_of("x", "application/x-astm", text);
    let obs = resources(&b, "Observation");
    assert_eq!(obs.len(), 2);
    assert_eq!(obs[0]["valueQuantity"]["value"], 5.5);
    assert_eq!(obs[1]["code"]["text"], "no test id (R-3 empty)");
    let ids: Vec<&str> = obs
        .iter()
        .map(|o| o["identifier"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["S-7/#r1", "S-7/#r2"]);
}
