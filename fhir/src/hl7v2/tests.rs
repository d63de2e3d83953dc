use super::*;
use crate::r4::*;

fn stored(source: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage {
        id: 1,
        received_at: 1_773_477_015_000,
        envelope: ecko_message::Envelope {
            source: source.into(),
            dedup_key: None,
            message_type: "ORU^R01".into(),
            content_type: "application/hl7-v2".into(),
            control_id: None,
            patient_id: None,
            payload: payload.to_vec(),
            ack: None,
            hints: Default::default(),
        },
    }
}

#[test]
fn an_oru_r01_becomes_patient_request_report_and_one_observation_per_obx() {
    let text = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");
    let bundle = to_bundle(&stored("lab", text), &TransformContext::default()).unwrap();
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
    let b = to_bundle(&stored("his", a03), &TransformContext::default()).unwrap();
    let [Resource::Encounter(e)] = resources(&b, "Encounter")[..] else {
        panic!()
    };
    assert_eq!(e.status, "finished");
    let period = e.period.as_ref().unwrap();
    assert_eq!(period.end.as_deref(), Some("2026-04-05T10:00:00+00:00"));
    assert_eq!(e.location[0].status.as_deref(), Some("completed"));

    let a13 = String::from_utf8_lossy(a03).replace("A03", "A13");
    let b = to_bundle(&stored("his", a13.as_bytes()), &TransformContext::default()).unwrap();
    let [Resource::Encounter(e)] = resources(&b, "Encounter")[..] else {
        panic!()
    };
    assert_eq!(e.status, "in-progress");
    assert_eq!(e.period.as_ref().unwrap().end, None);
}

#[test]
fn a_merge_links_the_surviving_and_the_merged_patient_both_ways() {
    let a40 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A40|9|P|2.5\rEVN|A40|20260405100000\rPID|||77^^^H||Roe^Jo\rMRG|66^^^H\r";
    let b = to_bundle(&stored("his", a40), &TransformContext::default()).unwrap();
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
    let b = to_bundle(&stored("his", a08), &TransformContext::default()).unwrap();
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
        let b = to_bundle(
            &stored("his", text.as_bytes()),
            &TransformContext::default(),
        )
        .unwrap();
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
    let b = to_bundle(&stored("his", s15), &TransformContext::default()).unwrap();
    let [Resource::Appointment(a)] = resources(&b, "Appointment")[..] else {
        panic!()
    };
    assert_eq!(a.status, "cancelled");
    assert_eq!(a.end.as_deref(), Some("2026-04-17T11:50:00+00:00"));
}

#[test]
fn an_ft1_without_a_code_takes_its_description_and_one_with_neither_is_skipped() {
    let dft = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||DFT^P03|9|P|2.3\rPID|||77^^^H\rFT1|1|||||||Cast\rFT1|2\r";
    let b = to_bundle(&stored("his", dft), &TransformContext::default()).unwrap();
    let charges = resources(&b, "ChargeItem");
    let [Resource::ChargeItem(c)] = charges[..] else {
        panic!("{charges:?}")
    };
    assert_eq!(c.code.text.as_deref(), Some("Cast"));
}

fn oru(segments: &str) -> Bundle {
    let text = format!(
        "MSH|^~\\&|LAB|L|ECKO|H|20260405100000||ORU^R01|9|P|2.5\r{}\r",
        segments.replace('\n', "\r")
    );
    to_bundle(
        &stored("lab", text.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap()
}

fn observations(b: &Bundle) -> Vec<&Observation> {
    b.entry
        .iter()
        .filter_map(|e| match &e.resource {
            Resource::Observation(o) => Some(o),
            _ => None,
        })
        .collect()
}

#[test]
fn a_blank_or_null_result_value_makes_an_observation_without_a_value() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|CBC^CBC^L\nOBX|1|NM|K^K^L||\"\"|mmol/L||||X\nOBX|2|ST|C^C^L||   ||||||F\nOBX|3|TX|T^T^L||\"\"~  ||||||F\nOBX|4|NM|N^N^L||||||||F");
    for o in observations(&b) {
        let v = serde_json::to_value(o).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert!(
            !keys.iter().any(|k| k.starts_with("value")),
            "no value[x] from a blank OBX-5: {v}"
        );
    }
}

#[test]
fn a_structured_numeric_with_words_for_numbers_becomes_a_string_never_an_empty_range() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|X^X^L\nOBX|1|SN|A^A^L||^low^-^high||||||F\nOBX|2|SN|B^B^L||^1^:^n.d.||||||F\nOBX|3|SN|C^C^L||^^-^||||||F\nOBX|4|SN|D^D^L||^2^+||||||F\nOBX|5|SN|E^E^L||^1^-^||||||F");
    let obs = observations(&b);
    assert_eq!(obs[0].value_string.as_deref(), Some("low-high"));
    assert!(obs[0].value_range.is_none());
    assert_eq!(obs[1].value_string.as_deref(), Some("1:n.d."));
    assert!(obs[1].value_ratio.is_none());
    assert!(obs[2].value_string.is_none() && obs[2].value_range.is_none());
    assert_eq!(obs[3].value_string.as_deref(), Some("2+"));
    let range = obs[4].value_range.as_ref().unwrap();
    assert!(range.low.is_some() && range.high.is_none());
}

#[test]
fn results_without_a_patient_keep_report_and_observations_but_no_service_request() {
    let b = oru("OBR|1|P1|F1|X^X^L|||20260405090000\nOBX|1|NM|K^K^L||4.1|mmol/L|||||F");
    assert!(resources(&b, "ServiceRequest").is_empty());
    assert_eq!(resources(&b, "Patient").len(), 0);
    let [Resource::DiagnosticReport(r)] = resources(&b, "DiagnosticReport")[..] else {
        panic!()
    };
    assert!(r.subject.is_none() && r.based_on.is_empty());
    assert_eq!(observations(&b).len(), 1);
}

#[test]
fn a_second_order_without_its_own_specimen_does_not_take_the_first_ones() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|A^A^L\nOBX|1|NM|K^K^L||4.1|mmol/L|||||F\nSPM|1|S1||BLD\nOBR|2|P2|F2|B^B^L\nOBX|1|NM|NA^NA^L||140|mmol/L|||||F\nOBR|3|P3|F3|C^C^L|||20260405090000\nOBX|1|NM|CL^CL^L||101|mmol/L|||||F");
    let specimens: Vec<_> = b
        .entry
        .iter()
        .filter(|e| e.resource.type_name() == "Specimen")
        .map(|e| e.full_url.clone())
        .collect();
    assert_eq!(specimens.len(), 2, "S1 and the one OBR-7 of order 3 gives");
    let obs = observations(&b);
    assert_eq!(
        obs[0].specimen.as_ref().unwrap().reference.as_deref(),
        Some(specimens[0].as_str())
    );
    assert!(obs[1].specimen.is_none(), "order 2 has no specimen");
    assert_eq!(
        obs[2].specimen.as_ref().unwrap().reference.as_deref(),
        Some(specimens[1].as_str())
    );
}

