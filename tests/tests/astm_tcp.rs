//! The ASTM TCP endpoint against python-astm 0.5.0 as the analyzer.

mod astm_common;

use astm_common::*;
use ecko_tests::{eventually, gateway_binary, Gateway};
use std::process::{Command, Stdio};
use std::time::Duration;

fn tcp_endpoint(port: u16) -> String {
    format!("[[endpoint]]\nname = \"astm\"\ntype = \"astm-tcp\"\naddress = \"127.0.0.1:{port}\"")
}

/// Results sent by python-astm's client arrive in the journal exactly once,
/// byte for byte as records + CR, and a resend of the same message (after a
/// lost ACK the analyzer sends it again) is acknowledged but not queued
/// twice.
#[test]
fn python_astm_results_arrive_in_the_journal_exactly_once_even_when_resent() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &tcp_endpoint(port));
    let mut gw = Gateway::start(&config, &dir.path().join("gw.log"), &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    let m2 = message_file(dir.path(), "m2.astm", RESULT_2);
    let port = port.to_string();
    analyzer(&["send", &port, &m1, &m2]);
    analyzer(&["send", &port, &m1]);
    let outbox = dir.path().join("outbox");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) == 2
    }));
    assert_eq!(gw.terminate(), Some(0));

    let stored = results(&dir.path().join("journal.db"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].payload, RESULT_1.as_bytes());
    assert_eq!(stored[1].payload, RESULT_2.as_bytes());
    assert_eq!(stored[0].content_type, "application/x-astm");
    assert_eq!(stored[1].patient_id.as_deref(), Some("PID2"));
}

/// A host query gets its orders back, from the orders kept in the journal
/// (added with the CLI while the gateway runs), in a new session whose
/// frames python-astm's codec decodes and checksums; the order is then
/// marked sent. An unknown specimen gets the no-information answer.
#[test]
fn a_host_query_gets_its_orders_back_from_the_local_copy() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &tcp_endpoint(port));
    let mut gw = Gateway::start(&config, &dir.path().join("gw.log"), &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    let added = Command::new(gateway_binary())
        .args(["order", "add", "--config"])
        .arg(&config)
        .args([
            "--analyzer",
            "astm",
            "--specimen",
            "SPEC9",
            "--test",
            "GLU",
            "--test",
            "NA",
            "--patient",
            "P9",
            "--name",
            "Doe^John",
        ])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let port = port.to_string();
    let answer: serde_json::Value =
        serde_json::from_str(&analyzer(&["query", &port, "SPEC9"])).unwrap();
    let records = answer.as_array().unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(kinds, ["H", "P", "O", "L"], "{answer}");
    assert_eq!(records[1][2], "P9");
    assert_eq!(records[2][2], "SPEC9");
    assert_eq!(records[2][4][0][3], "GLU");
    assert_eq!(records[2][4][1][3], "NA");

    let none: serde_json::Value =
        serde_json::from_str(&analyzer(&["query", &port, "UNKNOWN"])).unwrap();
    let kinds: Vec<&str> = none
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["H", "L"], "{none}");
    assert_eq!(none[1][2], "I");

    let listed = || {
        let out = Command::new(gateway_binary())
            .args(["order", "list", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        eventually(Duration::from_secs(5), || listed().contains("sent")),
        "{}",
        listed()
    );
    assert_eq!(gw.terminate(), Some(0));
}

/// `ecko-gateway trace ENDPOINT` runs the gateway and prints the line
/// traffic with timestamps and named control characters.
#[test]
fn the_trace_command_shows_the_line_traffic_with_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &tcp_endpoint(port));
    let out_path = dir.path().join("trace.out");
    let mut trace = Command::new(gateway_binary())
        .args(["trace", "astm", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    if up {
        analyzer(&["send", &port.to_string(), &m1]);
    }
    let text = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let seen = eventually(Duration::from_secs(5), || text().contains("<EOT>"));
    let _ = trace.kill();
    let _ = trace.wait();
    assert!(up && seen, "{}", text());
    let text = text();
    assert!(text.contains("<- <ENQ>"), "{text}");
    assert!(text.contains("-> <ACK>"), "{text}");
    assert!(
        text.contains(
            "<STX>1H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405<CR><ETX>E6<CR><LF>"
        ),
        "{text}"
    );
}
