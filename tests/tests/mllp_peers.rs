//! The MLLP listener and sender against HL7 peers written by others:
//! python-hl7's `mllp_send` and asyncio client, hl7apy's MLLP server and its
//! strict validator.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ORU: &str = "oru_r01_v251.hl7";

fn oru(control_id: &str, patient: &str) -> String {
    String::from_utf8(hl7_sample(ORU))
        .unwrap()
        .replace("XN20260314093015001", control_id)
        .replace("4711^^^ST-MARY^MR", &format!("{patient}^^^ST-MARY^MR"))
}

fn config(dir: &Path, mllp_port: u16, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp_port}"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/archive"

[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^*", "ADT^*"]
to = ["archive"]
{extra}
"#,
        d = dir.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Sends raw frames over one connection and returns the ACK bytes.
fn exchange(port: u16, message: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x0b").unwrap();
    s.write_all(message).unwrap();
    s.write_all(b"\x1c\r").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"\x1c\r") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the ACK");
        out.extend_from_slice(&buf[..n]);
    }
    out[1..out.len() - 2].to_vec()
}

#[test]
fn mllp_send_delivers_a_file_of_messages_each_journalled_once_even_when_sent_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(tmp.path(), port, "");
    let _gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    let file = tmp.path().join("messages.hl7");
    let text: Vec<String> = (1..=3)
        .map(|i| oru(&format!("SEND{i}"), "P1").replace('\r', "\n"))
        .collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    for round in 0..2 {
        let out = Command::new(peer_tool("venv-hl7", "mllp_send"))
            .args(["--loose", "-p", &port.to_string(), "-f"])
            .arg(&file)
            .arg("127.0.0.1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 1..=3 {
            assert!(
                stdout.contains(&format!("MSA|AA|SEND{i}")),
                "round {round}: {stdout}"
            );
        }
    }
    let reader = JournalReader::open(&tmp.path().join("journal.db")).unwrap();
    assert_eq!(reader.message_ids().unwrap().len(), 3);
}

#[test]
fn the_asyncio_client_gets_one_aa_per_message_on_a_single_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(tmp.path(), port, "");
    let gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    let mut files = Vec::new();
    for i in 1..=5 {
        let f = tmp.path().join(format!("m{i}.hl7"));
        std::fs::write(&f, oru(&format!("ASYNC{i}"), "P2")).unwrap();
        files.push(f);
    }
    let out = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7_async_client.py"))
        .arg(port.to_string())
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks: Vec<&str> = stdout.lines().collect();
    assert_eq!(acks.len(), 5, "{stdout}");
    for (i, ack) in acks.iter().enumerate() {
        assert!(ack.contains(&format!("MSA|AA|ASYNC{}", i + 1)), "{ack}");
    }
    let log = std::fs::read_to_string(&gw.log).unwrap();
    assert_eq!(
        log.matches("connection opened").count(),
        1,
        "one connection for all five:\n{log}"
    );
}

#[test]
fn every_ack_the_gateway_builds_passes_hl7apy_strict_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(tmp.path(), port, "");
    let _gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("aa-oru", oru("V1", "P3").into_bytes(), "MSA|AA|V1"),
        ("aa-adt", hl7_sample("adt_a01_v25.hl7"), "MSA|AA|"),
        ("aa-latin1", hl7_sample("adt_a08_latin1.hl7"), "MSA|AA|"),
        ("aa-resend", oru("V1", "P3").into_bytes(), "MSA|AA|V1"),
        (
            "ar-no-route",
            oru("V2", "P3")
                .replace("ORU^R01^ORU_R01", "SIU^S12^SIU_S12")
                .into_bytes(),
            "MSA|AR|V2",
        ),
        (
            "ae-bad-charset",
            oru("V3", "P3")
                .replacen("|P|2.5.1", "|P|2.5.1||||||KLINGON", 1)
                .into_bytes(),
            "MSA|AE|V3",
        ),
    ];
    let mut files = Vec::new();
    for (name, message, expect) in &cases {
        let ack = exchange(port, message);
        let text = String::from_utf8_lossy(&ack).into_owned();
        assert!(text.contains(expect), "{name}: {text}");
        let file = tmp.path().join(format!("{name}.ack"));
        std::fs::write(&file, &ack).unwrap();
        files.push(file);
    }
    let out = Command::new(peer_python("venv-hl7"))
        .arg(python_script("validate_ack.py"))
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("ok ").count(), cases.len(), "{stdout}");
}

#[test]
fn the_mllp_sender_delivers_to_hl7apys_server_and_records_its_acks() {
    let tmp = tempfile::tempdir().unwrap();
    let far_port = free_port();
    let received = tmp.path().join("received");
    std::fs::create_dir_all(&received).unwrap();
    let mut server = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7apy_server.py"))
        .arg(far_port.to_string())
        .arg(&received)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(far_port, Duration::from_secs(10)),
        "hl7apy server did not start"
    );

    let port = free_port();
    let forward = format!(
        r#"
[[endpoint]]
name = "lis"
type = "mllp"
connect = "127.0.0.1:{far_port}"
ack_timeout = "5s"
[endpoint.retry]
initial = "100ms"
max = "1s"

[[route]]
name = "forward"
from = ["lab"]
message_types = ["ORU^*"]
to = ["lis"]
"#
    );
    let cfg = config(tmp.path(), port, &forward);
    let gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    for i in 1..=5 {
        let ack = exchange(port, oru(&format!("FWD{i}"), "P4").as_bytes());
        assert!(String::from_utf8_lossy(&ack).contains("MSA|AA|"));
    }
    let db = tmp.path().join("journal.db");
    let delivered = eventually(Duration::from_secs(30), || {
        JournalReader::open(&db)
            .and_then(|r| r.counts())
            .is_ok_and(|c| c.iter().any(|c| c.destination == "lis" && c.delivered == 5))
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        delivered,
        "not all delivered:\n{}",
        std::fs::read_to_string(&gw.log).unwrap()
    );
    for i in 1..=5 {
        let got = std::fs::read_to_string(received.join(format!("FWD{i}.hl7"))).unwrap();
        assert!(
            got.replace('\n', "\r")
                .starts_with("MSH|^~\\&|XN-1000^SYSMEX^L|HEMA-LAB|LIS|ST-MARY|"),
            "{got}"
        );
        assert!(got.contains(&format!("|FWD{i}|")));
    }
    let reader = JournalReader::open(&db).unwrap();
    for id in reader.message_ids().unwrap() {
        for row in reader
            .outbox_of(id)
            .unwrap()
            .iter()
            .filter(|r| r.destination == "lis")
        {
            assert_eq!(row.state, OutboxState::Delivered);
            let events = reader.events_of(id).unwrap();
            let attempt = events
                .iter()
                .find(|e| e.outbox_id == Some(row.id) && e.outcome.as_deref() == Some("delivered"))
                .unwrap();
            assert!(
                attempt.detail.as_deref().unwrap().starts_with("AA"),
                "{attempt:?}"
            );
        }
    }
}
