//! Every FHIR Bundle the transforms make from realistic messages matches its
//! golden file, is valid R4 for fhir.resources 6.4.0, is accepted by a real
//! FHIR server (Medplum's router, which checks the R4 StructureDefinitions),
//! and changes nothing when it is sent again.
//!
//! `ECKO_UPDATE_GOLDEN=1` rewrites the golden files from the current output.

use ecko_message::StoredMessage;
use ecko_tests::fhir::{count, http, validate_with_fhir_resources, FhirServer};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// (sample file, source endpoint, message type, transform)
const SAMPLES: &[(&str, &str, &str, &str)] = &[
    (
        "protocol/src/hl7/testdata/oru_r01_v251.hl7",
        "hema-lis",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_chemistry_v25.hl7",
        "chem-lis",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "protocol/src/hl7/testdata/oul_r22_v27.hl7",
        "micro-lis",
        "OUL^R22",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oul_r22_coag_v251.hl7",
        "coag-mw",
        "OUL^R22",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_micro_two_orders_v251.hl7",
        "micro-lis",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_pathology_pdf_v251.hl7",
        "copath",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_blood_culture_spm_v251.hl7",
        "beaker",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_no_pid_poct_v24.hl7",
        "poct",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/oru_r01_serial_micro_v251.hl7",
        "cobas",
        "ORU^R01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a01_orbis.hl7",
        "adt-orbis",
        "ADT^A01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a01_cerner_roles_visit.hl7",
        "adt-cerner",
        "ADT^A01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a04_epic_v28_participation.hl7",
        "adt-epic",
        "ADT^A04",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a01_medico.hl7",
        "adt-medico",
        "ADT^A01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a02_orbis.hl7",
        "adt-orbis",
        "ADT^A02",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a02_medico.hl7",
        "adt-medico",
        "ADT^A02",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a03_orbis.hl7",
        "adt-orbis",
        "ADT^A03",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a03_medico.hl7",
        "adt-medico",
        "ADT^A03",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a04_orbis.hl7",
        "adt-orbis",
        "ADT^A04",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a04_kisim_full_pid.hl7",
        "adt-kisim",
        "ADT^A04",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a03_soarian_procedures_insurance.hl7",
        "adt-soarian",
        "ADT^A03",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a60_lakeside_adverse_reactions.hl7",
        "adt-lakeside",
        "ADT^A60",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a04_medico.hl7",
        "adt-medico",
        "ADT^A04",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a05_orbis.hl7",
        "adt-orbis",
        "ADT^A05",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a05_medico.hl7",
        "adt-medico",
        "ADT^A05",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a08_orbis.hl7",
        "adt-orbis",
        "ADT^A08",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a08_medico.hl7",
        "adt-medico",
        "ADT^A08",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a11_orbis.hl7",
        "adt-orbis",
        "ADT^A11",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a11_medico.hl7",
        "adt-medico",
        "ADT^A11",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a13_orbis.hl7",
        "adt-orbis",
        "ADT^A13",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a13_medico.hl7",
        "adt-medico",
        "ADT^A13",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a31_orbis.hl7",
        "adt-orbis",
        "ADT^A31",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a31_medico.hl7",
        "adt-medico",
        "ADT^A31",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a40_orbis.hl7",
        "adt-orbis",
        "ADT^A40",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/adt/adt_a40_medico.hl7",
        "adt-medico",
        "ADT^A40",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/oml_o21_epic_timing_v251.hl7",
        "epic-orders",
        "OML^O21",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/orm_o01_nw_medico.hl7",
        "ord-medico",
        "ORM^O01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/orm_o01_ca_medico.hl7",
        "ord-medico",
        "ORM^O01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/orm_o01_sc_orbis.hl7",
        "ord-orbis",
        "ORM^O01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/oml_o21_nw_orbis.hl7",
        "ord-orbis",
        "OML^O21",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/oml_o21_xo_medico.hl7",
        "ord-medico",
        "OML^O21",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/orm_o01_rxo_orbis.hl7",
        "rx-orbis",
        "ORM^O01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/orm_o01_rxo_dc_medico.hl7",
        "rx-medico",
        "ORM^O01",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/rde_o11_orbis.hl7",
        "rx-orbis",
        "RDE^O11",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/orders/rde_o11_hd_medico.hl7",
        "rx-medico",
        "RDE^O11",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s12_orbis.hl7",
        "sched-orbis",
        "SIU^S12",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s12_medico.hl7",
        "sched-medico",
        "SIU^S12",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s13_orbis.hl7",
        "sched-orbis",
        "SIU^S13",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s13_medico.hl7",
        "sched-medico",
        "SIU^S13",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s14_orbis.hl7",
        "sched-orbis",
        "SIU^S14",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s14_medico.hl7",
        "sched-medico",
        "SIU^S14",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s15_orbis.hl7",
        "sched-orbis",
        "SIU^S15",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/scheduling/siu_s15_medico.hl7",
        "sched-medico",
        "SIU^S15",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/financial/dft_p03_orbis.hl7",
        "fin-orbis",
        "DFT^P03",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/financial/dft_p03_medico.hl7",
        "fin-medico",
        "DFT^P03",
        "hl7v2-fhir",
    ),
    (
        "tests/data/fhir/templates/oru_glucose_meter_v23.hl7",
        "poc-glucose",
        "ORU^R01",
        "template:config/templates/hl7-glucose-meter.json.j2",
    ),
    (
        "tests/data/fhir/templates/urinalysis_u2400.astm",
        "u2400",
        "ASTM",
        "template:config/templates/astm-urinalysis.json.j2",
    ),
    (
        "protocol/src/astm/testdata/chemistry_results.astm",
        "c311",
        "ASTM",
        "astm-fhir",
    ),
    (
        "tests/data/fhir/hematology_results.astm",
        "xs500",
        "ASTM",
        "astm-fhir",
    ),
    (
        "tests/data/fhir/hematology_sysmex_xn.astm",
        "xn350",
        "ASTM",
        "astm-fhir",
    ),
    (
        "tests/data/fhir/immuno_cobas_e411.astm",
        "e411",
        "ASTM",
        "astm-fhir",
    ),
    (
        "tests/data/fhir/chemistry_beckman_dilution.astm",
        "au5800",
        "ASTM",
        "astm-fhir",
    ),
];

