//! A message no destination can take is refused to its sender, who keeps
//! it, instead of acknowledged and then dead-lettered: python-hl7's MLLP
//! client gets an AE (valid for hl7apy's strict parser) and python-astm's
//! client sees its message rejected, and the journal holds nothing of it,
//! while the next good message on the same connection is taken.

mod astm_common;

use ecko_gateway::journal::JournalReader;
use ecko_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// An MLLP and an ASTM listener whose messages go to the hub as FHIR (a
/// server nobody runs: rows wait queued) and to an archive.
fn config(dir: &Path, mllp: u16, astm: u16) -> PathBuf {
    let text = format!(
        r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "astm"
type = "astm-tcp"
address = "127.0.0.1:{astm}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "http://127.0.0.1:9/fhir"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/archive"

[[route]]
name = "hl7-to-hub"
from = ["lab"]
message_types = ["ORU", "ADT"]
transform = "hl7v2-fhir"
to = ["hub"]

[[route]]
name = "astm-to-hub"
from = ["astm"]
message_types = ["ASTM"]
transform = "astm-fhir"
to = ["hub"]

[[route]]
name = "archive"
from = ["lab", "astm"]
to = ["archive"]
"#,
        d = dir.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Each message in the journal: (type, rows per destination state).
fn journalled(dir: &Path) -> Vec<(String, Vec<(String, String)>)> {
    let r = JournalReader::open(&dir.join("journal.db")).unwrap();
    r.message_ids()
        .unwrap()
        .into_iter()
        .map(|id| {
            let m = r.message(id).unwrap().unwrap();
            let rows = r
                .outbox_of(id)
                .unwrap()
                .into_iter()
                .map(|o| (o.destination, o.state.as_str().to_string()))
                .collect();
            (m.message_type.clone(), rows)
        })
        .collect()
}

const ADT_WITHOUT_PID: &str =
    "MSH|^~\\&|HIS|WARD|HUB|H|20260101120000||ADT^A01|ADT1|P|2.5\rEVN|A01|20260101120000\r";

#[test]
fn an_hl7_message_the_fhir_transform_cannot_map_gets_ae_and_is_not_journalled() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, astm) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, astm);
    let mut gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    gw.wait_for_log("gateway running", 0, Duration::from_secs(20));

    let bad = dir.path().join("adt.hl7");
    std::fs::write(&bad, ADT_WITHOUT_PID).unwrap();
    let good = dir.path().join("oru.hl7");
    std::fs::write(&good, hl7_sample("oru_r01_v251.hl7")).unwrap();
    let out = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7_async_client.py"))
        .arg(mllp.to_string())
        .args([&bad, &good])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks: Vec<String> = stdout.lines().map(|l| l.replace("\\r", "\r")).collect();
    assert_eq!(acks.len(), 2, "{stdout}");
    assert_eq!(msa_code(&acks[0]), "AE", "{}", acks[0]);
    assert!(
        acks[0]
            .contains("destination `hub` cannot take the message: transform `hl7v2-fhir` failed"),
        "{}",
        acks[0]
    );
    assert_eq!(msa_code(&acks[1]), "AA", "{}", acks[1]);

    let ack_file = dir.path().join("ae.ack");
    std::fs::write(&ack_file, &acks[0]).unwrap();
    let valid = Command::new(peer_python("venv-hl7"))
        .arg(python_script("validate_ack.py"))
        .arg(&ack_file)
        .output()
        .unwrap();
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );
    assert_eq!(gw.terminate(), Some(0));

    let stored = journalled(dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "ORU^R01");
    assert!(
        stored[0].1.iter().all(|(_, state)| state != "dead"),
        "{stored:?}"
    );
}

#[test]
fn an_astm_message_without_results_is_rejected_to_python_astm_and_not_journalled() {
    use astm_common::{analyzer_output, message_file, RESULT_1};
    let dir = tempfile::tempdir().unwrap();
    let (mllp, astm) = (free_port(), free_port());
    let cfg = config(dir.path(), mllp, astm);
    let mut gw = Gateway::start(&cfg, &dir.path().join("gw.log"), &[]);
    gw.wait_for_log("gateway running", 0, Duration::from_secs(20));

    let orders_only = "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405\rP|1||PID1||Doe^Jane\rO|1|SPEC1||^^^GLU|R\rL|1|N\r";
    let bad = message_file(dir.path(), "bad.astm", orders_only);
    let port = astm.to_string();
    let refused = analyzer_output(&["send", &port, &bad]);
    assert!(refused.contains("was rejected"), "{refused}");
    let good = message_file(dir.path(), "good.astm", RESULT_1);
    let taken = analyzer_output(&["send", &port, &good]);
    assert!(!taken.contains("was rejected"), "{taken}");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(dir.path().join("archive"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 1
    }));
    assert_eq!(gw.terminate(), Some(0));

    let stored = journalled(dir.path());
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].0, "ASTM");
}