#[test]
fn an_oul_specimen_applies_to_the_orders_that_follow_it_and_its_own_obx_describe_it() {
    let text = "MSH|^~\\&|LAB|L|ECKO|H|20260405100000||OUL^R22|9|P|2.5\rPID|||77^^^H\rSPM|1|S1||BLD\rOBX|1|NM|VOL^Volume^L||2|mL|||||F\rOBR|1|P1|F1|A^A^L\rOBX|1|NM|K^K^L||4.1|mmol/L|||||F\rSPM|2|S2||SER\rOBR|2|P2|F2|B^B^L\rOBX|1|NM|NA^NA^L||140|mmol/L|||||F\r";
    let b = to_bundle(
        &stored("lab", text.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap();
    let obs = observations(&b);
    assert_eq!(obs.len(), 3);
    let specimen_of = |o: &Observation| o.specimen.clone().unwrap().reference.unwrap();
    assert_eq!(
        obs[0].identifier[0].value.as_deref(),
        Some("specimen/S1/VOL")
    );
    assert_eq!(specimen_of(obs[0]), specimen_of(obs[1]));
    assert_ne!(specimen_of(obs[1]), specimen_of(obs[2]));
    let [Resource::DiagnosticReport(first), _] = resources(&b, "DiagnosticReport")[..] else {
        panic!()
    };
    assert_eq!(first.result.len(), 1, "the specimen's own OBX is no result");
}

#[test]
fn an_obx_device_known_only_by_identifier_is_created_only_if_absent() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|A^A^L\nOBX|1|NM|K^K^L||4.1|mmol/L|||||F|||||7^Roe^Ann||DEV-1^ACME\nOBX|2|NM|NA^NA^L||140|mmol/L|||||F|||||||DEV-1^ACME");
    let devices: Vec<_> = b
        .entry
        .iter()
        .filter(|e| e.resource.type_name() == "Device")
        .collect();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].request.method, "POST");
    assert_eq!(
        devices[0].request.if_none_exist.as_deref(),
        Some("identifier=urn:ecko-edge:assigner:ACME:device|DEV-1")
    );
    let obs = observations(&b);
    assert_eq!(obs[0].performer[0].display.as_deref(), Some("Ann Roe"));
    assert_eq!(
        obs[1].device.as_ref().unwrap().reference.as_deref(),
        Some(devices[0].full_url.as_str())
    );
}