fn bundles() -> Vec<(PathBuf, serde_json::Value)> {
    let berlin = ecko_fhir::TransformContext::new(
        jiff::tz::TimeZone::get("Europe/Berlin").expect("the time zone database"),
    );
    SAMPLES
        .iter()
        .map(|(file, source, ty, transform)| {
            let payload = std::fs::read(root().join(file)).unwrap();
            let msg = StoredMessage {
                id: 7,
                received_at: 1_773_000_000_000,
                envelope: ecko_message::Envelope {
                    source: source.to_string(),
                    dedup_key: Some(format!("{source}-key")),
                    message_type: ty.to_string(),
                    content_type: "text/plain".into(),
                    control_id: None,
                    patient_id: None,
                    payload,
                    ack: None,
                    hints: Default::default(),
                },
            };
            // Templates are named by path, as a route's `template` key is.
            let transform = match transform.strip_prefix("template:") {
                Some(path) => format!("template:{}", root().join(path).display()),
                None => transform.to_string(),
            };
            let out = ecko_fhir::apply(&transform, &msg, &berlin)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let name = PathBuf::from(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let golden = root()
                .join("tests/data/fhir/golden")
                .join(format!("{name}.bundle.json"));
            (golden, serde_json::from_slice(&out).unwrap())
        })
        .collect()
}

#[test]
fn each_sample_maps_to_its_golden_bundle() {
    let update = std::env::var_os("ECKO_UPDATE_GOLDEN").is_some();
    for (golden, bundle) in bundles() {
        let pretty = serde_json::to_string_pretty(&bundle).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &pretty).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} missing; run with ECKO_UPDATE_GOLDEN=1",
                golden.display()
            )
        });
        assert_eq!(pretty, expected, "{} differs", golden.display());
    }
}

