//! The Modality Worklist end to end: orders from a RIS over MLLP, and from
//! the hub over MQTT (mosquitto, paho-mqtt as the hub), become scheduled
//! procedure steps, and modalities written by others (dcmtk's findscu,
//! pynetdicom) query them.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::{eventually, free_port, mllp_ack, msa_code, peer_python, python_script, Gateway};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A RIS listener, a worklist, and a DICOM SCP serving it.
fn config(dir: &Path, mllp: u16, scp: u16, max_matches: usize) -> PathBuf {
    config_with(dir, mllp, scp, max_matches, "")
}

fn config_with(dir: &Path, mllp: u16, scp: u16, max_matches: usize, extra: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[site]
time_zone = "Europe/Berlin"

[[endpoint]]
name = "ris"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "ct-worklist"
type = "worklist"
modality = "CT"

[[endpoint]]
name = "modalities"
type = "dicom"
listen = "127.0.0.1:{scp}"
ae_title = "ECKO"
worklist = "ct-worklist"
max_worklist_matches = {max_matches}

[[route]]
name = "orders"
from = ["ris"]
transform = "none"
to = ["ct-worklist"]
{extra}
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

/// An ORM^O01 for patient `family` with order `n`, scheduled on `when`
/// (local) with modality `obr24`; `control` is ORC-1 (`NW`, `CA`).
fn orm(n: u32, family: &str, when: &str, obr24: &str, control: &str) -> String {
    let mut obr = vec![""; 25];
    obr[0] = "OBR";
    obr[1] = "1";
    let placer = format!("ORD{n}");
    let accession = format!("ACC{n}");
    obr[2] = &placer;
    obr[4] = "CTHD^CT head plain^L";
    obr[18] = &accession;
    obr[24] = obr24;
    let tq = format!("^^^{when}");
    format!(
        "MSH|^~\\&|RIS|H|ECKO|G|20261204080000||ORM^O01|M{n}{control}|P|2.5.1||||||UNICODE UTF-8\r\
PID|||P{n}^^^HOSP||{family}^JOHN||19700102|M\r\
ORC|{control}|{placer}|||||{tq}\r\
{}\r",
        obr.join("|")
    )
}

fn send(port: u16, message: &str) {
    let ack = mllp_ack(port, message.as_bytes());
    assert_eq!(msa_code(&ack), "AA", "{ack}");
}

/// dcmtk's findscu asking for CT on `date`, with `name` as a matching key
/// (empty: return key); the patient names of the pending responses.
fn findscu(port: u16, date: &str, name: &str) -> (Vec<String>, String) {
    let out = Command::new("findscu")
        .args(["-v", "-W", "-aet", "FINDSCU", "-aec", "ECKO"])
        .args(["-k", "ScheduledProcedureStepSequence[0].Modality=CT"])
        .args([
            "-k",
            &format!("ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={date}"),
        ])
        .args([
            "-k",
            "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        ])
        .args(["-k", &format!("PatientName={name}")])
        .args(["-k", "AccessionNumber", "-k", "StudyInstanceUID"])
        .arg("127.0.0.1")
        .arg(port.to_string())
        .output()
        .expect("findscu (dcmtk): run scripts/install-peers");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each pending response's data set follows "Find Response: N (Pending)".
    let names = text
        .split("Find Response:")
        .skip(1)
        .filter(|r| r.contains("(Pending)"))
        .filter_map(|r| {
            let line = r.lines().find(|l| l.contains("PatientName"))?;
            let start = line.find('[')? + 1;
            let end = line[start..].find(']')? + start;
            Some(line[start..end].trim().to_string())
        })
        .collect();
    (names, text)
}

fn pynetdicom_find(
    port: u16,
    modality: &str,
    date: &str,
    cancel: Option<u32>,
) -> serde_json::Value {
    let mut cmd = Command::new(peer_python("dicom-venv"));
    cmd.arg(python_script("worklist_find.py")).args([
        "127.0.0.1",
        &port.to_string(),
        "ECKO",
        modality,
        date,
    ]);
    if let Some(n) = cancel {
        cmd.args(["--cancel-after", &n.to_string()]);
    }
    let out = cmd.output().expect("pynetdicom");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Waits until every order message has been delivered to the worklist.
fn delivered(dir: &Path, count: usize) -> bool {
    eventually(Duration::from_secs(15), || {
        let Ok(reader) = JournalReader::open(&dir.join("journal.db")) else {
            return false;
        };
        let ids = reader.message_ids().unwrap_or_default();
        ids.len() >= count
            && ids.iter().all(|&id| {
                reader
                    .outbox_of(id)
                    .unwrap_or_default()
                    .iter()
                    .all(|o| matches!(o.state, OutboxState::Delivered | OutboxState::Dead))
            })
    })
}

#[test]
fn orders_from_the_ris_are_answered_to_findscu_by_modality_date_and_name_and_a_cancellation_takes_them_off(
) {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, scp, 100);
    let log = dir.path().join("gw.log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    send(mllp, &orm(1, "DOE", "20991204093000", "CT", "NW"));
    send(mllp, &orm(2, "DOEBERT", "20991204140000", "", "NW"));
    send(mllp, &orm(3, "ROE", "20991204100000", "MR", "NW"));
    send(mllp, &orm(4, "POE", "20991205093000", "CT", "NW"));
    assert!(delivered(dir.path(), 4));

    // CT on the 4th: orders 1 and 2 (2 has no modality: the worklist's CT),
    // soonest first; MR and the 5th are not asked for.
    let (names, text) = findscu(scp, "20991204", "");
    assert_eq!(names, ["DOE^JOHN", "DOEBERT^JOHN"], "{text}");
    assert!(
        text.contains("[ACC1]"),
        "the accession number from OBR-18: {text}"
    );
    assert!(
        text.contains("[093000]"),
        "the start time from ORC-7.4: {text}"
    );
    assert!(
        text.contains("Received Final Find Response (Success)"),
        "{text}"
    );

    // Wildcards in the name, a date range.
    assert_eq!(findscu(scp, "20991204", "DOE^*").0, ["DOE^JOHN"]);
    assert_eq!(
        findscu(scp, "20991204-20991205", "?OE^*").0,
        ["DOE^JOHN", "POE^JOHN"]
    );
    assert!(findscu(scp, "20991206-", "").0.is_empty());

    // The RIS cancels order 1: it leaves the worklist.
    send(mllp, &orm(1, "DOE", "20991204093000", "CT", "CA"));
    assert!(delivered(dir.path(), 5));
    assert_eq!(findscu(scp, "20991204", "").0, ["DOEBERT^JOHN"]);
}

#[test]
fn a_universal_query_stops_at_the_maximum_with_out_of_resources_and_names_keep_their_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, scp, 5);
    let log = dir.path().join("gw.log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    send(mllp, &orm(1, "MÜLLER", "20991204080000", "CT", "NW"));
    for n in 2..=8 {
        send(
            mllp,
            &orm(n, "DOE", &format!("2099120408{n:02}00"), "CT", "NW"),
        );
    }
    assert!(delivered(dir.path(), 8));

    let all = pynetdicom_find(scp, "", "", None);
    let matches = all["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 5, "{all}");
    assert_eq!(
        all["final"], "A700",
        "more than the maximum: out of resources: {all}"
    );
    assert_eq!(
        matches[0]["name"], "MÜLLER^JOHN",
        "UTF-8 name kept whole: {all}"
    );
    assert_eq!(matches[0]["accession"], "ACC1");
    assert!(
        matches[0]["study"].as_str().unwrap().starts_with("2.25."),
        "a study UID made for the order: {all}"
    );
}

#[test]
fn a_c_cancel_from_the_modality_ends_a_long_query_with_fe00_and_the_scp_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, scp, 5000);
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    // One OMI with 2,000 scheduled steps: far more pending responses than
    // the modality reads before its C-CANCEL reaches the SCP.
    let mut omi = String::from(
        "MSH|^~\\&|RIS|H|ECKO|G|20261204080000||OMI^O23|BIG1|P|2.5.1\rPID|||P1||DOE^JOHN\rORC|NW|ORD-BIG\rTQ1|||||||20991204090000\rOBR|1|ORD-BIG||CT^CT^L\r",
    );
    for n in 1..=2000 {
        omi.push_str(&format!("IPC|ACC-BIG|RP1|1.2.3.4|SPS-{n}|CT\r"));
    }
    send(mllp, &omi);
    assert!(delivered(dir.path(), 1));
    let cancelled = pynetdicom_find(scp, "CT", "20991204", Some(1));
    assert_eq!(cancelled["final"], "FE00", "{cancelled}");
    let got = cancelled["matches"].as_array().unwrap().len();
    eprintln!("C-CANCEL after the first pending response: {got} of 2000 matches sent");
    assert!(
        (1..2000).contains(&got),
        "the cancel stopped the matches after {got}"
    );
    // The SCP serves the next query whole.
    let again = pynetdicom_find(scp, "CT", "20991204", None);
    assert_eq!(again["matches"].as_array().unwrap().len(), 2000);
    assert_eq!(again["final"], "0000");
}

/// A result routed to the worklist by mistake is refused to its sender
/// with the reason (AE), never acknowledged and then dead-lettered.
#[test]
fn a_message_that_is_no_order_is_refused_with_the_reason_and_not_journalled() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, scp, 10);
    let log = dir.path().join("gw.log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    let oru =
        "MSH|^~\\&|LAB|H|ECKO|G|20261204||ORU^R01|R1|P|2.5\rPID|||P1\rOBR|1\rOBX|1|NM|GLU||5.5\r";
    let ack = mllp_ack(mllp, oru.as_bytes());
    assert_eq!(msa_code(&ack), "AE", "{ack}");
    assert!(ack.contains("takes orders"), "{ack}");
    let reader = JournalReader::open(&dir.path().join("journal.db")).unwrap();
    assert!(reader.message_ids().unwrap().is_empty());
}

#[test]
fn an_order_the_hub_publishes_for_the_worklist_is_answered_to_findscu_and_its_revocation_takes_it_off(
) {
    use ecko_gateway::config::PayloadFormat;
    use ecko_gateway::hub::payload::encode;
    use ecko_tests::mqtt::{hub_publish, Broker};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let d = dir.path().join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let hub = format!(
        "\n[hub]\nurl = \"mqtt://127.0.0.1:{}\"\nsite = \"north\"\ndevice = \"rad-1\"\nreconnect_min = \"1s\"\nreconnect_max = \"2s\"\n",
        broker.port
    );
    let cfg = config_with(&d, mllp, scp, 10, &hub);
    let _gw = Gateway::start(&cfg, &d.join("gw.log"), &[]);
    let topic = "ecko/north/rad-1/orders";
    let broker_log = dir.path().join("broker/mosquitto.log");
    assert!(
        eventually(Duration::from_secs(15), || std::fs::read_to_string(
            &broker_log
        )
        .unwrap_or_default()
        .contains(topic)),
        "the gateway never subscribed to its orders"
    );
    let order = |id: &str, status: &str| {
        encode(
            PayloadFormat::Cbor,
            &json!({"v": 1, "id": id, "issued_at": 0, "worklist": "ct-worklist", "bundle": {
                "resourceType": "Bundle", "type": "collection", "entry": [
                    {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient",
                        "identifier": [{"value": "MRN-5"}], "name": [{"family": "HUB", "given": ["HANNA"]}]}},
                    {"resource": {"resourceType": "ServiceRequest", "status": status, "intent": "order",
                        "identifier": [{"type": {"coding": [{"code": "ACSN"}]}, "value": "HUB-ACC"}],
                        "requisition": {"value": "HUB-REQ"}, "subject": {"reference": "urn:uuid:p"},
                        "occurrenceDateTime": "2099-12-04T10:00:00+01:00",
                        "code": {"text": "CT thorax"}}}]}}),
        )
    };
    hub_publish(&broker, topic, &order("h-1", "active"));
    assert!(
        eventually(Duration::from_secs(15), || findscu(scp, "20991204", "HUB*")
            .0
            == ["HUB^HANNA"]),
        "the hub's order never reached the worklist: {}",
        findscu(scp, "20991204", "HUB*").1
    );
    let (_, text) = findscu(scp, "20991204", "HUB*");
    assert!(
        text.contains("[HUB-ACC"),
        "the accession from the ACSN identifier: {text}"
    );
    hub_publish(&broker, topic, &order("h-2", "revoked"));
    assert!(
        eventually(Duration::from_secs(15), || findscu(scp, "20991204", "")
            .0
            .is_empty()),
        "the revoked order is still offered"
    );
}

