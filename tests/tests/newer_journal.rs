//! The older firmware slot on a journal a newer gateway wrote (after a
//! fallback, both slots share the data partition): it refuses loudly and
//! stays up read-only. The journal's `user_version` is raised past this
//! build's schema with Python's sqlite3; the gateway starts, says why in its
//! log, answers python-hl7's MLLP client with a negative acknowledgement
//! naming the reason, `/readyz` is 503 with it, and after the run the
//! journal file is byte for byte what the newer gateway left.

use ecko_gateway::journal::SCHEMA_VERSION;
use ecko_tests::{
    free_port, hl7_sample, http_exchange, mllp_ack_code, peer_python, python_script, Gateway,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn config(d: &Path, mllp: u16, admin: u16, fhir: u16) -> std::path::PathBuf {
    let path = d.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"[journal]
path = "{data}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "http://127.0.0.1:{fhir}/fhir/R4"

[[route]]
name = "results"
from = ["lab"]
transform = "hl7v2-fhir"
to = ["hub"]

[admin]
listen = "127.0.0.1:{admin}"
tls = false
"#,
            data = d.display()
        ),
    )
    .unwrap();
    path
}

fn oru(control_id: &str) -> Vec<u8> {
    let text = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    text.replacen("XN20260314093015001", control_id, 1)
        .into_bytes()
}

/// What a newer gateway's migration leaves: a higher `user_version` (and a
/// table this build does not know), committed and checkpointed by SQLite
/// itself.
fn write_as_a_newer_gateway(journal: &Path, version: i64) {
    let script = format!(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute('CREATE TABLE later_feature (id INTEGER PRIMARY KEY)')\n\
         c.execute('PRAGMA user_version = {version}')\n\
         c.commit()\n\
         c.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n\
         c.close()\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(journal)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn an_older_gateway_on_a_newer_journal_stays_up_read_only_refusing_messages_and_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mllp, admin, fhir) = (free_port(), free_port(), free_port());
    let config = config(d, mllp, admin, fhir);
    let log = d.join("log");
    let journal = d.join("journal.db");

    // The journal as this build writes it, with a message still queued.
    let gw = Gateway::start(&config, &log, &[]);
    assert_eq!(mllp_ack_code(mllp, &oru("OLDER-1")), "AA");
    gw.terminate();
    let newer = SCHEMA_VERSION + 1;
    write_as_a_newer_gateway(&journal, newer);
    let before = std::fs::read(&journal).unwrap();

    let from = std::fs::metadata(&log).unwrap().len();
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log(
        &format!("written by a newer gateway (schema version {newer}"),
        from,
        Duration::from_secs(5),
    );

    let message = d.join("m.hl7");
    std::fs::write(&message, oru("OLDER-2")).unwrap();
    let out = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7_async_client.py"))
        .arg(mllp.to_string())
        .arg(&message)
        .output()
        .unwrap();
    let ack = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{ack}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ack.contains("MSA|AR|OLDER-2") || ack.contains("MSA|AE|OLDER-2"),
        "a negative acknowledgement: {ack}"
    );
    assert!(
        ack.contains("newer gateway"),
        "the ACK names the reason: {ack}"
    );

    let (status, _, body) = http_exchange(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(status, 503, "{body}");
    assert_eq!(ready["journal"]["status"], "failing", "{ready}");
    let detail = ready["journal"]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("newer gateway") && detail.contains("read-only"),
        "{ready}"
    );

    // Still up, and stopped cleanly, the journal untouched all along.
    assert_eq!(mllp_ack_code(mllp, &oru("OLDER-3")).len(), 2);
    // The delivery worker polls every second; each refused lease is not a
    // new error line.
    std::thread::sleep(Duration::from_millis(2500));
    let exit = gw.terminate();
    assert_eq!(exit, Some(0), "a read-only run stops as cleanly as any");
    let text = std::fs::read_to_string(&log).unwrap();
    let run = &text[from as usize..];
    assert_eq!(
        run.matches("cannot lease from the journal").count(),
        1,
        "said once for the one destination:\n{run}"
    );
    assert!(
        std::fs::read(&journal).unwrap() == before,
        "the newer gateway's journal was changed"
    );
}