#[test]
fn every_bundle_is_valid_for_fhir_resources_and_for_a_real_server_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let all = bundles();
    for (i, (_, b)) in all.iter().enumerate() {
        let f = dir.path().join(format!("{i}.json"));
        std::fs::write(&f, serde_json::to_vec(b).unwrap()).unwrap();
        files.push(f);
    }
    validate_with_fhir_resources(&files).unwrap();

    // As the sink sends them by default: PUTs on the deterministic ids.
    let server = FhirServer::start(0, &[]);
    for (golden, b) in &all {
        let mut b = b.clone();
        ecko_fhir::shape::to_id_updates(&mut b);
        let body = serde_json::to_vec(&b).unwrap();
        let (status, text) = http("POST", &server.base, Some(&body));
        assert_eq!(status, 200, "{}: {text}", golden.display());
    }
    let before = counts(&server.base);
    let expected_obs: u64 = all
        .iter()
        .map(|(_, b)| {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == "Observation")
                .count() as u64
        })
        .sum();
    assert_eq!(before[1], expected_obs);
    for (_, b) in &all {
        let mut b = b.clone();
        ecko_fhir::shape::to_id_updates(&mut b);
        let (status, _) = http("POST", &server.base, Some(&serde_json::to_vec(&b).unwrap()));
        assert_eq!(status, 200);
    }
    assert_eq!(
        before,
        counts(&server.base),
        "a second delivery must not add resources"
    );
}

