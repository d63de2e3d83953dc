//! The ASTM serial endpoint on a pseudo-terminal: socat bridges the pty to
//! TCP, python-astm's client is the analyzer on the other side.

mod astm_common;

use astm_common::*;
use ecko_tests::{eventually, Gateway};
use std::path::Path;
use std::time::Duration;

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Results reach the journal exactly once over the serial endpoint; when the
/// line's device disappears (socat exits) the gateway opens it again once
/// it is back, and a resend over the new line is not queued twice.
#[test]
fn python_astm_over_a_socat_pty_pair_reaches_the_serial_endpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let tty = dir.path().join("tty");
    let port = free_port();
    let endpoint = format!(
        "[[endpoint]]\nname = \"astm\"\ntype = \"astm-serial\"\ndevice = \"{}\"\nbaud = 9600\nreconnect_max = \"500ms\"",
        tty.display()
    );
    let config = config(dir.path(), &endpoint);
    let mut first = socat(&tty, port);
    let log = dir.path().join("gw.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("ASTM serial line open", 0, Duration::from_secs(10));

    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    let m2 = message_file(dir.path(), "m2.astm", RESULT_2);
    analyzer(&["send", &port.to_string(), &m1]);
    let _ = first.wait();

    // The device is gone; bring it back under the same name.
    let from = log_len(&log);
    let mut second = socat(&tty, port);
    gw.wait_for_log("ASTM serial line open", from, Duration::from_secs(10));
    analyzer(&["send", &port.to_string(), &m1, &m2]);
    let _ = second.wait();

    let outbox = dir.path().join("outbox");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) == 2
    }));
    assert_eq!(gw.terminate(), Some(0));
    let stored = results(&dir.path().join("journal.db"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[0].payload, RESULT_1.as_bytes());
    assert_eq!(stored[1].payload, RESULT_2.as_bytes());
}

/// A host query over the pty pair gets its orders back (kept in the
/// journal, added with the CLI while the gateway runs) in a new session
/// whose frames python-astm's codec decodes and checksums; acknowledged,
/// the order is marked sent.
#[test]
fn a_host_query_over_the_pty_pair_gets_its_orders_back() {
    let dir = tempfile::tempdir().unwrap();
    let tty = dir.path().join("tty");
    let port = free_port();
    let endpoint = format!(
        "[[endpoint]]\nname = \"astm\"\ntype = \"astm-serial\"\ndevice = \"{}\"\nbaud = 9600\nreconnect_max = \"500ms\"",
        tty.display()
    );
    let config = config(dir.path(), &endpoint);
    let mut bridge = socat(&tty, port);
    let log = dir.path().join("gw.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("ASTM serial line open", 0, Duration::from_secs(10));
    add_order(&config, "SPECP", &["GLU", "K"]);

    let answer: serde_json::Value =
        serde_json::from_str(&analyzer(&["query", &port.to_string(), "SPECP"])).unwrap();
    let _ = bridge.wait();
    assert_eq!(kinds(&answer), ["H", "P", "O", "L"], "{answer}");
    assert_eq!(answer[1][2], "P9");
    assert_eq!(answer[2][2], "SPECP");
    assert_eq!(answer[2][4][0][3], "GLU");
    assert_eq!(answer[2][4][1][3], "K");
    assert!(
        eventually(Duration::from_secs(5), || listed_orders(&config)
            .contains("sent")),
        "{}",
        listed_orders(&config)
    );
    assert_eq!(gw.terminate(), Some(0));
}
