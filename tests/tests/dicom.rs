//! The DICOM endpoints with the real binary against dcmtk and pynetdicom:
//! C-ECHO, C-STORE of pydicom's sample files in several transfer syntaxes,
//! forwarding to dcmtk's `storescp` as the PACS, an idle study announced
//! as ImagingStudy to the Medplum FHIR server, MPPS from pynetdicom as a
//! Procedure, a PACS outage during a
//! study, the PACS killed in the middle of forwarding one, the association
//! policy, a journal that refuses (A700), and a
//! SIGKILL during a burst.

use ecko_gateway::journal::JournalReader;
use ecko_tests::pacs::{pacs, send_study, Pacs};
use ecko_tests::{eventually, free_port, peer_python, python_script, Gateway};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn samples() -> PathBuf {
    let python = peer_python("dicom-venv");
    let out = Command::new(python)
        .args([
            "-c",
            "import pydicom, os; print(os.path.dirname(pydicom.__file__))",
        ])
        .output()
        .expect("pydicom");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("data/test_files")
}

fn config(dir: &Path, scp: u16, pacs: u16, extra: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"
{extra}

[[endpoint]]
name = "modalities"
type = "dicom"
listen = "127.0.0.1:{scp}"
ae_title = "ECKO"
allowed_calling_ae = ["STORESCU", "ECHOSCU", "SENDER", "FINDSCU"]

[[endpoint]]
name = "pacs"
type = "dicom"
connect = "127.0.0.1:{pacs}"
peer_ae_title = "PACS"
retry = {{ initial = "200ms", max = "1s" }}

[[route]]
name = "images"
from = ["modalities"]
message_types = ["DICOM"]
transform = "none"
to = ["pacs"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

fn storescu(port: u16, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("storescu")
        .args(["-v", "-aec", "ECKO"])
        .args(args)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .output()
        .expect("storescu");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// pynetdicom's storescu, proposing each file's own transfer syntax.
fn pynetdicom_storescu(port: u16, files: &[PathBuf]) -> String {
    let out = Command::new(peer_python("dicom-venv"))
        .args(["-m", "pynetdicom", "storescu", "127.0.0.1"])
        .arg(port.to_string())
        .args(["-aec", "ECKO", "-aet", "SENDER", "-cx", "-v"])
        .args(files)
        .output()
        .expect("pynetdicom");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// SOP instance UID → how many times the PACS received it.
fn received_by_pacs(log: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut seen = BTreeMap::new();
    // storescp -v logs "Received Store Request" then the file it wrote,
    // named after the modality and SOP instance UID.
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("I: storing DICOM file: ") {
            let uid = Path::new(name.trim())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let uid = uid
                .split_once('.')
                .map(|(_, u)| u.to_string())
                .unwrap_or(uid);
            *seen.entry(uid).or_insert(0) += 1;
        }
    }
    seen
}

/// The SOP instance UID of a sample file, with pydicom.
fn sop_uids(files: &[PathBuf]) -> Vec<String> {
    let script = "import sys, pydicom\nfor f in sys.argv[1:]:\n    print(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)";
    let out = Command::new(peer_python("dicom-venv"))
        .args(["-c", script])
        .args(files)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn objects_in_several_transfer_syntaxes_are_stored_as_received_and_reach_the_pacs_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let pacs_log = dir.path().join("pacs.log");
    let _pacs = pacs(pacs_port, &dir.path().join("pacs"), &pacs_log);
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let s = samples();

    let echo = Command::new("echoscu")
        .args(["-aec", "ECKO", "127.0.0.1"])
        .arg(scp.to_string())
        .status()
        .unwrap();
    assert!(echo.success(), "C-ECHO");

    let uncompressed: Vec<PathBuf> = [
        "CT_small.dcm",
        "MR_small.dcm",
        "rtplan.dcm",
        "reportsi.dcm",
        "rtdose.dcm",
    ]
    .iter()
    .map(|f| s.join(f))
    .collect();
    let (ok, text) = storescu(scp, &[], &uncompressed);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches("Received Store Response (Success)").count(),
        5,
        "{text}"
    );
    let compressed: Vec<PathBuf> = [
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "JPEG-lossy.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_implicit.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ]
    .iter()
    .map(|f| s.join(f))
    .collect();
    let text = pynetdicom_storescu(scp, &compressed);
    assert_eq!(
        text.matches("Received Store Response (Status: 0x0000")
            .count()
            + text
                .matches("Received Store Response (Status: 0xB007")
                .count(),
        6,
        "{text}"
    );

    // The same files again: answered success, forwarded no second time.
    let (ok, text) = storescu(scp, &[], &uncompressed[..2]);
    assert!(ok, "{text}");

    let mut expected = sop_uids(&uncompressed);
    expected.extend(sop_uids(&compressed));
    expected.sort();
    expected.dedup();
    assert!(
        eventually(Duration::from_secs(30), || received_by_pacs(&pacs_log)
            .len()
            == expected.len()),
        "the PACS has {:?}, expected {expected:?}",
        received_by_pacs(&pacs_log)
    );
    std::thread::sleep(Duration::from_millis(500));
    let received = received_by_pacs(&pacs_log);
    assert_eq!(received.keys().cloned().collect::<Vec<_>>(), expected);
    // MR_small_implicit, MR_small_jpeg_ls_lossless and MR_small share a SOP
    // instance UID with other content: each is kept and forwarded.
    let mr = sop_uids(&[s.join("MR_small.dcm")]).remove(0);
    assert_eq!(received[&mr], 3, "{received:?}");
    assert!(
        received
            .iter()
            .filter(|(k, _)| **k != mr)
            .all(|(_, n)| *n == 1),
        "{received:?}"
    );

    // Stored as received: the data set on disk is the sample's, byte for byte.
    let stored = dir.path().join("dicom/modalities");
    let jpeg2000 = std::fs::read(s.join("JPEG2000.dcm")).unwrap();
    let found = walk(&stored).into_iter().any(|p| {
        let bytes = std::fs::read(&p).unwrap();
        tail_after_meta(&bytes) == tail_after_meta(&jpeg2000)
    });
    assert!(found, "JPEG 2000 object not stored byte for byte");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The data set of a Part 10 file: what follows its file meta group.
fn tail_after_meta(bytes: &[u8]) -> &[u8] {
    let len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    &bytes[144 + len..]
}

#[test]
fn a_study_sent_while_the_pacs_is_down_arrives_whole_after_it_returns_each_instance_once() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let acked = dir.path().join("acked.txt");
    let out = Command::new(peer_python("dicom-venv"))
        .arg(python_script("dicom_send.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            "60",
            "1.2.826.0.1.3680043.10.1234.7",
            acked.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let acked_uids = std::fs::read_to_string(&acked).unwrap_or_default();
    assert_eq!(
        acked_uids.lines().count(),
        60,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    std::thread::sleep(Duration::from_secs(2));
    let pacs_log = dir.path().join("pacs.log");
    let _pacs = pacs(pacs_port, &dir.path().join("pacs"), &pacs_log);
    assert!(
        eventually(Duration::from_secs(60), || received_by_pacs(&pacs_log)
            .len()
            == 60),
        "{} of 60 arrived",
        received_by_pacs(&pacs_log).len()
    );
    std::thread::sleep(Duration::from_secs(1));
    let received = received_by_pacs(&pacs_log);
    for uid in acked_uids.lines() {
        assert_eq!(received.get(uid), Some(&1), "{uid}");
    }
}

/// Delivered, queued and dead counts of `destination` in the journal.
fn destination_counts(db: &Path, destination: &str) -> (u64, u64, u64) {
    JournalReader::open(db)
        .and_then(|r| r.counts())
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.destination == destination)
        .map_or((0, 0, 0), |c| (c.delivered, c.queued + c.leased, c.dead))
}

#[test]
fn a_pacs_killed_in_the_middle_of_a_study_gets_every_instance_after_it_restarts_none_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    // The study is taken while the PACS is away, so that once it is up the
    // gateway forwards it in full batches, and the kill lands inside one.
    let total = 300;
    let acked_uids = send_study(
        scp,
        total,
        "1.2.826.0.1.3680043.10.1234.9",
        &dir.path().join("acked.txt"),
    );
    assert_eq!(acked_uids.len(), total, "the gateway took every object");
    let first_log = dir.path().join("pacs-1.log");
    let first = pacs(pacs_port, &dir.path().join("pacs"), &first_log);
    assert!(
        eventually(Duration::from_secs(60), || received_by_pacs(&first_log)
            .len()
            >= 20),
        "forwarding never started"
    );
    drop(first);
    let at_kill = received_by_pacs(&first_log).len();
    assert!(
        at_kill < total,
        "the PACS had everything before it was killed"
    );

    std::thread::sleep(Duration::from_secs(2));
    let second_log = dir.path().join("pacs-2.log");
    let _second = pacs(pacs_port, &dir.path().join("pacs"), &second_log);
    let union = || {
        let mut all = received_by_pacs(&first_log);
        for (uid, n) in received_by_pacs(&second_log) {
            *all.entry(uid).or_insert(0) += n;
        }
        all
    };
    let db = dir.path().join("journal.db");
    assert!(
        eventually(Duration::from_secs(120), || union().len() == total
            && destination_counts(&db, "pacs").1 == 0),
        "{} of {total} in the PACS, journal {:?}",
        union().len(),
        destination_counts(&db, "pacs")
    );
    // At least once: an object the PACS stored just as it was killed, its
    // response lost, is sent again; every instance is there, none missing.
    let received = union();
    for uid in &acked_uids {
        assert!(received.contains_key(uid), "{uid} never reached the PACS");
    }
    let again: usize = received.values().map(|n| n - 1).sum();
    eprintln!("killed after {at_kill} of {total}; {again} instance(s) received twice");
    let (delivered, pending, dead) = destination_counts(&db, "pacs");
    assert_eq!((delivered, pending, dead), (total as u64, 0, 0));
}

/// A FHIR destination at `base` and a route of `message_type` from the
/// modalities to it through `dicom-fhir`.
fn to_hub(base: &str, message_type: &str) -> String {
    format!(
        r#"
[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"
retry = {{ initial = "200ms", max = "1s" }}

[[route]]
name = "to-hub"
from = ["modalities"]
message_types = ["{message_type}"]
transform = "dicom-fhir"
to = ["hub"]
"#
    )
}

/// The journal's messages of `message_type`, oldest first.
fn messages_of(db: &Path, message_type: &str) -> Vec<ecko_message::StoredMessage> {
    let reader = JournalReader::open(db).unwrap();
    reader
        .message_ids()
        .unwrap()
        .into_iter()
        .filter_map(|id| reader.message(id).unwrap())
        .filter(|m| m.envelope.message_type == message_type)
        .collect()
}

/// The journal's ImagingStudy messages: (duplicate key, payload).
fn announcements(db: &Path) -> Vec<(String, ecko_message::StoredMessage)> {
    messages_of(db, "ImagingStudy")
        .into_iter()
        .map(|m| (m.envelope.dedup_key.clone().unwrap_or_default(), m))
        .collect()
}

#[test]
fn an_idle_study_reaches_the_fhir_server_as_one_imaging_study_updated_when_it_grows() {
    use ecko_tests::fhir::{count, http, validate_with_fhir_resources, FhirServer};
    let dir = tempfile::tempdir().unwrap();
    let fhir = FhirServer::start(0, &[]);
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(
        dir.path(),
        scp,
        pacs_port,
        &to_hub(&fhir.base, "ImagingStudy"),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "ae_title = \"ECKO\"\n",
        "ae_title = \"ECKO\"\nstudy_idle = \"2s\"\nstudy_endpoint = \"Endpoint/pacs-wado\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let _pacs = pacs(
        pacs_port,
        &dir.path().join("pacs"),
        &dir.path().join("pacs.log"),
    );
    let log = dir.path().join("gw.log");
    let gw = Gateway::start(&cfg, &log, &[]);
    let db = dir.path().join("journal.db");
    let study = "1.2.826.0.1.3680043.10.1234.21";
    let query = format!("ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study}");
    let instances = |base: &str| -> Option<u64> {
        let (status, body) = http("GET", &format!("{base}/{query}"), None);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| v["entry"][0]["resource"]["numberOfInstances"].as_u64())?
    };

    assert_eq!(send_study(scp, 5, study, &dir.path().join("a1")).len(), 5);
    assert!(
        eventually(Duration::from_secs(30), || instances(&fhir.base) == Some(5)),
        "no ImagingStudy of 5 instances: {:?}",
        announcements(&db).len()
    );
    let (_, body) = http("GET", &format!("{}/{query}", fhir.base), None);
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &found["entry"][0]["resource"];
    assert_eq!(r["status"], "available");
    assert_eq!(r["numberOfSeries"], 1);
    assert_eq!(r["modality"][0]["code"], "CT");
    assert_eq!(r["endpoint"][0]["reference"], "Endpoint/pacs-wado");
    assert_eq!(r["series"][0]["uid"], format!("{study}.1"));
    assert_eq!(r["series"][0]["instance"].as_array().unwrap().len(), 5);
    assert_eq!(r["series"][0]["instance"][4]["number"], 5);

    // Two more objects (and the first five again, resends): announced again
    // with all seven, the same resource updated.
    assert_eq!(send_study(scp, 7, study, &dir.path().join("a2")).len(), 7);
    assert!(
        eventually(Duration::from_secs(30), || instances(&fhir.base) == Some(7)),
        "the ImagingStudy was not updated to 7 instances"
    );
    assert_eq!(count(&fhir.base, &query), 1, "one resource per study");

    // A restart announces nothing again: the state is the journal's.
    drop(gw);
    let _gw = Gateway::start(&cfg, &log, &[]);
    std::thread::sleep(Duration::from_secs(5));
    let sent = announcements(&db);
    let keys: Vec<&str> = sent.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [format!("{study}/5"), format!("{study}/7")],
        "each content once"
    );

    // What was sent is valid R4 for fhir.resources too.
    let bundle = ecko_fhir::apply(
        "dicom-fhir",
        &sent[1].1,
        &ecko_fhir::TransformContext::default(),
    )
    .unwrap();
    let file = dir.path().join("imaging-study-bundle.json");
    std::fs::write(&file, bundle).unwrap();
    validate_with_fhir_resources(&[file]).unwrap();
}

#[test]
fn mpps_from_pynetdicom_is_journalled_with_its_statuses_and_reaches_the_fhir_server_as_a_procedure()
{
    use ecko_tests::fhir::{http, validate_with_fhir_resources, FhirServer};
    let dir = tempfile::tempdir().unwrap();
    let fhir = FhirServer::start(0, &[]);
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, &to_hub(&fhir.base, "MPPS"));
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "allowed_calling_ae = [",
        "mpps = true\nallowed_calling_ae = [\"MODALITY\", ",
    );
    std::fs::write(&cfg, text).unwrap();
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let step = "1.2.826.0.1.3680043.10.1234.31.1";
    let out = Command::new(peer_python("dicom-venv"))
        .arg(python_script("mpps_scu.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            step,
            "1.2.826.0.1.3680043.10.1234.31",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            "create 0x0000",
            "create-again 0x0111",
            "set-unknown 0x0112",
            "set-completed 0x0000",
            "set-again 0x0110",
        ],
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let query = format!("Procedure?identifier=urn:dicom:uid|urn:oid:{step}");
    let completed = || {
        let (_, body) = http("GET", &format!("{}/{query}", fhir.base), None);
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .filter(|v| v["entry"][0]["resource"]["status"] == "completed")
    };
    assert!(eventually(Duration::from_secs(30), || completed().is_some()));
    let found = completed().unwrap();
    assert_eq!(found["total"], 1);
    let p = &found["entry"][0]["resource"];
    assert_eq!(p["code"]["coding"][0]["code"], "CTHEAD");
    assert_eq!(p["basedOn"][0]["identifier"]["value"], "ACC-77");
    assert_eq!(p["subject"]["identifier"]["value"], "P-42");
    assert!(p["performedPeriod"]["start"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-31T10:15:00"));
    assert!(p["performedPeriod"]["end"]
        .as_str()
        .unwrap()
        .starts_with("2026-01-31T10:30:00"));

    // Two steps journalled (N-CREATE, N-SET), the second the whole step.
    let journalled = messages_of(&dir.path().join("journal.db"), "MPPS");
    let steps: Vec<serde_json::Value> = journalled
        .iter()
        .map(|m| serde_json::from_slice(&m.envelope.payload).unwrap())
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["status"], "IN PROGRESS");
    let last = &steps[1];
    assert_eq!(last["status"], "COMPLETED");
    assert_eq!(last["station_ae"], "CT1");
    assert_eq!(last["modality"], "CT");
    assert_eq!(last["study_uid"], "1.2.826.0.1.3680043.10.1234.31");
    assert_eq!(
        last["performed_series"][0]["instances"][0],
        "1.2.826.0.1.3680043.10.1234.31.1.1"
    );
    assert!(last.get("patient_name").is_none());

    let bundle = ecko_fhir::apply(
        "dicom-fhir",
        &journalled[1],
        &ecko_fhir::TransformContext::default(),
    )
    .unwrap();
    let file = dir.path().join("procedure-bundle.json");
    std::fs::write(&file, bundle).unwrap();
    validate_with_fhir_resources(&[file]).unwrap();
}

#[test]
fn associations_from_titles_not_allowed_or_to_another_title_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let echo = |called: &str, calling: &str| {
        let out = Command::new("echoscu")
            .args(["-aec", called, "-aet", calling, "127.0.0.1"])
            .arg(scp.to_string())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    assert!(echo("ECKO", "ECHOSCU").0);
    let (ok, text) = echo("OTHER", "ECHOSCU");
    assert!(
        !ok && text.contains("Called AE Title Not Recognized"),
        "{text}"
    );
    let (ok, text) = echo("ECKO", "INTRUDER");
    assert!(
        !ok && text.contains("Calling AE Title Not Recognized"),
        "{text}"
    );
}

#[test]
fn a_journal_that_refuses_answers_out_of_resources_and_keeps_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    // A reserve no disk has: every ingest is refused as "disk full".
    let cfg = config(dir.path(), scp, pacs_port, "min_free_disk = \"1000 TiB\"");
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let (_, text) = storescu(scp, &[], &[samples().join("CT_small.dcm")]);
    assert!(
        text.contains("Received Store Response (Refused: OutOfResources)"),
        "{text}"
    );
    let files: Vec<_> = walk(&dir.path().join("dicom/modalities"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm" || e == "part"))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn after_a_sigkill_during_a_burst_every_instance_answered_success_is_on_disk_and_in_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let acked = dir.path().join("acked.txt");
    let mut sender = Command::new(peer_python("dicom-venv"))
        .arg(python_script("dicom_send.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            "2000",
            "1.2.826.0.1.3680043.10.1234.8",
            acked.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(60), || {
        std::fs::read_to_string(&acked)
            .map(|t| t.lines().count() >= 40)
            .unwrap_or(false)
    }));
    gw.kill();
    let _ = sender.wait();
    let acked_uids: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(acked_uids.len() < 2000, "the kill landed after the burst");
    let reader = JournalReader::open(&dir.path().join("journal.db")).unwrap();
    let mut journalled = BTreeMap::new();
    for id in reader.message_ids().unwrap() {
        let m = reader.message(id).unwrap().unwrap();
        let record: serde_json::Value = serde_json::from_slice(&m.envelope.payload).unwrap();
        journalled.insert(m.envelope.control_id.clone().unwrap_or_default(), record);
    }
    for uid in &acked_uids {
        let record = journalled
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} answered success but not journalled"));
        let file = record["file"].as_str().unwrap();
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            record["sha256"].as_str().unwrap(),
            "{file}"
        );
    }
}

/// Orthanc as the PACS, with its DICOM port and REST API (and DICOMweb
/// under `/dicom-web/`) on `dicom` and `http`; its storage under `dir`.
fn orthanc(dicom: u16, http: u16, dir: &Path) -> Pacs {
    std::fs::create_dir_all(dir.join("storage")).unwrap();
    let config = dir.join("orthanc.json");
    std::fs::write(
        &config,
        format!(
            r#"{{ "Name": "test", "StorageDirectory": "{d}/storage", "IndexDirectory": "{d}/storage",
  "DicomAet": "PACS", "DicomPort": {dicom}, "HttpPort": {http}, "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false, "DicomCheckCalledAet": true,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {{ "Enable": true, "Root": "/dicom-web/" }} }}"#,
            d = dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("orthanc.log")).unwrap();
    let child = Command::new("Orthanc")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("Orthanc: apt-get install orthanc (scripts/install-peers)");
    let pacs = Pacs(child);
    assert!(ecko_tests::wait_for_port(dicom, Duration::from_secs(20)));
    assert!(ecko_tests::wait_for_port(http, Duration::from_secs(20)));
    pacs
}

/// The SOP instance UIDs Orthanc holds, from its REST API.
fn orthanc_instances(http: u16) -> Vec<String> {
    let (status, _, body) = ecko_tests::http_exchange(
        http,
        "GET /instances?expand HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut uids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["MainDicomTags"]["SOPInstanceUID"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    uids.sort();
    uids
}

#[test]
fn a_study_forwarded_to_orthanc_is_there_instance_for_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port, http) = (free_port(), free_port(), free_port());
    let cfg = config(dir.path(), scp, pacs_port, "");
    let _orthanc = orthanc(pacs_port, http, &dir.path().join("orthanc"));
    let _gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    let acked = dir.path().join("acked.txt");
    let study = "1.2.826.0.1.3680043.10.1234.9";
    let out = Command::new(peer_python("dicom-venv"))
        .arg(python_script("dicom_send.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            "25",
            study,
            acked.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let mut expected: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        expected.len(),
        25,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    expected.sort();
    assert!(
        eventually(Duration::from_secs(60), || orthanc_instances(http).len()
            >= 25),
        "{} instances in Orthanc",
        orthanc_instances(http).len()
    );
    assert_eq!(orthanc_instances(http), expected);
}

#[test]
fn objects_sent_by_stow_rs_reach_orthancs_dicomweb_each_once_after_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port, http) = (free_port(), free_port(), free_port());
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "modalities"
type = "dicom"
listen = "127.0.0.1:{scp}"

[[endpoint]]
name = "archive"
type = "dicomweb"
url = "http://127.0.0.1:{http}/dicom-web/studies"
max_batch = 8
retry = {{ initial = "200ms", max = "1s" }}

[[route]]
name = "images"
from = ["modalities"]
message_types = ["DICOM"]
transform = "none"
to = ["archive"]
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&path, &dir.path().join("gw.log"), &[]);
    // Orthanc is not up yet: everything waits in the journal.
    let acked = dir.path().join("acked.txt");
    let out = Command::new(peer_python("dicom-venv"))
        .arg(python_script("dicom_send.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            "20",
            "1.2.826.0.1.3680043.10.1234.10",
            acked.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let mut expected: Vec<String> = std::fs::read_to_string(&acked)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        expected.len(),
        20,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    expected.sort();
    let mut sent = storescu(
        scp,
        &[],
        &[samples().join("MR_small.dcm"), samples().join("rtplan.dcm")],
    );
    assert!(sent.0, "{}", std::mem::take(&mut sent.1));
    expected.extend(sop_uids(&[
        samples().join("MR_small.dcm"),
        samples().join("rtplan.dcm"),
    ]));
    expected.sort();
    std::thread::sleep(Duration::from_secs(1));
    let _orthanc = orthanc(pacs_port, http, &dir.path().join("orthanc"));
    assert!(
        eventually(Duration::from_secs(60), || orthanc_instances(http).len()
            >= expected.len()),
        "{} of {} in Orthanc; log: {}",
        orthanc_instances(http).len(),
        expected.len(),
        std::fs::read_to_string(&gw.log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(orthanc_instances(http), expected);
}

#[test]
fn garbage_a_stalled_pdu_and_a_pdu_over_the_maximum_end_the_association_without_hanging() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (scp, pacs_port) = (free_port(), free_port());
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "modalities"
type = "dicom"
listen = "127.0.0.1:{scp}"
association_timeout = "2s"
dimse_timeout = "2s"

[[endpoint]]
name = "pacs"
type = "dicom"
connect = "127.0.0.1:{pacs_port}"

[[route]]
name = "images"
from = ["modalities"]
message_types = ["DICOM"]
to = ["pacs"]
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let _gw = Gateway::start(&path, &dir.path().join("gw.log"), &[]);
    // Each case: bytes sent, then the gateway must close within 10 s.
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("nothing at all", Vec::new()),
        (
            "a PDU that stops half way",
            vec![0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01],
        ),
        (
            "a PDU announcing 4 GB",
            vec![0x04, 0x00, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3],
        ),
    ];
    for (what, bytes) in cases {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", scp)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bytes).unwrap();
        let started = std::time::Instant::now();
        let mut sink = Vec::new();
        let closed = s.read_to_end(&mut sink).is_ok();
        assert!(
            closed && started.elapsed() < Duration::from_secs(9),
            "{what}: not closed"
        );
    }
    // The endpoint still serves.
    let echo = Command::new("echoscu")
        .args(["-aec", "ECKO", "127.0.0.1"])
        .arg(scp.to_string())
        .status()
        .unwrap();
    assert!(echo.success());
}

/// An A-ASSOCIATE-RQ from `MOD` to `ECKO` proposing Verification in
/// Implicit VR Little Endian as presentation context 1.
fn associate_request() -> Vec<u8> {
    fn item(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut b = vec![kind, 0];
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }
    let mut context = vec![1, 0, 0, 0];
    context.extend(item(0x30, b"1.2.840.10008.1.1"));
    context.extend(item(0x40, b"1.2.840.10008.1.2"));
    let mut body = vec![0, 1, 0, 0];
    body.extend_from_slice(format!("{:<16}{:<16}", "ECKO", "MOD").as_bytes());
    body.extend_from_slice(&[0; 32]);
    body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
    body.extend(item(0x20, &context));
    body.extend(item(
        0x50,
        &[item(0x51, &16384u32.to_be_bytes()), item(0x52, b"1.2.3.4")].concat(),
    ));
    let mut pdu = vec![0x01, 0];
    pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
    pdu.extend(body);
    pdu
}

fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_command_set_declaring_gigabytes_in_a_few_bytes_is_refused_without_taking_the_memory() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let scp = free_port();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "modalities"
type = "dicom"
listen = "127.0.0.1:{scp}"
dimse_timeout = "2s"
"#,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&path, &dir.path().join("gw.log"), &[]);
    let before = peak_rss_kib(gw.pid());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", scp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&associate_request()).unwrap();
    let mut header = [0u8; 6];
    s.read_exact(&mut header).unwrap();
    assert_eq!(header[0], 0x02, "the association is accepted");
    let mut accept = vec![0u8; u32::from_be_bytes(header[2..6].try_into().unwrap()) as usize];
    s.read_exact(&mut accept).unwrap();
    // A command set of 12 bytes: (0000,0002) declaring 3.5 GB, 4 given.
    let mut command = vec![0x00, 0x00, 0x02, 0x00];
    command.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
    command.extend_from_slice(b"1.2.");
    let mut pdv = ((command.len() + 2) as u32).to_be_bytes().to_vec();
    pdv.extend_from_slice(&[1, 0x03]);
    pdv.extend(command);
    let mut data = vec![0x04, 0];
    data.extend_from_slice(&(pdv.len() as u32).to_be_bytes());
    data.extend(pdv);
    s.write_all(&data).unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = s.read_to_end(&mut answer).is_ok();
    assert!(
        closed && started.elapsed() < Duration::from_secs(9),
        "the association is not ended"
    );
    let after = peak_rss_kib(gw.pid());
    assert!(
        after < before + 100 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap();
    assert!(log.contains("declares 3519021056 bytes"), "{log}");
    // The endpoint still serves.
    let echo = Command::new("echoscu")
        .args(["-aec", "ECKO", "127.0.0.1"])
        .arg(scp.to_string())
        .status()
        .unwrap();
    assert!(echo.success());
}