/// The test server is a real validator, not a store: an Observation without
/// its required `code` is refused with Medplum's OperationOutcome, alone and
/// inside a transaction, and nothing of the transaction is stored.
#[test]
fn the_test_server_refuses_a_resource_that_breaks_the_r4_structure() {
    let server = FhirServer::start(0, &[]);
    let no_code = serde_json::json!({"resourceType": "Observation", "status": "final"});
    let (status, text) = http(
        "POST",
        &format!("{}/Observation", server.base),
        Some(&serde_json::to_vec(&no_code).unwrap()),
    );
    assert_eq!(status, 400, "{text}");
    let outcome: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Observation.code",
        "{text}"
    );

    let transaction = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8d3c1f4e-0a53-4a83-9d1e-5b8f0e1e2a01",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]},
         "request": {"method": "PUT", "url": "Patient?identifier=urn:x|1"}},
        {"fullUrl": "urn:uuid:8d3c1f4e-0a53-4a83-9d1e-5b8f0e1e2a02",
         "resource": {"resourceType": "Observation", "status": "final",
                      "subject": {"reference": "urn:uuid:8d3c1f4e-0a53-4a83-9d1e-5b8f0e1e2a01"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (status, text) = http(
        "POST",
        &server.base,
        Some(&serde_json::to_vec(&transaction).unwrap()),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("Bundle.entry[1].resource.code"), "{text}");
    assert_eq!(count(&server.base, "Patient"), 0);
    assert_eq!(count(&server.base, "Observation"), 0);

    // An empty string is not a value in FHIR JSON either.
    let blank = serde_json::json!({"resourceType": "Observation", "status": "final",
                                   "code": {"text": "Glucose"}, "valueString": ""});
    let (status, text) = http(
        "POST",
        &format!("{}/Observation", server.base),
        Some(&serde_json::to_vec(&blank).unwrap()),
    );
    assert_eq!(status, 400, "{text}");
}

/// Paths in `v` that hold `""`, `{}` or `[]`.
fn blanks(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if s.trim().is_empty() => out.push(format!("{path} = {v}")),
        serde_json::Value::Object(o) if o.is_empty() => out.push(format!("{path} = {{}}")),
        serde_json::Value::Array(a) if a.is_empty() => out.push(format!("{path} = []")),
        serde_json::Value::Object(o) => {
            for (k, child) in o {
                blanks(child, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                blanks(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Blank fields create nothing: no Bundle from any sample holds an empty
/// string, an empty object or an empty array anywhere.
#[test]
fn no_bundle_holds_an_empty_string_object_or_array() {
    let mut found = Vec::new();
    for (golden, bundle) in bundles() {
        let name = golden.file_name().unwrap().to_string_lossy().to_string();
        blanks(&bundle, &name, &mut found);
    }
    assert!(found.is_empty(), "blank values:\n{}", found.join("\n"));
    // The scan itself finds what it looks for.
    let mut probe = Vec::new();
    blanks(
        &serde_json::json!({"a": "", "b": {}, "c": [], "d": [{"e": " "}]}),
        "probe",
        &mut probe,
    );
    assert_eq!(probe.len(), 4, "{probe:?}");
}

/// Sends `b` and returns (status, body).
fn post(base: &str, b: &serde_json::Value) -> (u16, String) {
    http("POST", base, Some(&serde_json::to_vec(b).unwrap()))
}

const TYPES: [&str; 11] = [
    "Patient",
    "Observation",
    "DiagnosticReport",
    "Specimen",
    "ServiceRequest",
    "Device",
    "Encounter",
    "MedicationRequest",
    "Appointment",
    "ChargeItem",
    "Provenance",
];

fn counts(base: &str) -> Vec<u64> {
    TYPES.iter().map(|t| count(base, t)).collect()
}

/// The Bundles as the transforms make them (conditional `PUT
/// Type?identifier=…`, `POST` with `If-None-Exist`), sent to the real
/// server: the first delivery creates, a second finds every resource by its
/// identifier and updates it (200, never 201), nothing is duplicated. Medplum
/// refuses a transaction that has to create through conditional entries
/// when it holds more than 8 entries, which is why the sink's default is the
/// PUT on the deterministic id (README, `conditional_updates`): the same
/// Bundles in that form are accepted whole, and a conditional redelivery
/// afterwards still finds the same resources.
#[test]
fn conditional_entries_find_the_resources_by_identifier_and_duplicate_nothing() {
    let all = bundles();
    let server = FhirServer::start(0, &[]);
    let mut accepted = Vec::new();
    for (golden, b) in &all {
        let (status, text) = post(&server.base, b);
        if b["entry"].as_array().unwrap().len() > 8 {
            assert_eq!(status, 400, "{}: {text}", golden.display());
            assert!(text.contains("strict isolation"), "{text}");
        } else {
            assert_eq!(status, 200, "{}: {text}", golden.display());
            accepted.push((golden, b));
        }
    }
    assert!(accepted.len() > 30, "{}", accepted.len());
    let before = counts(&server.base);
    let mut conditional = 0;
    for (golden, b) in &accepted {
        let (status, text) = post(&server.base, b);
        assert_eq!(status, 200, "{}: {text}", golden.display());
        let response: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entries = b["entry"].as_array().unwrap();
        for (e, r) in entries.iter().zip(response["entry"].as_array().unwrap()) {
            let url = e["request"]["url"].as_str().unwrap();
            if url.contains('?') || e["request"]["ifNoneExist"].is_string() {
                conditional += 1;
                assert_eq!(r["response"]["status"], "200", "{}: {r}", golden.display());
            }
        }
    }
    assert!(conditional > 100, "{conditional}");
    assert_eq!(
        before,
        counts(&server.base),
        "a conditional resend adds nothing"
    );

    // Both forms name the same resources: after the PUTs on ids, the
    // conditional form of every Bundle updates them in place.
    let ids = FhirServer::start(0, &[]);
    for (golden, b) in &all {
        let mut b = b.clone();
        ecko_fhir::shape::to_id_updates(&mut b);
        let (status, text) = post(&ids.base, &b);
        assert_eq!(status, 200, "{}: {text}", golden.display());
    }
    let before = counts(&ids.base);
    let mut updated = 0;
    for (golden, b) in &all {
        let (status, text) = post(&ids.base, b);
        let large = b["entry"].as_array().unwrap().len() > 8;
        match status {
            200 => updated += 1,
            400 if large && text.contains("strict isolation") => {}
            _ => panic!("{}: {status} {text}", golden.display()),
        }
    }
    assert!(updated > 30, "{updated}");
    assert_eq!(before, counts(&ids.base));
}

/// If-None-Exist: the Device an OBX names by identifier alone is created
/// once and then left as the server has it.
#[test]
fn a_device_known_only_by_identifier_is_created_once_and_then_left_alone() {
    let server = FhirServer::start(0, &[]);
    let bundle = |model: Option<&str>| {
        let mut device = serde_json::json!({"resourceType": "Device", "identifier": [
            {"system": "urn:ecko-edge:assigner:ACME:device", "value": "DEV-1"}]});
        if let Some(m) = model {
            device["modelNumber"] = serde_json::json!(m);
        }
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:9a5e0c7e-1b2f-4f3c-8d8e-0c1f2e3d4a01", "resource": device,
             "request": {"method": "POST", "url": "Device",
                         "ifNoneExist": "identifier=urn:ecko-edge:assigner:ACME:device|DEV-1"}}]})
    };
    let (status, first) = post(&server.base, &bundle(Some("XN-1000")));
    assert_eq!(status, 200, "{first}");
    assert!(first.contains(r#""status":"201"#), "{first}");
    let (status, second) = post(&server.base, &bundle(None));
    assert_eq!(status, 200, "{second}");
    assert_eq!(count(&server.base, "Device"), 1);
    let (_, found) = http("GET", &format!("{}/Device", server.base), None);
    assert!(
        found.contains("XN-1000"),
        "the richer Device is kept: {found}"
    );
}
