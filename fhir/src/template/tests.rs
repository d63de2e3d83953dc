use super::*;

fn message(payload: &[u8]) -> StoredMessage {
    StoredMessage {
        id: 3,
        received_at: 1_773_000_000_000,
        envelope: ecko_message::Envelope {
            source: "lab".into(),
            dedup_key: Some("k3".into()),
            message_type: "ORU^R01".into(),
            content_type: "x".into(),
            control_id: Some("C3".into()),
            patient_id: None,
            payload: payload.to_vec(),
            ack: None,
            hints: Default::default(),
        },
    }
}

fn template(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn render(text: &str, payload: &[u8]) -> Result<serde_json::Value, String> {
    render_in(&TransformContext::default(), text, payload)
}

fn render_in(
    cx: &TransformContext,
    text: &str,
    payload: &[u8],
) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = template(&dir, "t.j2", text);
    apply(&path, &message(payload), cx)
        .map(|out| serde_json::from_slice(&out).unwrap())
        .map_err(|e| e.to_string())
}

const ORU: &[u8] = b"MSH|^~\\&|LAB|L|ECKO|H|20260405100000||ORU^R01|C3|P|2.5\rPID|||77^^^H~88^^^X||Roe\\T\\Co^Jo\rOBR|1|P1|F1|A^A^L\rOBX|1|NM|K^Potassium^L||4.1|mmol/L\rOBX|2|NM|NA^Sodium^L||140|mmol/L\rOBR|2|P2|F2|B^B^L\rOBX|1|ST|C^Comment^L||ok\r";

/// A resource with the values read through each way of access.
fn patient_with(name: &str) -> String {
    format!(
        r#"{{"resourceType": "Patient", "identifier": [{{"system": "urn:x", "value": "1"}}], "name": [{{"text": {name}}}]}}"#
    )
}

#[test]
fn a_template_reads_fields_components_repetitions_and_decoded_escapes() {
    let out = render(
        &patient_with(
            r#"{{ [msg.segment("PID")[5], msg.segment("PID").get("5.2"), msg.segment("PID").get("3(2).4"), (msg.segment("PID").repeats(3) | length) ~ "", msg.segments("OBX") | length ~ "", msg.groups("OBR") | map("length") | join(","), msg.source, msg.control_id] | join(" ") | tojson }}"#,
        ),
        ORU,
    )
    .unwrap();
    assert_eq!(
        out["entry"][0]["resource"]["name"][0]["text"],
        "Roe&Co Jo X 2 3 3,2 lab C3"
    );
}

#[test]
fn a_template_reads_the_astm_tree() {
    let astm = b"H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405\rP|1||PID1||Doe^Jane\rO|1|SPEC1||^^^GLU|R\rR|1|^^^GLU|5.4|mmol/L|3.9-6.1|N||F\rC|1|I|hemolysed&S&icteric|G\rL|1|N\r";
    let out = render(
        &patient_with(
            r#"{{ [msg.astm.header.get("5.1"), msg.astm.patients[0].record.get("6.2"), msg.astm.patients[0].orders[0].results[0].record.get("3.4"), msg.astm.patients[0].orders[0].results[0].comments[0].get("4")] | join(" ") | tojson }}"#,
        ),
        astm,
    )
    .unwrap();
    assert_eq!(
        out["entry"][0]["resource"]["name"][0]["text"],
        "CHEM-9 Jane GLU hemolysed^icteric"
    );
}

#[test]
fn the_helpers_give_the_ids_times_and_units_of_the_built_in_maps() {
    let berlin = TransformContext::new(jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    let out = render_in(
        &berlin,
        &patient_with(
            r#"{{ [uuid("Patient", "urn:x", "1"), fhir_time("202603140930"), fhir_instant("20260314") or "-", ucum("mEq/L"), number("4.10") ~ "", msg.local_system("code")] | join(" ") | tojson }}"#,
        ),
        ORU,
    )
    .unwrap();
    let id = crate::r4::resource_id("Patient", "urn:x", "1");
    assert_eq!(
        out["entry"][0]["resource"]["name"][0]["text"],
        format!("{id} 2026-03-14T09:30:00+01:00 - meq/L 4.1 urn:ecko-edge:lab:code")
    );
    assert_eq!(out["entry"][0]["fullUrl"], format!("urn:uuid:{id}"));
    let last = out["entry"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["resource"]["resourceType"], "Provenance");
}

#[test]
fn template_errors_name_the_template_and_the_line() {
    let cx = TransformContext::default();
    let dir = tempfile::tempdir().unwrap();
    let syntax = template(&dir, "broken.j2", "{\n\"a\": {{ msg.id \n}\n");
    let e = check_file(&syntax).unwrap_err();
    assert!(e.starts_with("template `broken.j2` line "), "{e}");
    assert!(e.contains("syntax error"), "{e}");

    let runtime = template(
        &dir,
        "runtime.j2",
        "{\n\n{{ msg.segment(\"PID\").frobnicate() }}\n}\n",
    );
    let e = apply(&runtime, &message(ORU), &cx).unwrap_err().to_string();
    assert!(e.starts_with("template `runtime.j2` line 3: "), "{e}");

    let not_json = template(
        &dir,
        "text.j2",
        "{\n  \"resourceType\": \"Patient\",\n  oops\n}\n",
    );
    let e = apply(&not_json, &message(ORU), &cx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not JSON at output line 3"), "{e}");
    assert!(e.contains("oops"), "{e}");

    let wrong = template(
        &dir,
        "wrong.j2",
        r#"{"resourceType": "Observation", "status": "final"}"#,
    );
    let e = apply(&wrong, &message(ORU), &cx).unwrap_err().to_string();
    assert!(e.contains("needs `identifier[0]`"), "{e}");

    let missing = dir.path().join("nowhere.j2");
    let e = check_file(&missing).unwrap_err();
    assert!(e.contains("nowhere.j2") && e.contains("cannot read"), "{e}");
}

#[test]
fn a_runaway_template_stops_instead_of_stalling_delivery() {
    let e = render(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        ORU,
    )
    .unwrap_err();
    assert!(e.contains("fuel"), "{e}");
}

#[test]
fn an_edited_template_applies_to_the_next_message() {
    // One context, so the second message meets the first one's compiled
    // template in the cache and must notice the file changed.
    let cx = TransformContext::default();
    let dir = tempfile::tempdir().unwrap();
    let path = template(&dir, "t.j2", &patient_with(r#""first""#));
    let name = |path: &Path| -> serde_json::Value {
        let out: serde_json::Value =
            serde_json::from_slice(&apply(path, &message(ORU), &cx).unwrap()).unwrap();
        out["entry"][0]["resource"]["name"][0]["text"].clone()
    };
    assert_eq!(name(&path), "first");
    std::fs::write(&path, patient_with(r#""second, a longer text""#)).unwrap();
    assert_eq!(name(&path), "second, a longer text");
}