#[test]
fn a_step_a_modality_reports_in_progress_stays_offered_as_started_and_leaves_the_worklist_once_completed(
) {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, scp) = (free_port(), free_port());
    let archive = format!(
        "\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}/archive\"\n\n[[route]]\nname = \"steps\"\nfrom = [\"modalities\"]\nmessage_types = [\"MPPS\"]\nto = [\"archive\"]\n",
        dir.path().display()
    );
    let cfg = config_with(dir.path(), mllp, scp, 10, &archive);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "max_worklist_matches = 10",
        "max_worklist_matches = 10\nmpps = true",
    );
    std::fs::write(&cfg, text).unwrap();
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    send(mllp, &orm(1, "DOE", "20991204093000", "CT", "NW"));
    send(mllp, &orm(2, "ROE", "20991204100000", "CT", "NW"));
    assert!(delivered(dir.path(), 2));
    let step_uid = "1.2.826.0.1.3680043.2.1125.77.1";
    let mpps = |only: &str| {
        let out = Command::new(peer_python("dicom-venv"))
            .arg(python_script("mpps_scu.py"))
            .args(["127.0.0.1", &scp.to_string(), "ECKO", step_uid, "1.2.3.77"])
            .args(["--only", only, "--accession", "ACC1", "--sps", "ACC1"])
            .output()
            .expect("pynetdicom");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(mpps("create").contains("create 0x0000"));
    let (names, text) = findscu(scp, "20991204", "");
    assert_eq!(
        names,
        ["DOE^JOHN", "ROE^JOHN"],
        "started, still offered: {text}"
    );
    let status = pynetdicom_find(scp, "CT", "20991204", None);
    let statuses: Vec<(&str, &str)> = status["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [("DOE^JOHN", "STARTED"), ("ROE^JOHN", "SCHEDULED")],
        "{status}"
    );
    assert!(mpps("complete").contains("set-completed 0x0000"));
    assert_eq!(
        findscu(scp, "20991204", "").0,
        ["ROE^JOHN"],
        "the completed step left the worklist"
    );
}
