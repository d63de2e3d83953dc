//! The drop folder with the real binary: an HL7 file whose bytes are not
//! valid in its character set is set aside with the reason, never stored
//! with replacement characters; `on_invalid_text = "replace"` opts back in.

use ecko_tests::{eventually, Gateway};
use std::path::Path;
use std::time::Duration;

fn config(dir: &Path, on_invalid_text: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
message_type = "ORU^R01"
poll_interval = "20ms"
{on_invalid_text}

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/outbox"

[[route]]
name = "all"
from = ["inbox"]
to = ["archive"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

fn oru(control: &str, name: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|LAB|HOSP|HIS|HOSP|20260312101500||ORU^R01|{control}|P|2.5.1||||||UNICODE UTF-8\rPID|1||P1||"
    )
    .into_bytes();
    m.extend_from_slice(name);
    m.extend_from_slice(b"\rOBR|1||S1|GLU\rOBX|1|NM|GLU||5.4|mmol/L|||||F\r");
    m
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Drops a good file and one with a lone 0xFC in PID-5; returns when the
/// folder is empty.
fn drop_both(dir: &Path) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("good.hl7"), oru("G1", "Müller^Jörg".as_bytes())).unwrap();
    std::fs::write(inbox.join("bad.hl7"), oru("B1", b"M\xFCller^Hans")).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || files(&inbox)
            .iter()
            .all(|f| f == "rejected")),
        "{:?}",
        files(&inbox)
    );
}

#[test]
fn an_hl7_file_with_bytes_invalid_in_its_charset_is_set_aside_with_the_reason_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let gw = Gateway::start(&cfg, &dir.path().join("gateway.log"), &[]);
    drop_both(dir.path());
    let outbox = dir.path().join("outbox");
    let rejected = dir.path().join("inbox/rejected");
    assert!(
        eventually(Duration::from_secs(20), || files(&outbox).len() == 1),
        "outbox {:?}, rejected {:?}",
        files(&outbox),
        files(&rejected)
    );
    let rejected = dir.path().join("inbox/rejected");
    assert_eq!(files(&rejected), ["bad.hl7", "bad.hl7.reason"]);
    let reason = std::fs::read_to_string(rejected.join("bad.hl7.reason")).unwrap();
    assert!(
        reason.starts_with("PID-5 (segment 2)") && reason.contains("UNICODE UTF-8"),
        "{reason}"
    );
    // The file set aside is the sender's, byte for byte.
    assert_eq!(
        std::fs::read(rejected.join("bad.hl7")).unwrap(),
        oru("B1", b"M\xFCller^Hans")
    );
    // Only the good message was stored.
    let stored = std::fs::read(outbox.join(&files(&outbox)[0])).unwrap();
    assert!(stored.windows(2).any(|w| w == b"G1"));
    drop(gw);
}

#[test]
fn with_replace_the_file_is_stored_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "on_invalid_text = \"replace\"");
    let gw = Gateway::start(&cfg, &dir.path().join("gateway.log"), &[]);
    drop_both(dir.path());
    let outbox = dir.path().join("outbox");
    assert!(eventually(Duration::from_secs(20), || files(&outbox).len() == 2));
    assert!(files(&dir.path().join("inbox/rejected")).is_empty());
    drop(gw);
}
