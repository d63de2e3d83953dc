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
    add_order(&config, "SPEC9", &["GLU", "NA"]);

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

    assert!(
        eventually(Duration::from_secs(5), || listed_orders(&config)
            .contains("sent")),
        "{}",
        listed_orders(&config)
    );
    assert_eq!(gw.terminate(), Some(0));
}

/// python-astm splitting its frames with ETB (a 40-byte chunk size, so
/// every record spans several frames) and sending a whole message in one
/// frame (its bulk mode, alone and chunked): every message is stored
/// exactly once, byte for byte as records + CR.
#[test]
fn python_astm_etb_split_and_bulk_frames_are_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &tcp_endpoint(port));
    let log = dir.path().join("gw.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    let result_3 = RESULT_1.replace("5.4", "7.9").replace("SPEC1", "SPEC3");
    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    let m2 = message_file(dir.path(), "m2.astm", RESULT_2);
    let m3 = message_file(dir.path(), "m3.astm", &result_3);
    let port = port.to_string();
    analyzer(&["send", &port, "--chunk-size", "40", &m1]);
    analyzer(&["send", &port, "--bulk", &m2]);
    analyzer(&["send", &port, "--bulk", "--chunk-size", "50", &m3]);
    // A resend, split differently: the same records, so the same message.
    analyzer(&["send", &port, "--bulk", &m1]);
    let outbox = dir.path().join("outbox");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) == 3
    }));
    assert_eq!(gw.terminate(), Some(0));
    let stored = results(&dir.path().join("journal.db"));
    let payloads: Vec<&[u8]> = stored.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        [
            RESULT_1.as_bytes(),
            RESULT_2.as_bytes(),
            result_3.as_bytes()
        ]
    );
    // The line really carried ETB frames and several records per frame.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("<ETB>"), "no ETB frame in the line log");
    assert!(
        text.contains("<STX>1H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102031000<CR>P|1||PID2"),
        "no multi-record frame in the line log"
    );
}

/// On a running gateway (the service), `ecko-gateway trace ENDPOINT`
/// attaches to it, without a second gateway, and prints the line traffic
/// with the site's time (zone offset shown) and named control characters;
/// it ends when the gateway stops.
#[test]
fn the_trace_command_attaches_to_the_running_gateway_in_site_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), &tcp_endpoint(port));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("[site]\ntime_zone = \"Asia/Kolkata\"\n{text}"),
    )
    .unwrap();
    let mut gw = Gateway::start(&config, &dir.path().join("gw.log"), &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    let out_path = dir.path().join("trace.out");
    let err_path = dir.path().join("trace.err");
    let mut trace = Command::new(gateway_binary())
        .args(["trace", "astm", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    let text = || std::fs::read_to_string(&out_path).unwrap_or_default();
    // The trace attaches in its own time, perhaps in the middle of a
    // session: send until it shows a whole one, header frame to EOT.
    let seen = eventually(Duration::from_secs(15), || {
        analyzer(&["send", &port.to_string(), &m1]);
        let t = text();
        t.find("<STX>1H|").is_some_and(|h| t[h..].contains("<EOT>"))
    });
    let stopped = gw.terminate();
    let ended = eventually(Duration::from_secs(10), || {
        matches!(trace.try_wait(), Ok(Some(_)))
    });
    let _ = trace.kill();
    let _ = trace.wait();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(seen, "{}\n{err}", text());
    assert_eq!(stopped, Some(0));
    assert!(ended, "the trace did not end with the gateway: {err}");
    assert!(!err.contains("starting one"), "{err}");
    let text = text();
    let today = Command::new("date")
        .env("TZ", "Asia/Kolkata")
        .arg("+%Y-%m-%d")
        .output()
        .unwrap();
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let enq = text
        .lines()
        .find(|l| l.ends_with("<- <ENQ>"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(enq.starts_with(&today), "{enq}");
    assert!(enq.contains("+05:30 <- <ENQ>"), "{enq}");
    assert!(text.contains("-> <ACK>"), "{text}");
    assert!(
        text.contains(
            "<STX>1H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405<CR><ETX>E6<CR><LF>"
        ),
        "{text}"
    );
}

/// Without a running gateway, `ecko-gateway trace ENDPOINT` runs one
/// itself and prints the same trace.
#[test]
fn the_trace_command_runs_a_gateway_when_none_is_running() {
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
    let text = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let seen = up
        && eventually(Duration::from_secs(10), || {
            analyzer(&["send", &port.to_string(), &m1]);
            text().contains("<EOT>")
        });
    let _ = trace.kill();
    let _ = trace.wait();
    assert!(seen, "{}", text());
    let text = text();
    assert!(text.contains("<- <ENQ>"), "{text}");
    assert!(text.contains("-> <ACK>"), "{text}");
}