#[test]
fn phone_numbers_and_emails_get_their_use_and_system_from_the_xtn() {
    let a08 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|9|P|2.5\rPID|||77^^^H||Roe^Jo||||||||^PRN^PH^^49^30^1234567~^NET^Internet^jo@example.org~^ORN^CP^^^^0171 555|^WPN^FX^^^40^999^12\r";
    let b = to_bundle(&stored("his", a08), &TransformContext::default()).unwrap();
    let [Resource::Patient(p)] = resources(&b, "Patient")[..] else {
        panic!()
    };
    let t: Vec<_> = p
        .telecom
        .iter()
        .map(|c| {
            (
                c.system.as_deref().unwrap(),
                c.use_.as_deref(),
                c.value.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        t,
        [
            ("phone", Some("home"), "+49 30 1234567"),
            ("email", None, "jo@example.org"),
            ("phone", Some("mobile"), "0171 555"),
            ("fax", Some("work"), "40 999 ext. 12"),
        ]
    );
}

#[test]
fn the_merged_patient_keeps_the_persons_demographics_and_takes_the_prior_name() {
    let a40 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A40|9|P|2.5\rEVN|A40|20260405100000\rPID|||77^^^H||Roe^Jo||19700101|F\rMRG|66^^^H||||||Smith^Jo\r";
    let b = to_bundle(&stored("his", a40), &TransformContext::default()).unwrap();
    let [Resource::Patient(merged), Resource::Patient(surviving)] = resources(&b, "Patient")[..]
    else {
        panic!()
    };
    assert_eq!(merged.identifier[0].value.as_deref(), Some("66"));
    assert_eq!(merged.birth_date.as_deref(), Some("1970-01-01"));
    assert_eq!(merged.gender.as_deref(), Some("female"));
    assert_eq!(merged.name[0].family.as_deref(), Some("Smith"));
    assert_eq!(surviving.name[0].family.as_deref(), Some("Roe"));
    assert_eq!(merged.link.len(), 1);
}

#[test]
fn a_pharmacy_order_without_a_medication_is_not_sent_and_says_why() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||RDE^O11|9|P|2.5\rPID|||77^^^H\rORC|NW|P1^HIS\rRXE|^^^20260405|\"\"|100||mg\r";
    let err = to_bundle(
        &stored("his", text.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no medication"), "{err}");
    let both = format!("{text}ORC|NW|P2^HIS\rRXE|^^^20260405|ASA^Aspirin^L|100||mg\r");
    let b = to_bundle(
        &stored("his", both.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap();
    assert_eq!(resources(&b, "MedicationRequest").len(), 1);
}

#[test]
fn a_booked_appointment_without_times_is_only_proposed() {
    let s12 = b"MSH|^~\\&|HIS|H|ECKO|L|20260405100000||SIU^S12|9|P|2.3\rSCH|A-1|||||||||||||||||||||||||Booked\rPID|||77^^^H\r";
    let b = to_bundle(&stored("his", s12), &TransformContext::default()).unwrap();
    let [Resource::Appointment(a)] = resources(&b, "Appointment")[..] else {
        panic!()
    };
    assert_eq!(a.status, "proposed");
    assert!(a.start.is_none() && a.end.is_none());
}

fn family_name(b: &Bundle) -> String {
    let [Resource::Patient(p)] = resources(b, "Patient")[..] else {
        panic!("one Patient")
    };
    p.name[0].family.clone().unwrap_or_default()
}

#[test]
fn a_message_without_msh18_is_read_in_the_charset_the_source_used() {
    let a08 =
        "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|9|P|2.5\rPID|||77^^^H||Müller^Jürgen\r";
    let mut m = stored("his", a08.as_bytes());
    m.envelope.hints.charset = Some("UNICODE UTF-8".into());
    assert_eq!(
        family_name(&to_bundle(&m, &TransformContext::default()).unwrap()),
        "Müller"
    );
    // Without the hint the parser's own fallback (windows-1252) applies:
    // what every message was read as before the source recorded its charset.
    m.envelope.hints.charset = None;
    assert_eq!(
        family_name(&to_bundle(&m, &TransformContext::default()).unwrap()),
        "MÃ¼ller"
    );
}

#[test]
fn times_without_an_offset_are_read_in_the_zone_the_message_arrived_in() {
    let oru = b"MSH|^~\\&|LIS|LAB|EHR|HOSP|20260314093000||ORU^R01|42|P|2.5.1\rPID|1||123^^^H^MR||Doe^J\rOBR|1|ORD1|SPC1|718-7^Hb^LN|||202603140900\rOBX|1|NM|718-7^Hb^LN||13.9|g/dL|||||F|||202603140929\r";
    let mut m = stored("lab", oru);
    let effective = |m: &StoredMessage| {
        let b = to_bundle(m, &TransformContext::default()).unwrap();
        let [Resource::Observation(o)] = resources(&b, "Observation")[..] else {
            panic!("one Observation")
        };
        o.effective_date_time.clone().unwrap_or_default()
    };
    m.envelope.hints.time_zone = Some("Europe/Berlin".into());
    assert_eq!(effective(&m), "2026-03-14T09:29:00+01:00");
    // A message journalled before zones were recorded takes the site's
    // zone now (UTC in this context).
    m.envelope.hints.time_zone = None;
    assert_eq!(effective(&m), "2026-03-14T09:29:00+00:00");
}

fn key_of(o: &Observation) -> String {
    o.identifier[0].value.clone().unwrap_or_default()
}

#[test]
fn serial_readings_of_one_code_are_each_an_observation_with_an_id_of_their_own() {
    // A glucose tolerance curve and a repeated potassium: same OBX-3, told
    // apart only by OBX-1 (and OBX-4 for the sub-ids).
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|OGTT^OGTT^L\nOBX|1|NM|GLU^Glucose^L|1|5.1|mmol/L|||||F|||20260405080000\nOBX|2|NM|GLU^Glucose^L|1|7.9|mmol/L|||||F|||20260405090000\nOBX|3|NM|GLU^Glucose^L|1|6.2|mmol/L|||||F|||20260405100000\nOBX|4|NM|K^Potassium^L||4.1|mmol/L|||||F\nOBX|5|NM|K^Potassium^L||4.3|mmol/L|||||F\nOBX|6|NM|NA^Sodium^L||140|mmol/L|||||F");
    let obs = observations(&b);
    let values: Vec<f64> = obs
        .iter()
        .map(|o| {
            o.value_quantity
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(values, [5.1, 7.9, 6.2, 4.1, 4.3, 140.0]);
    let keys: Vec<String> = obs.iter().map(|o| key_of(o)).collect();
    assert_eq!(
        keys,
        [
            "F1/GLU/1#1",
            "F1/GLU/1#2",
            "F1/GLU/1#3",
            "F1/K#4",
            "F1/K#5",
            "F1/NA"
        ]
    );
    let Resource::DiagnosticReport(report) = resources(&b, "DiagnosticReport")[0] else {
        panic!()
    };
    assert_eq!(report.result.len(), 6);
    let urls: std::collections::BTreeSet<_> = b.entry.iter().map(|e| &e.full_url).collect();
    assert_eq!(urls.len(), b.entry.len(), "every entry has its own id");
}

#[test]
fn the_ids_of_repeated_results_are_the_same_for_a_resend_and_a_lone_result_keeps_its_id() {
    let segments = "PID|||77^^^H\nOBR|1|P1|F1|X^X^L\nOBX|1|NM|GLU^Glucose^L||5.1|mmol/L|||||F\nOBX|2|NM|GLU^Glucose^L||7.9|mmol/L|||||F\nOBX|3|NM|K^K^L|2|4.1|mmol/L|||||F";
    let urls = |b: &Bundle| {
        b.entry
            .iter()
            .map(|e| e.full_url.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(urls(&oru(segments)), urls(&oru(segments)));
    let keys: Vec<String> = observations(&oru(segments))
        .iter()
        .map(|o| key_of(o))
        .collect();
    // A code that occurs once keeps the id it always had: prefix/code/sub.
    assert_eq!(keys, ["F1/GLU#1", "F1/GLU#2", "F1/K/2"]);
}

#[test]
fn repeated_results_without_set_ids_are_told_apart_by_their_position() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|X^X^L\nOBX||NM|GLU^Glucose^L||5.1|mmol/L|||||F\nOBX||NM|GLU^Glucose^L||7.9|mmol/L|||||F");
    let keys: Vec<String> = observations(&b).iter().map(|o| key_of(o)).collect();
    assert_eq!(keys, ["F1/GLU#obx1", "F1/GLU#obx2"]);
}

#[test]
fn an_observation_id_repeated_across_two_orders_does_not_merge_their_results() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|X^X^L\nOBX|1|NM|GLU^Glucose^L||5.1|mmol/L|||||F||||||||||OBS-7^LAB\nOBR|2|P2|F2|Y^Y^L\nOBX|1|NM|NA^Sodium^L||140|mmol/L|||||F||||||||||OBS-7^LAB\nOBX|2|NM|K^K^L||4.0|mmol/L|||||F||||||||||OBS-8^LAB");
    let obs = observations(&b);
    let keys: Vec<String> = obs.iter().map(|o| key_of(o)).collect();
    // Each order's result kept, told apart by the order; a key of one
    // order only stays as sent.
    assert_eq!(keys, ["OBS-7#order1", "OBS-7#order2", "OBS-8"]);
    let urls: std::collections::HashSet<&str> =
        b.entry.iter().map(|e| e.full_url.as_str()).collect();
    assert_eq!(urls.len(), b.entry.len(), "no two entries share an id");
}

#[test]
fn an_observation_id_the_sender_repeats_does_not_merge_two_results() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|X^X^L\nOBX|1|NM|GLU^Glucose^L||5.1|mmol/L|||||F||||||||||OBS-7^LAB\nOBX|2|NM|GLU^Glucose^L||7.9|mmol/L|||||F||||||||||OBS-7^LAB\nOBX|3|NM|K^K^L||4.0|mmol/L|||||F||||||||||OBS-8^LAB");
    let keys: Vec<String> = observations(&b).iter().map(|o| key_of(o)).collect();
    // Told apart by set id; an OBX-21 that occurs once stays as sent.
    assert_eq!(keys, ["OBS-7#1", "OBS-7#2", "OBS-8"]);
    let urls: std::collections::HashSet<&str> =
        b.entry.iter().map(|e| e.full_url.as_str()).collect();
    assert_eq!(urls.len(), b.entry.len());
}

#[test]
fn repeated_specimen_observations_of_an_oul_are_kept_apart_too() {
    let text = "MSH|^~\\&|LAB|L|ECKO|H|20260405100000||OUL^R22|9|P|2.5.1\rPID|||77^^^H\rSPM|1|S1||BLD\rOBX|1|NM|TEMP^Temperature^L||4|Cel|||||F\rOBX|2|NM|TEMP^Temperature^L||5|Cel|||||F\rOBR|1|P1|F1|X^X^L\r";
    let b = to_bundle(
        &stored("lab", text.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap();
    let keys: Vec<String> = observations(&b).iter().map(|o| key_of(o)).collect();
    assert_eq!(keys, ["specimen/S1/TEMP#1", "specimen/S1/TEMP#2"]);
}

#[test]
fn every_repetition_of_a_coded_or_numeric_value_is_kept_in_order_as_a_component() {
    // Microbiology: several organisms in one OBX-5; a device sending
    // several readings in one field.
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|CULT^Culture^L\nOBX|1|CWE|ORG^Organism^L||ECOLI^E. coli^L~KLPN^K. pneumoniae^L~SAUR^S. aureus^L||||||F\nOBX|2|NM|HR^Heart rate^L||72~75~\"\"~80|/min|||||F\nOBX|3|TX|RPT^Report^L||Line one~Line two||||||F\nOBX|4|CWE|ORG2^Organism^L||ECOLI^E. coli^L||||||F");
    let obs = observations(&b);
    assert!(
        obs[0].value_codeable_concept.is_none(),
        "value in the components only"
    );
    let organisms: Vec<_> = obs[0]
        .component
        .iter()
        .map(|c| {
            assert_eq!(c.code, obs[0].code);
            c.value_codeable_concept.as_ref().unwrap().coding[0]
                .code
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(organisms, ["ECOLI", "KLPN", "SAUR"]);
    let rates: Vec<f64> = obs[1]
        .component
        .iter()
        .map(|c| {
            c.value_quantity
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        rates,
        [72.0, 75.0, 80.0],
        "the null repetition makes nothing"
    );
    assert_eq!(obs[2].value_string.as_deref(), Some("Line one\nLine two"));
    assert!(obs[2].component.is_empty());
    assert!(obs[3].component.is_empty());
    assert_eq!(
        obs[3].value_codeable_concept.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("ECOLI")
    );
}

#[test]
fn coding_systems_are_named_in_any_case_and_only_unclaimed_names_stay_local() {
    let b = oru("PID|||77^^^H\nOBR|1|P1|F1|CBC^CBC^ln\nOBX|1|NM|2345-7^Glucose^Loinc^GLU^Glucose^99LAB||5.1|mmol/L|||||F\nOBX|2|CWE|I^Interp^L||E11.9^Diabetes^I10C||||||F\nOBX|3|CWE|S^Sex^L||F^Female^hl70001||||||F");
    let obs = observations(&b);
    let glucose = &obs[0].code.coding;
    assert_eq!(glucose[0].system.as_deref(), Some(LOINC));
    assert_eq!(
        glucose[1].system.as_deref(),
        Some(local_system("lab", "code").as_str()),
        "a name no standard system claims is the sender's own"
    );
    let value = |o: &Observation| {
        o.value_codeable_concept.as_ref().unwrap().coding[0]
            .system
            .clone()
    };
    assert_eq!(
        value(obs[1]).as_deref(),
        Some("http://hl7.org/fhir/sid/icd-10-cm")
    );
    assert_eq!(
        value(obs[2]).as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0001")
    );
}

#[test]
fn pid_fields_past_the_name_become_the_patients_extensions_status_language_and_births() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A04|77|P|2.5.1\rEVN|A04|20260405100000\rPID|||P-1^^^H||Meyer^Anna|Huber|19840312073000|F|||||||DE^German^ISO639|D|CAT^Catholic||||||Bern|Y|2|||||Y\rPV1||O\r";
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = "ADT^A04".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let Resource::Patient(p) = &resources(&b, "Patient")[0] else {
        panic!()
    };
    let v = serde_json::to_value(p).unwrap();
    assert_eq!(v["birthDate"], "1984-03-12");
    assert_eq!(
        v["_birthDate"]["extension"][0]["url"],
        "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    );
    assert!(v["_birthDate"]["extension"][0]["valueDateTime"]
        .as_str()
        .unwrap()
        .starts_with("1984-03-12T07:30:00"));
    assert_eq!(
        v["communication"][0]["language"]["coding"][0]["system"],
        "urn:ietf:bcp:47"
    );
    assert_eq!(v["communication"][0]["language"]["coding"][0]["code"], "de");
    assert_eq!(v["communication"][0]["preferred"], true);
    let marital = &v["maritalStatus"]["coding"];
    assert_eq!(
        marital[0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0002"
    );
    assert_eq!(marital[0]["code"], "D");
    assert_eq!(
        marital[1]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
    );
    assert_eq!(marital[1]["code"], "D");
    let ext = |name: &str| {
        v["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == format!("http://hl7.org/fhir/StructureDefinition/{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    assert_eq!(
        ext("patient-religion")["valueCodeableConcept"]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0006"
    );
    assert_eq!(ext("patient-birthPlace")["valueAddress"]["text"], "Bern");
    assert_eq!(ext("patient-mothersMaidenName")["valueString"], "Huber");
    assert_eq!(v["multipleBirthInteger"], 2);
    assert!(v.get("multipleBirthBoolean").is_none(), "one choice only");
    assert_eq!(v["deceasedBoolean"], true);
}

#[test]
fn a_death_date_wins_over_the_death_indicator_and_no_as_multiple_birth_is_false() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|78|P|2.5.1\rEVN|A08|20260405100000\rPID|||P-2^^^H||Roth^Ben||19500101|M||||||||M||||||||N|||||20260401|Y\rPV1||I\r";
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = "ADT^A08".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let Resource::Patient(p) = &resources(&b, "Patient")[0] else {
        panic!()
    };
    let v = serde_json::to_value(p).unwrap();
    assert!(v["deceasedDateTime"].is_string(), "{v}");
    assert!(v.get("deceasedBoolean").is_none(), "one choice only: {v}");
    assert_eq!(v["multipleBirthBoolean"], false);
    assert!(
        v.get("_birthDate").is_none(),
        "no time of day, no birthTime"
    );
    assert_eq!(v["maritalStatus"]["coding"][1]["code"], "M");
}

#[test]
fn next_of_kin_become_the_patients_contacts_and_an_empty_nk1_none() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A01|79|P|2.5.1\rEVN|A01|20260405100000\rPID|||P-3^^^H||Graf^Eva||19700101|F\rNK1|1|Graf^Paul|SPO^Spouse|Seeweg 4^^Zug^ZG^6300^CH|041 710 22 33||N^Next-of-Kin|20200101|||||||M\rNK1|2\rNK1|3||||||C||||||Spitex Zug\rPV1||I|W1^1^A\r";
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = "ADT^A01".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let Resource::Patient(p) = &resources(&b, "Patient")[0] else {
        panic!()
    };
    assert_eq!(
        p.contact.len(),
        2,
        "the empty NK1 names nobody: {:?}",
        p.contact
    );
    let spouse = serde_json::to_value(&p.contact[0]).unwrap();
    assert_eq!(spouse["name"]["family"], "Graf");
    assert_eq!(
        spouse["relationship"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0063"
    );
    assert_eq!(spouse["relationship"][0]["coding"][0]["code"], "SPO");
    assert_eq!(
        spouse["relationship"][1]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0131"
    );
    assert_eq!(spouse["relationship"][1]["coding"][0]["code"], "N");
    assert_eq!(spouse["address"]["city"], "Zug");
    assert_eq!(spouse["telecom"][0]["use"], "home");
    assert_eq!(spouse["gender"], "male");
    assert!(spouse["period"]["start"]
        .as_str()
        .unwrap()
        .starts_with("2020-01-01"));
    let service = serde_json::to_value(&p.contact[1]).unwrap();
    assert_eq!(service["organization"]["display"], "Spitex Zug");
    assert_eq!(service["relationship"][0]["coding"][0]["code"], "C");
}

#[test]
fn each_al1_with_an_allergen_is_an_allergy_of_the_patient_keyed_to_stay_one_resource() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|80|P|2.5.1\rEVN|A08|20260405100000\rPID|||P-4^^^H||Frei^Ida||19600101|F\rPV1||I\rAL1|1|DA|7980^Penicillin G^RXNORM|SV|^Hives~^Wheezing|20150310\rAL1|2|FA|^Peanuts|MI\rAL1|3|MA\r";
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = "ADT^A08".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let allergies = resources(&b, "AllergyIntolerance");
    assert_eq!(
        allergies.len(),
        2,
        "an AL1 without an allergen makes nothing"
    );
    let v = serde_json::to_value(allergies[0]).unwrap();
    assert_eq!(v["category"][0], "medication");
    assert_eq!(v["criticality"], "high");
    assert_eq!(
        v["code"]["coding"][0]["system"],
        "http://www.nlm.nih.gov/research/umls/rxnorm"
    );
    assert_eq!(v["reaction"][0]["manifestation"][1]["text"], "Wheezing");
    assert_eq!(v["reaction"][0]["severity"], "severe");
    assert_eq!(v["clinicalStatus"]["coding"][0]["code"], "active");
    assert!(v["patient"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("urn:uuid:"));
    let food = serde_json::to_value(allergies[1]).unwrap();
    assert_eq!(food["category"][0], "food");
    assert_eq!(food["criticality"], "low");
    assert!(
        food.get("reaction").is_none(),
        "no reaction named, none made"
    );
    // The same allergy in a later message is the same resource.
    let later = text.replace("|80|", "|81|").replace("Wheezing", "Rash");
    let mut m2 = stored("his", later.as_bytes());
    m2.envelope.message_type = "ADT^A08".into();
    let again = to_bundle(&m2, &TransformContext::default()).unwrap();
    let url = |b: &Bundle| {
        b.entry
            .iter()
            .find(|e| e.resource.type_name() == "AllergyIntolerance")
            .map(|e| (e.full_url.clone(), e.request.url.clone()))
    };
    assert_eq!(url(&b), url(&again));
}

#[test]
fn each_dg1_is_a_condition_of_the_patient_in_its_visit() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A03|82|P|2.5.1\rEVN|A03|20260405100000\rPID|||P-5^^^H||Moser^Urs||19550101|M\rPV1||I|W2^3^B||||||||||||||||V-55\rDG1|1||I21.4^Acute subendocardial myocardial infarction^I10||20260401083000|F|||||||||1|^Huber^Anna\rDG1|2||^^^||||||||||||||||||||D\rDG1|3|||Suspected pneumonia||W\r";
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = "ADT^A03".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let conditions = resources(&b, "Condition");
    assert_eq!(
        conditions.len(),
        2,
        "a DG1 without a code or description makes nothing"
    );
    let mi = serde_json::to_value(conditions[0]).unwrap();
    assert_eq!(
        mi["code"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/icd-10"
    );
    assert_eq!(mi["code"]["coding"][0]["code"], "I21.4");
    assert_eq!(mi["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert_eq!(
        mi["category"][0]["coding"][0]["code"],
        "encounter-diagnosis"
    );
    assert!(mi["onsetDateTime"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-01T08:30:00"));
    assert_eq!(mi["asserter"]["display"], "Anna Huber");
    let encounter_url = b
        .entry
        .iter()
        .find(|e| e.resource.type_name() == "Encounter")
        .map(|e| e.full_url.clone())
        .unwrap();
    assert_eq!(mi["encounter"]["reference"], encounter_url);
    let suspected = serde_json::to_value(conditions[1]).unwrap();
    assert_eq!(suspected["code"]["text"], "Suspected pneumonia");
    assert_eq!(
        suspected["verificationStatus"]["coding"][0]["code"],
        "provisional"
    );
}

fn adt(event: &str, text: &str) -> Bundle {
    let mut m = stored("his", text.as_bytes());
    m.envelope.message_type = format!("ADT^{event}");
    to_bundle(&m, &TransformContext::default()).unwrap()
}

fn url_of(b: &Bundle, resource: &serde_json::Value) -> String {
    b.entry
        .iter()
        .find(|e| serde_json::to_value(&e.resource).unwrap() == *resource)
        .map(|e| e.full_url.clone())
        .unwrap()
}

#[test]
fn the_encounter_lists_the_diagnoses_of_its_visit_with_use_and_rank_but_not_a_deleted_one() {
    let b = adt("A03", "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A03|83|P|2.5.1\rPID|||P-5^^^H||Moser^Urs\rPV1||I|W2||||||||||||||||V-55\rDG1|1||I21.4^Acute subendocardial myocardial infarction^I10|||A|||||||||1\rDG1|2||R07.4^Chest pain^I10|||W|||||||||||||||D\rDG1|3||E78.5^Hyperlipidaemia^I10|||F|||||||||2\rPV1||O|OPD||||||||||||||||V-56\rDG1|1||Z09^Follow-up^I10\r");
    let encounters = resources(&b, "Encounter");
    let conditions: Vec<serde_json::Value> = resources(&b, "Condition")
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    let first = serde_json::to_value(encounters[0]).unwrap();
    let listed: Vec<(&str, &str, Option<u64>)> = first["diagnosis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["condition"]["reference"].as_str().unwrap(),
                d["use"]["coding"][0]["code"].as_str().unwrap(),
                d["rank"].as_u64(),
            )
        })
        .collect();
    let (mi, lipids) = (url_of(&b, &conditions[0]), url_of(&b, &conditions[2]));
    assert_eq!(
        listed,
        [(mi.as_str(), "A", Some(1)), (lipids.as_str(), "F", Some(2))],
        "the deleted chest pain is not listed"
    );
    let second = serde_json::to_value(encounters[1]).unwrap();
    assert_eq!(second["diagnosis"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        second["diagnosis"][0]["condition"]["reference"],
        url_of(&b, &conditions[3]),
        "each visit lists only the DG1 after its own PV1"
    );
}

#[test]
fn each_pr1_is_a_procedure_in_its_visit_with_its_performers_and_its_duration_as_a_period() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260406100000||ADT^A03|84|P|2.5.1\rPID|||P-6^^^H||Berger^Eva\rPV1||I|W3||||||||||||||||V-60\rPR1|1||0FT44ZZ^Resection of Gallbladder^I10P||20260406081500+0200|P|95|1221^Kim^Daniel|||1184^Reyes^Carmen||||K80.10^Cholelithiasis^I10||||PRC-1^H\rPR1|2|||Bedside ultrasound|20260405\rPR1|3||BF40ZZZ^Ultrasonography^I10P||20260405110000+0200|D||||||||||||||D\rPR1|4\r";
    let b = adt("A03", text);
    let procedures: Vec<serde_json::Value> = resources(&b, "Procedure")
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .collect();
    assert_eq!(procedures.len(), 3, "a PR1 without a code makes nothing");
    let surgery = &procedures[0];
    assert_eq!(surgery["status"], "completed");
    assert_eq!(surgery["code"]["coding"][0]["code"], "0FT44ZZ");
    assert_eq!(surgery["identifier"][0]["value"], "PRC-1");
    assert_eq!(
        surgery["performedPeriod"],
        serde_json::json!({"start": "2026-04-06T08:15:00+02:00", "end": "2026-04-06T09:50:00+02:00"})
    );
    assert!(surgery.get("performedDateTime").is_none());
    let performers: Vec<(&str, &str)> = surgery["performer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["actor"]["display"].as_str().unwrap(),
                p["function"]["coding"][0]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(performers, [("Daniel Kim", "AN"), ("Carmen Reyes", "PR")]);
    assert_eq!(surgery["reasonCode"][0]["coding"][0]["code"], "K80.10");
    assert_eq!(surgery["category"]["coding"][0]["code"], "P");
    let encounter = b
        .entry
        .iter()
        .find(|e| e.resource.type_name() == "Encounter")
        .unwrap();
    assert_eq!(surgery["encounter"]["reference"], encounter.full_url);
    let bedside = &procedures[1];
    assert_eq!(bedside["code"]["text"], "Bedside ultrasound");
    assert_eq!(bedside["performedDateTime"], "2026-04-05");
    assert_eq!(procedures[2]["status"], "entered-in-error");
    // The same procedure sent again without PR1-19 keeps its one resource.
    let again = adt("A08", &text.replace("ADT^A03|84", "ADT^A08|85"));
    let key = |b: &Bundle| {
        b.entry
            .iter()
            .filter(|e| e.resource.type_name() == "Procedure")
            .map(|e| e.request.url.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&b), key(&again));
}

#[test]
fn each_in1_is_a_coverage_of_the_patient_paid_by_its_insurer() {
    let text = "MSH|^~\\&|HIS|H|ECKO|L|20260406100000||ADT^A04|86|P|2.5.1\rPID|||P-7^^^H||Roth^Ida\rIN1|1|KPLUS^Komfort Plus|ZH-44^^^BAG^NIIP|Krankenkasse Zuerich|Bahnhofplatz 1^^Zuerich^^8001^CH||^WPN^PH^^41^44^1234567|G-9|Stadt Zuerich|||20260101|20261231||PPO|Roth^Ida|SEL|||||1||||||||||||||POL-1\rIN1|2|ZUSATZ|ZH-44^^^BAG^NIIP|||||||||||||Roth^Max|SPO|||||2||||||||||||||POL-2\rIN1|3|HALB\rIN1|4|||Helvetia Direkt|||||||||||||OTH\r";
    let b = adt("A04", text);
    let coverages: Vec<serde_json::Value> = resources(&b, "Coverage")
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    assert_eq!(coverages.len(), 3, "an IN1 naming no insurer makes nothing");
    let patient = b
        .entry
        .iter()
        .find(|e| e.resource.type_name() == "Patient")
        .unwrap()
        .full_url
        .clone();
    let main = &coverages[0];
    assert_eq!(main["identifier"][0]["value"], "POL-1");
    assert_eq!(main["beneficiary"]["reference"], patient);
    assert_eq!(
        main["subscriber"]["reference"], patient,
        "the patient is insured"
    );
    assert_eq!(main["subscriberId"], "POL-1");
    assert_eq!(main["relationship"]["coding"][0]["code"], "self");
    assert_eq!(main["type"]["coding"][0]["code"], "PPO");
    assert_eq!(main["order"], 1);
    assert_eq!(
        main["period"],
        serde_json::json!({"start": "2026-01-01", "end": "2026-12-31"})
    );
    assert_eq!(
        main["class"],
        serde_json::json!([
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan", "display": "Plan"}]}, "value": "KPLUS", "name": "Komfort Plus"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group", "display": "Group"}]}, "value": "G-9", "name": "Stadt Zuerich"}
        ])
    );
    let payor = |c: &serde_json::Value| {
        let url = c["payor"][0]["reference"].as_str().unwrap().to_string();
        let entry = b
            .entry
            .iter()
            .find(|e| e.full_url == url)
            .expect("the payor is in the Bundle");
        serde_json::to_value(&entry.resource).unwrap()
    };
    let insurer = payor(main);
    assert_eq!(insurer["resourceType"], "Organization");
    assert_eq!(insurer["name"], "Krankenkasse Zuerich");
    assert_eq!(insurer["identifier"][0]["value"], "ZH-44");
    assert_eq!(insurer["address"][0]["city"], "Zuerich");
    let spouse = &coverages[1];
    assert!(
        spouse.get("subscriber").is_none(),
        "another insured is not the patient"
    );
    assert_eq!(spouse["relationship"]["coding"][0]["code"], "spouse");
    assert_eq!(
        spouse["payor"], main["payor"],
        "one insurer, one Organization"
    );
    assert_eq!(
        resources(&b, "Organization").len(),
        2,
        "the insurer named twice is one entry"
    );
    let by_name = &coverages[2];
    assert_eq!(payor(by_name)["name"], "Helvetia Direkt");
    assert_eq!(by_name["relationship"]["coding"][0]["code"], "other");
    assert!(by_name.get("subscriberId").is_none());
}

#[test]
fn each_iam_is_an_allergy_with_its_own_id_type_and_statuses_and_a_deleted_one_is_entered_in_error()
{
    let text = include_str!("../../../tests/data/fhir/adt/adt_a60_lakeside_adverse_reactions.hl7");
    let b = adt("A60", text);
    let allergies: Vec<serde_json::Value> = resources(&b, "AllergyIntolerance")
        .into_iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    assert_eq!(allergies.len(), 4);
    let status = |a: &serde_json::Value, which: &str| a[which]["coding"][0]["code"].clone();
    let aspirin = &allergies[0];
    assert_eq!(aspirin["identifier"][0]["value"], "ALG-3301");
    assert_eq!(aspirin["type"], "allergy");
    assert_eq!(aspirin["category"][0], "medication");
    assert_eq!(aspirin["criticality"], "high");
    assert_eq!(aspirin["onsetDateTime"], "2019-03-12");
    assert!(aspirin["recordedDate"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-10T09:30:00"));
    assert_eq!(aspirin["asserter"]["display"], "Jonas Meyer");
    assert_eq!(status(aspirin, "verificationStatus"), "confirmed");
    assert_eq!(status(aspirin, "clinicalStatus"), "active");
    assert_eq!(
        aspirin["reaction"][0]["manifestation"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let deleted = &allergies[1];
    assert_eq!(status(deleted, "verificationStatus"), "entered-in-error");
    assert!(
        deleted.get("clinicalStatus").is_none(),
        "R4 forbids a clinical status beside entered-in-error"
    );
    let lactose = &allergies[2];
    assert_eq!(lactose["type"], "intolerance");
    assert_eq!(status(lactose, "verificationStatus"), "confirmed");
    assert_eq!(status(lactose, "clinicalStatus"), "inactive");
    assert_eq!(lactose["onsetDateTime"], "2004");
    let latex = &allergies[3];
    assert_eq!(status(latex, "verificationStatus"), "unconfirmed");
    assert_eq!(status(latex, "clinicalStatus"), "active");
    assert_eq!(latex["onsetString"], "childhood");
    assert_eq!(latex["category"][0], "environment");
    assert!(
        latex["identifier"][0]["value"]
            .as_str()
            .unwrap()
            .ends_with("/Latex"),
        "without IAM-7 the key is the patient and the allergen, as for AL1"
    );
}

#[test]
fn visit_fields_and_the_roles_after_a_pv1_fill_the_encounter_and_those_before_it_the_patients_doctors(
) {
    let text = include_str!("../../../tests/data/fhir/adt/adt_a01_cerner_roles_visit.hl7");
    let b = adt("A01", text);
    let patient = serde_json::to_value(resources(&b, "Patient")[0]).unwrap();
    let doctors: Vec<&str> = patient["generalPractitioner"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["display"].as_str().unwrap())
        .collect();
    assert_eq!(
        doctors,
        ["Great Neck Family Practice", "Dr. Ngozi Okafor"],
        "PD1-3, PD1-4, and the ROL naming the same doctor once"
    );
    let e = serde_json::to_value(resources(&b, "Encounter")[0]).unwrap();
    let roles: Vec<(String, &str)> = e["participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["type"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                p["individual"]["display"].as_str().unwrap(),
            )
        })
        .collect();
    let roles: Vec<(&str, &str)> = roles.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(
        roles,
        [
            ("ATND", "Dr. Kate Brennan"),
            ("CON", "Dr. Paul Stein"),
            ("CON", "Dr. Ana Ruiz"),
            ("ADM", "Dr. Kate Brennan"),
            ("ATND", "Dr. Helen Wu"),
            ("CON", "Dr. Tunde Adeyemi"),
            ("NP", "Jordan Lee"),
        ],
        "PV1-7/9/17 (each repetition), then each ROL not deleted"
    );
    assert!(e["participant"][4]["period"]["start"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-11T21:40:00"));
    assert_eq!(
        e["participant"][6]["type"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v2-0443"
    );
    let codes = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["coding"][0]["code"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(codes(&e["type"]), ["E", "E"], "PV1-4 and PV1-18");
    assert_eq!(e["serviceType"]["coding"][0]["code"], "CAR");
    assert_eq!(e["priority"]["coding"][0]["code"], "EM");
    assert_eq!(e["reasonCode"][0]["coding"][0]["code"], "I20.0");
    assert_eq!(
        e["length"],
        serde_json::json!({"value": 2, "unit": "days", "system": UCUM, "code": "d"})
    );
    assert_eq!(e["serviceProvider"]["display"], "NSUH");
    assert_eq!(e["identifier"][1]["value"], "ED-55120", "PV1-50");
    let stay = &e["hospitalization"];
    assert_eq!(stay["reAdmission"]["coding"][0]["code"], "R");
    assert_eq!(stay["specialCourtesy"][0]["coding"][0]["code"], "Y");
    assert_eq!(stay["dietPreference"][0]["coding"][0]["code"], "CAR");
}

#[test]
fn v2_8_participations_are_read_as_roles_are() {
    let text = include_str!("../../../tests/data/fhir/adt/adt_a04_epic_v28_participation.hl7");
    let b = adt("A04", text);
    let patient = serde_json::to_value(resources(&b, "Patient")[0]).unwrap();
    assert_eq!(
        patient["generalPractitioner"],
        serde_json::json!([{"display": "Dr. Kwame Osei"}])
    );
    let e = serde_json::to_value(resources(&b, "Encounter")[0]).unwrap();
    assert_eq!(e["participant"][0]["type"][0]["coding"][0]["code"], "ATND");
    assert_eq!(
        e["participant"][0]["individual"]["display"],
        "Dr. Lena Fischer"
    );
    assert!(e["participant"][0]["period"]["end"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-12T08:45:00"));
    assert_eq!(e["participant"][1]["type"][0]["coding"][0]["code"], "REF");
}

#[test]
fn a_lab_result_creates_its_visit_only_when_the_server_has_none() {
    let text = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");
    let text = String::from_utf8_lossy(text)
        .replace("PV1|1|I|ICU^12^1", "PV1|1|I|ICU^12^1||||||||||||||||V-900");
    let b = to_bundle(
        &stored("lab", text.as_bytes()),
        &TransformContext::default(),
    )
    .unwrap();
    let visit = b
        .entry
        .iter()
        .find(|e| e.resource.type_name() == "Encounter")
        .expect("the visit of PV1-19");
    assert_eq!(
        (visit.request.method.as_str(), visit.request.url.as_str()),
        ("POST", "Encounter"),
        "the ADT owns the visit: a result never overwrites it"
    );
    assert!(visit
        .request
        .if_none_exist
        .as_deref()
        .unwrap()
        .ends_with("|V-900"));
}

#[test]
fn each_gt1_is_a_guarantor_of_the_patients_one_account_a_person_or_an_organization() {
    let text = include_str!("../../../tests/data/fhir/adt/adt_a01_cerner_roles_visit.hl7");
    let b = adt("A01", text);
    let accounts = resources(&b, "Account");
    assert_eq!(
        accounts.len(),
        1,
        "the GT1 of one patient share one Account"
    );
    let account = serde_json::to_value(accounts[0]).unwrap();
    assert_eq!(account["identifier"][0]["value"], "AC-5512907", "PID-18");
    assert_eq!(account["status"], "active");
    let find = |url: &serde_json::Value| {
        let entry = b
            .entry
            .iter()
            .find(|e| e.full_url == url.as_str().unwrap())
            .expect("the party is in the Bundle");
        serde_json::to_value(&entry.resource).unwrap()
    };
    let patient = b
        .entry
        .iter()
        .find(|e| e.resource.type_name() == "Patient")
        .unwrap();
    assert_eq!(account["subject"][0]["reference"], patient.full_url);
    let spouse = find(&account["guarantor"][0]["party"]["reference"]);
    assert_eq!(spouse["resourceType"], "RelatedPerson");
    assert_eq!(spouse["identifier"][0]["value"], "G-3301");
    assert_eq!(spouse["patient"]["reference"], patient.full_url);
    assert_eq!(spouse["name"][0]["family"], "Haddad");
    assert_eq!(spouse["birthDate"], "1974-02-12");
    assert_eq!(spouse["gender"], "female");
    assert_eq!(spouse["relationship"][0]["coding"][0]["code"], "SPO");
    assert_eq!(spouse["telecom"][0]["use"], "home");
    assert_eq!(account["guarantor"][0]["period"]["start"], "2026-01-01");
    let employer = find(&account["guarantor"][1]["party"]["reference"]);
    assert_eq!(employer["resourceType"], "Organization");
    assert_eq!(employer["name"], "Long Island Rail Road");
    // The patient as their own guarantor needs no other resource.
    let own = adt(
        "A04",
        "MSH|^~\\&|HIS|H|ECKO|L|20260406100000||ADT^A04|87|P|2.5.1\rPID|||P-8^^^H||Roth^Ida\rGT1|1||||||||||SEL\rGT1|2\r",
    );
    let account = serde_json::to_value(resources(&own, "Account")[0]).unwrap();
    assert_eq!(
        account["guarantor"],
        serde_json::json!([{"party": {"reference": own.entry[0].full_url}}]),
        "a GT1 naming no one makes nothing"
    );
}

#[test]
fn an_encapsulated_pdf_and_a_pointer_are_the_reports_presented_forms_and_unreadable_data_stays_a_result(
) {
    let text = include_bytes!("../../../tests/data/fhir/oru_r01_pathology_pdf_v251.hl7");
    let b = to_bundle(&stored("copath", text), &TransformContext::default()).unwrap();
    let report = serde_json::to_value(resources(&b, "DiagnosticReport")[0]).unwrap();
    let forms = report["presentedForm"].as_array().unwrap();
    assert_eq!(forms.len(), 2);
    assert_eq!(forms[0]["contentType"], "application/pdf");
    assert_eq!(forms[0]["title"], "Final pathology report");
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(forms[0]["data"].as_str().unwrap())
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-1.4") && pdf.ends_with(b"%%EOF\n"));
    assert_eq!(forms[0]["size"], pdf.len());
    assert!(forms[0]["creation"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-14T14:58:00"));
    assert_eq!(forms[1]["contentType"], "image/jpeg");
    assert_eq!(
        forms[1]["url"],
        "https://pacs.northwell.example/wado/studies/1.2.840.99.1"
    );
    assert_eq!(report["conclusion"], "Signed out by Dr. Miriam Cole, MD");
    let observations: Vec<serde_json::Value> = resources(&b, "Observation")
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    assert_eq!(
        observations.len(),
        2,
        "the history text and the unreadable scan"
    );
    assert_eq!(
        observations[1]["valueString"], "COPATH^IM^TIFF^Base64^this is not base64!",
        "data that is not what it claims is kept as sent"
    );
    assert_eq!(report["result"].as_array().unwrap().len(), 2);
}

#[test]
fn a_specimen_keeps_its_placer_and_filler_ids_parent_container_collection_and_condition() {
    let text = include_bytes!("../../../tests/data/fhir/oru_r01_blood_culture_spm_v251.hl7");
    let b = to_bundle(&stored("beaker", text), &TransformContext::default()).unwrap();
    let specimens: Vec<serde_json::Value> = resources(&b, "Specimen")
        .into_iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect();
    assert_eq!(specimens.len(), 2, "one only has a filler id and is kept");
    let bottle = &specimens[0];
    let ids: Vec<(&str, &str)> = bottle["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["value"].as_str().unwrap(),
                i["type"]["coding"][0]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("UW-SPC-55120", "PLAC"),
            ("26-105-00412-A", "FILL"),
            ("BTL-99812", "")
        ]
    );
    assert_eq!(bottle["accessionIdentifier"]["value"], "W26-105-00412");
    assert_eq!(bottle["type"]["coding"][0]["code"], "119297000");
    let parent = bottle["parent"][0]["reference"].as_str().unwrap();
    assert_eq!(
        parent,
        entry_url(
            "Specimen",
            &identifier(
                "urn:ecko-edge:assigner:EPIC:specimen".into(),
                "UW-SPC-55100"
            )
        ),
        "the parent by the id its own SPM would give it"
    );
    let collection = &bottle["collection"];
    assert_eq!(collection["method"]["coding"][0]["code"], "VENIP");
    assert_eq!(collection["bodySite"]["coding"][0]["code"], "LACF");
    assert_eq!(collection["quantity"]["value"], 10);
    assert!(collection["collectedPeriod"]["end"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-14T21:35:00"));
    assert!(collection.get("collectedDateTime").is_none());
    assert_eq!(
        bottle["container"][0]["type"]["coding"][0]["display"],
        "Blood culture bottle"
    );
    assert_eq!(
        bottle["container"][0]["additiveCodeableConcept"]["coding"][0]["code"],
        "SPS"
    );
    assert_eq!(bottle["condition"][0]["coding"][0]["code"], "CLOT");
    assert_eq!(
        bottle["note"][0]["text"],
        "Aerobic bottle, drawn from left arm"
    );
    let serum = &specimens[1];
    assert_eq!(serum["identifier"][0]["value"], "26-105-00413-S");
    assert_eq!(serum["identifier"][0]["type"]["coding"][0]["code"], "FILL");
    let conditions: Vec<&str> = serum["condition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        conditions,
        ["HEM", "HEM"],
        "the reject reason and the condition"
    );
}

#[test]
fn tq1_gives_an_order_its_time_window_quantity_priority_and_instruction_and_tq2_its_relation_in_words(
) {
    let text = include_bytes!("../../../tests/data/fhir/orders/oml_o21_epic_timing_v251.hl7");
    let mut m = stored("epic-orders", text);
    m.envelope.message_type = "OML^O21".into();
    let b = to_bundle(&m, &TransformContext::default()).unwrap();
    let orders: Vec<serde_json::Value> = resources(&b, "ServiceRequest")
        .into_iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let tsh = &orders[0];
    assert_eq!(tsh["priority"], "urgent", "TQ1-9 T, timing critical");
    assert!(tsh["occurrenceDateTime"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-16T08:00:00"));
    assert_eq!(tsh["patientInstruction"], "Draw before the 08:00 dose");
    assert_eq!(tsh["quantityQuantity"]["value"], 1);
    let glucose = &orders[1];
    assert!(glucose.get("occurrenceDateTime").is_none());
    assert!(glucose["occurrencePeriod"]["end"]
        .as_str()
        .unwrap()
        .starts_with("2026-04-16T11:00:00"));
    assert_eq!(glucose["quantityQuantity"]["value"], 3);
    assert_eq!(glucose["quantityQuantity"]["unit"], "draws");
    assert_eq!(glucose["priority"], "routine");
    assert_eq!(
        glucose["patientInstruction"],
        "Every hour; if glucose above 200"
    );
    assert_eq!(
        glucose["note"][0]["text"],
        "Related order (placer UW-ORD-8801): this order starts when it ends, 1 h after; simultaneous"
    );
}
