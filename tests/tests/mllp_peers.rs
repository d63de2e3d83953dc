//! The MLLP listener and sender against HL7 peers written by others:
//! python-hl7's `mllp_send` and asyncio client, hl7apy's MLLP server and its
//! strict validator.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_protocol::hl7::{Message, ParseOptions};
use ecko_protocol::mllp;
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
    config_with(dir, mllp_port, "", extra)
}

/// `lab_settings` go into the listener's own table.
fn config_with(dir: &Path, mllp_port: u16, lab_settings: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp_port}"
{lab_settings}

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/archive"

[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^*", "ADT^*", "OUL^*"]
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
    read_frame(&mut s)
}

/// The next answer on `s`, without its frame.
fn read_frame(s: &mut std::net::TcpStream) -> Vec<u8> {
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
fn frames_with_no_message_get_no_answer_and_the_connection_serves_the_next_message() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(tmp.path(), port, "");
    let _gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // An empty frame and one of line ends only, then a message.
    s.write_all(b"\x0b\x1c\r\x0b\r\n\r\x1c\r").unwrap();
    s.write_all(b"\x0b").unwrap();
    s.write_all(oru("EF1", "P3").as_bytes()).unwrap();
    s.write_all(b"\x1c\r").unwrap();
    let out = read_frame(&mut s);
    let text = String::from_utf8_lossy(&out);
    // The first and only answer is the message's.
    assert_eq!(text.matches("MSA|").count(), 1, "{text}");
    assert!(text.contains("MSA|AA|EF1"), "{text}");
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

/// Runs hl7apy's strict validator over ACK files; every one must pass.
fn assert_valid_acks(files: &[std::path::PathBuf]) {
    let out = Command::new(peer_python("venv-hl7"))
        .arg(python_script("validate_ack.py"))
        .args(files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("ok ").count(), files.len(), "{stdout}");
}

fn with_msh15_16(message: &str, msh15_16: &str) -> String {
    message.replacen("|P|2.5.1", &format!("|P|2.5.1|||{msh15_16}"), 1)
}

#[test]
fn every_ack_the_gateway_builds_passes_hl7apy_strict_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let closed_port = free_port();
    let closed = format!(
        r#"
[[endpoint]]
name = "closed"
type = "mllp"
listen = "127.0.0.1:{closed_port}"
enabled = false

[[route]]
name = "closed"
from = ["closed"]
to = ["archive"]
"#
    );
    let cfg = config_with(tmp.path(), port, "max_message_size = \"64 KiB\"", &closed);
    let _gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    // A second gateway whose disk is "full": it must refuse everything.
    let full_dir = tempfile::tempdir().unwrap();
    let full_port = free_port();
    let full_cfg = config(full_dir.path(), full_port, "");
    let text = std::fs::read_to_string(&full_cfg)
        .unwrap()
        .replace("[journal]\n", "[journal]\nmin_free_disk = \"1000 TiB\"\n");
    std::fs::write(&full_cfg, text).unwrap();
    let _full = Gateway::start(&full_cfg, &full_dir.path().join("log"), &[]);

    let mut latin1 = hl7_sample("adt_a08_latin1.hl7");
    let at = latin1.windows(5).position(|w| w == b"|HIS|").unwrap();
    latin1.splice(at + 1..at + 4, b"HIS S\xfcd".iter().copied());
    let mut big = oru("BIG1", "P3").into_bytes();
    big.extend(std::iter::repeat_n(b'x', 100 * 1024));

    let cases: Vec<(&str, u16, Vec<u8>, &str)> = vec![
        ("aa-oru", port, oru("V1", "P3").into_bytes(), "MSA|AA|V1"),
        (
            "aa-adt",
            port,
            hl7_sample("adt_a01_v25.hl7"),
            "MSA|AA|ADT000123",
        ),
        ("aa-latin1", port, latin1, "MSA|AA|"),
        ("aa-resend", port, oru("V1", "P3").into_bytes(), "MSA|AA|V1"),
        (
            "ar-no-route",
            port,
            oru("V2", "P3")
                .replace("ORU^R01^ORU_R01", "SIU^S12^SIU_S12")
                .into_bytes(),
            "MSA|AR|V2",
        ),
        (
            "ar-bad-charset",
            port,
            oru("V3", "P3")
                .replacen("|P|2.5.1", "|P|2.5.1||||||KLINGON", 1)
                .into_bytes(),
            "MSA|AR|V3",
        ),
        (
            "ar-no-msh",
            port,
            b"PID|1||4711\rOBX|1|NM|GLU||5\r".to_vec(),
            "MSA|AR|",
        ),
        (
            "ar-bad-separators",
            port,
            b"MSH|^~^&|A|B|C|D|20260101||ORU^R01|SEP1|P|2.5.1\rPID|1\r".to_vec(),
            "MSA|AR|",
        ),
        (
            "ar-missing-msh9",
            port,
            b"MSH|^~\\&|A|B|C|D|20260101|||M9|P|2.5.1\rPID|1\r".to_vec(),
            "MSA|AR|M9",
        ),
        (
            "ar-missing-msh10",
            port,
            b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01||P|2.5.1\rPID|1\r".to_vec(),
            "MSA|AR|",
        ),
        (
            "ae-invalid-utf8",
            port,
            b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|U1|P|2.5.1||||||UNICODE UTF-8\rPID|1||4711||M\xfcller^Hans\r".to_vec(),
            "MSA|AE|U1",
        ),
        (
            "ar-processing-id",
            port,
            oru("PI1", "P3").replacen("|P|2.5.1", "|X|2.5.1", 1).into_bytes(),
            "MSA|AR|PI1",
        ),
        (
            "ar-version",
            port,
            oru("VR1", "P3").replacen("|P|2.5.1", "|P|3.0", 1).into_bytes(),
            "MSA|AR|VR1",
        ),
        (
            "ae-not-a-segment",
            port,
            format!("{}this is not a segment\r", oru("NS1", "P3")).into_bytes(),
            "MSA|AE|NS1",
        ),
        ("ar-too-large", port, big, "MSA|AR|BIG1"),
        (
            "ar-disk-full",
            full_port,
            oru("F1", "P3").into_bytes(),
            "MSA|AR|F1",
        ),
        (
            "ar-disabled",
            closed_port,
            oru("D1", "P3").into_bytes(),
            "MSA|AR|D1",
        ),
        (
            "ca-enhanced",
            port,
            with_msh15_16(&oru("E1", "P3"), "AL|NE").into_bytes(),
            "MSA|CA|E1",
        ),
        (
            "cr-enhanced-no-msh9",
            port,
            b"MSH|^~\\&|A|B|C|D|20260101|||E2|P|2.5.1|||AL|NE\rPID|1\r".to_vec(),
            "MSA|CR|E2",
        ),
        (
            "cr-enhanced",
            port,
            with_msh15_16(&oru("E3", "P3"), "AL|NE")
                .replace("ORU^R01^ORU_R01", "SIU^S12^SIU_S12")
                .into_bytes(),
            "MSA|CR|E3",
        ),
        (
            "ca-v27",
            port,
            hl7_sample("oul_r22_v27.hl7"),
            "MSA|CA|C8000-20260314-0042",
        ),
    ];
    let mut files = Vec::new();
    for (name, to, message, expect) in &cases {
        let ack = exchange(*to, message);
        let text = String::from_utf8_lossy(&ack).into_owned();
        assert!(text.contains(expect), "{name}: {text}");
        // ERR-3 as the README's answer table gives it, case by case.
        let err3 = match *name {
            "ar-no-msh" | "ae-not-a-segment" => Some("100"),
            "ar-missing-msh9" | "ar-missing-msh10" => Some("101"),
            "ar-bad-separators" | "ae-invalid-utf8" => Some("102"),
            "ar-bad-charset" => Some("103"),
            "ar-no-route" => Some("200"),
            "ar-processing-id" => Some("202"),
            "ar-version" => Some("203"),
            "ar-disk-full" | "ar-disabled" => Some("207"),
            _ => None,
        };
        if let Some(code) = err3 {
            assert!(
                text.contains(&format!("|{code}^")),
                "{name}: ERR-3 {code}: {text}"
            );
        }
        match *name {
            "ar-disk-full" => assert!(text.contains("disk"), "{text}"),
            "ar-disabled" => assert!(text.contains("disabled"), "{text}"),
            "ae-invalid-utf8" => {
                assert!(text.contains("ERR||PID^1^5"), "{text}");
                assert!(text.contains("|102^"), "{text}");
            }
            "ar-too-large" => assert!(text.contains("exceeds"), "{text}"),
            "ca-v27" => assert!(text.starts_with("MSH|^~\\&#|"), "{text}"),
            "aa-latin1" => {
                // The sender's Latin-1 comes back as Latin-1, byte for byte.
                assert!(ack.windows(7).any(|w| w == b"HIS S\xfcd"), "{text}");
                assert!(!ack.windows(2).any(|w| w == "ü".as_bytes()), "{text}");
                assert!(text.contains("|8859/1\r"), "{text}");
            }
            _ => {}
        }
        let file = tmp.path().join(format!("{name}.ack"));
        std::fs::write(&file, &ack).unwrap();
        files.push(file);
    }
    assert_valid_acks(&files);
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
    let order = std::fs::read_to_string(received.join("order.log")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["FWD1", "FWD2", "FWD3", "FWD4", "FWD5"],
        "arrival order at the far end"
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

/// The sender's own listener for application ACKs: stores each frame it
/// receives and commits it with a `CA`, as MSH-15 `AL` asks.
fn reply_listener() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let store = store.clone();
            std::thread::spawn(move || {
                let mut decoder = mllp::Decoder::default();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    decoder.push(&buf[..n], std::time::Instant::now());
                    while let Some(mllp::Event::Frame(frame)) = decoder.next_event() {
                        let msg = Message::parse(&frame, &ParseOptions::default()).unwrap();
                        let ca = format!(
                            "MSH|^~\\&|HIS|HOSP|GW|LAB|20260101000000||ACK^R01^ACK|HISCA|P|2.5.1\rMSA|CA|{}\r",
                            msg.identity().control_id
                        );
                        store.lock().unwrap().push(frame);
                        if s.write_all(&mllp::encode(ca.as_bytes())).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, got)
}

fn hl7apy_server(port: u16, dir: &Path, code: &str) -> std::process::Child {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7apy_server.py"))
        .arg(port.to_string())
        .arg(dir)
        .arg(code)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "hl7apy server did not start"
    );
    child
}

#[test]
fn a_sender_asking_al_al_gets_ca_now_and_the_destinations_aa_or_ae_later_on_its_reply_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok_port, bad_port) = (free_port(), free_port());
    let mut ok_far = hl7apy_server(ok_port, &tmp.path().join("ok"), "AA");
    let mut bad_far = hl7apy_server(bad_port, &tmp.path().join("bad"), "AE");
    let (reply_port, replies) = reply_listener();
    let port = free_port();
    let routes = format!(
        r#"
[[endpoint]]
name = "lis-ok"
type = "mllp"
connect = "127.0.0.1:{ok_port}"

[[endpoint]]
name = "lis-bad"
type = "mllp"
connect = "127.0.0.1:{bad_port}"

[[endpoint]]
name = "his-replies"
type = "mllp"
connect = "127.0.0.1:{reply_port}"

[[route]]
name = "results-to-lis"
from = ["lab"]
message_types = ["ORU^*"]
to = ["lis-ok"]
application_ack = "his-replies"

[[route]]
name = "admissions-to-lis"
from = ["lab"]
message_types = ["ADT^*"]
to = ["lis-bad"]
application_ack = "his-replies"
"#
    );
    let cfg = config(tmp.path(), port, &routes);
    let gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    let oru_al = with_msh15_16(&oru("APP1", "P9"), "AL|AL");
    let adt_al = String::from_utf8(hl7_sample("adt_a01_v25.hl7"))
        .unwrap()
        .replacen("|ADT000123|P|2.5", "|APP2|P|2.5|||AL|AL", 1);
    let oru_ne = with_msh15_16(&oru("APP3", "P9"), "AL|NE");
    let mut files = Vec::new();
    for (name, message, expect) in [
        ("commit-oru", &oru_al, "MSA|CA|APP1"),
        ("commit-adt", &adt_al, "MSA|CA|APP2"),
        ("commit-oru-ne", &oru_ne, "MSA|CA|APP3"),
    ] {
        let ack = exchange(port, message.as_bytes());
        assert!(String::from_utf8_lossy(&ack).contains(expect), "{name}");
        let file = tmp.path().join(format!("{name}.ack"));
        std::fs::write(&file, &ack).unwrap();
        files.push(file);
    }
    let arrived = eventually(Duration::from_secs(30), || {
        replies.lock().unwrap().len() >= 2
    });
    // APP3 asked for no application ACK: give it time to (wrongly) show up.
    std::thread::sleep(Duration::from_millis(500));
    let _ = (ok_far.kill(), bad_far.kill());
    let _ = (ok_far.wait(), bad_far.wait());
    assert!(
        arrived,
        "application ACKs missing:\n{}",
        std::fs::read_to_string(&gw.log).unwrap()
    );
    let got: Vec<String> = replies
        .lock()
        .unwrap()
        .iter()
        .map(|f| String::from_utf8(f.clone()).unwrap())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    let aa = got
        .iter()
        .find(|a| a.contains("\rMSA|AA|APP1"))
        .expect("AA for APP1");
    let ae = got
        .iter()
        .find(|a| a.contains("\rMSA|AE|APP2"))
        .expect("AE for APP2");
    for (ack, trigger) in [(aa, "R01"), (ae, "A01")] {
        let msh: Vec<&str> = ack.split('\r').next().unwrap().split('|').collect();
        assert_eq!(msh[8], format!("ACK^{trigger}^ACK"), "{ack}");
        assert!(
            !msh[9].is_empty() && !msh[9].starts_with("APP"),
            "a new MSH-10: {ack}"
        );
        assert_eq!((msh[14], msh[15]), ("AL", "NE"), "{ack}");
    }
    assert!(
        aa.starts_with("MSH|^~\\&|LIS|ST-MARY|XN-1000^SYSMEX^L|HEMA-LAB|"),
        "{aa}"
    );
    assert!(
        ae.contains("rejected by the far end"),
        "the destination's error: {ae}"
    );
    for (name, ack) in [("app-aa", aa), ("app-ae", ae)] {
        let file = tmp.path().join(format!("{name}.ack"));
        std::fs::write(&file, ack).unwrap();
        files.push(file);
    }
    assert_valid_acks(&files);
    // Each application ACK is journalled and was delivered like any message.
    let reader = JournalReader::open(&tmp.path().join("journal.db")).unwrap();
    let counts = reader.counts().unwrap();
    let his = counts
        .iter()
        .find(|c| c.destination == "his-replies")
        .unwrap();
    assert_eq!(his.delivered, 2, "{counts:?}");
}
