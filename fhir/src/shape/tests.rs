use super::*;

fn bundle(entries: &[(&str, &str)]) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(url, code)| {
            serde_json::json!({
                "fullUrl": url,
                "resource": {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "urn:ecko-edge:lab:code", "code": code}]}},
                "request": {"method": "PUT", "url": format!("Observation?identifier=x|{url}")}
            })
        })
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn glucose() -> LoincCoding {
    LoincCoding {
        code: "2345-7".into(),
        display: Some("Glucose".into()),
        unit: None,
    }
}

#[test]
fn the_code_map_puts_loinc_first_and_touches_only_local_codes() {
    let mut v = bundle(&[("urn:uuid:a", "GLU"), ("urn:uuid:b", "XYZ")]);
    // The same letters in another system are not the analyzer's code.
    v["entry"][1]["resource"]["code"]["coding"] = serde_json::json!([
        {"system": "http://snomed.info/sct", "code": "GLU"}
    ]);
    let map = CodeMap {
        all: BTreeMap::from([("GLU".to_string(), vec![glucose()])]),
        by_source: BTreeMap::new(),
    };
    map.apply(&mut v, "lab");
    let codings = &v["entry"][0]["resource"]["code"]["coding"];
    assert_eq!(
        codings[0],
        serde_json::json!({"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"})
    );
    assert_eq!(codings[1]["code"], "GLU");
    assert_eq!(
        v["entry"][1]["resource"]["code"]["coding"],
        serde_json::json!([{"system": "http://snomed.info/sct", "code": "GLU"}])
    );
    // Another source's local system is another namespace.
    let mut w = bundle(&[("urn:uuid:a", "GLU")]);
    map.apply(&mut w, "chem");
    assert_eq!(
        w["entry"][0]["resource"]["code"]["coding"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn conditional_entries_become_puts_on_their_deterministic_ids() {
    let mut v: Value = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?identifier=x|1"}},
        {"fullUrl": "urn:uuid:o1", "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"}}, "request": {"method": "PUT", "url": "Observation?identifier=x|2"}}
    ]});
    to_id_updates(&mut v);
    assert_eq!(v["entry"][0]["request"]["url"], "Patient/p1");
    assert_eq!(v["entry"][0]["resource"]["id"], "p1");
    assert_eq!(
        v["entry"][1]["resource"]["subject"]["reference"],
        "Patient/p1"
    );
}

#[test]
fn merged_bundles_keep_order_and_the_same_resource_appears_once_with_the_later_content() {
    let first = bundle(&[("urn:uuid:a", "GLU"), ("urn:uuid:b", "NA")]);
    let second = bundle(&[("urn:uuid:b", "K"), ("urn:uuid:c", "CL")]);
    let merged = merge(&[first, second]);
    let urls: Vec<_> = merged["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["urn:uuid:a", "urn:uuid:b", "urn:uuid:c"]);
    assert_eq!(
        merged["entry"][1]["resource"]["code"]["coding"][0]["code"],
        "K"
    );
    assert_eq!(entry_count(&merged), 3);
}

#[test]
fn a_destination_with_conditional_updates_keeps_the_conditions() {
    let mut v = bundle(&[("urn:uuid:a", "GLU")]);
    let conditional = FhirDestination {
        conditional_updates: true,
        ..Default::default()
    };
    conditional.shape(&mut v, "lab");
    assert_eq!(
        v["entry"][0]["request"]["url"],
        "Observation?identifier=x|urn:uuid:a"
    );
    FhirDestination::default().shape(&mut v, "lab");
    assert_eq!(v["entry"][0]["request"]["url"], "Observation/a");
}

#[test]
fn for_a_fhir_destination_a_payload_routed_as_is_must_be_a_transaction_bundle() {
    let cx = crate::TransformContext {
        fhir: Some(std::sync::Arc::new(FhirDestination::default())),
        ..Default::default()
    };
    let message = |payload: &[u8]| ecko_message::StoredMessage {
        id: 1,
        received_at: 0,
        envelope: ecko_message::Envelope {
            source: "lab".into(),
            payload: payload.to_vec(),
            ..Default::default()
        },
    };
    let e = crate::transform("none", &message(b"MSH|^~\\&|"), &cx).unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    let e = crate::transform("none", &message(br#"{"resourceType":"Patient"}"#), &cx).unwrap_err();
    assert!(e.to_string().contains("not a transaction Bundle"), "{e}");
    let ok = serde_json::to_vec(&bundle(&[("urn:uuid:a", "GLU")])).unwrap();
    let crate::Payload::Bundle(v) = crate::transform("none", &message(&ok), &cx).unwrap() else {
        panic!("a Bundle for a FHIR destination")
    };
    assert_eq!(v["entry"][0]["request"]["url"], "Observation/a", "shaped");
    // For any other destination the bytes go as they came.
    let plain = crate::TransformContext::default();
    assert_eq!(
        crate::transform("none", &message(b"MSH|x"), &plain).unwrap(),
        crate::Payload::Bytes(b"MSH|x".to_vec())
    );
}

#[test]
fn a_unit_bound_loinc_applies_only_to_results_in_that_unit() {
    let loinc = |code: &str, unit: Option<&str>| LoincCoding {
        code: code.into(),
        display: None,
        unit: unit.map(str::to_string),
    };
    let map = CodeMap {
        all: BTreeMap::new(),
        by_source: BTreeMap::from([(
            "lab".to_string(),
            BTreeMap::from([
                (
                    "GLU".to_string(),
                    vec![
                        loinc("14749-6", Some("mmol/L")),
                        loinc("2345-7", Some("mg/dL")),
                    ],
                ),
                ("CREA".to_string(), vec![loinc("14682-9", Some("umol/L"))]),
            ]),
        )]),
    };
    let mut v = bundle(&[
        ("urn:uuid:a", "GLU"),
        ("urn:uuid:b", "GLU"),
        ("urn:uuid:c", "CREA"),
        ("urn:uuid:d", "GLU"),
    ]);
    v["entry"][0]["resource"]["valueQuantity"] =
        serde_json::json!({"value": 5.4, "unit": "mmol/l"});
    v["entry"][1]["resource"]["valueQuantity"] =
        serde_json::json!({"value": 97, "unit": "mg/100mL", "code": "mg/dL"});
    v["entry"][2]["resource"]["valueQuantity"] = serde_json::json!({"value": 1.1, "unit": "mg/dL"});
    map.apply(&mut v, "lab");
    let first = |i: usize| v["entry"][i]["resource"]["code"]["coding"][0]["code"].clone();
    assert_eq!(first(0), "14749-6");
    assert_eq!(first(1), "2345-7", "by the UCUM code");
    // Creatinine in mg/dL is not the umol/L LOINC; a glucose without a
    // unit gets none either.
    assert_eq!(first(2), "CREA");
    assert_eq!(first(3), "GLU");
}
