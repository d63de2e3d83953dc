//! Signals to the running gateway: SIGTERM and SIGINT stop it in order
//! whenever they arrive, even while it is still starting; SIGHUP reads the
//! configuration file again and applies it without a restart, and a broken
//! file leaves it running as it was.

use ecko_tests::Gateway;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

/// Starts the default configuration, sends `signal` as soon as the log
/// shows `moment`, and expects an orderly stop.
fn stop_while_starting(signal: Signal, moment: &str) {
    let dir = tempfile::tempdir().unwrap();
    let env = ecko_tests::default_on_free_ports(dir.path());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let log = dir.path().join("log");
    let mut gw = Gateway::spawn(&default_config(), &log, &env_refs);
    gw.wait_for_log(moment, 0, Duration::from_secs(10));
    let _ = kill(Pid::from_raw(gw.pid()), signal);
    let code = gw.wait_for_exit();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        code,
        Some(0),
        "{signal} after `{moment}`: not a graceful exit:\n{text}"
    );
    assert!(
        text.contains("shutting down") && text.contains("stopped"),
        "{signal} after `{moment}`: no orderly shutdown:\n{text}"
    );
    let wal = dir.path().join("var/journal.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

/// Every point of start-up the log shows, from the first port bound to the
/// last thing started.
const START_UP: [&str; 5] = [
    "MLLP listener ready",
    "delivery worker started",
    "ASTM endpoint listening",
    "admin page listening",
    "gateway running",
];

#[test]
fn sigterm_at_any_point_of_start_up_stops_the_gateway_gracefully() {
    for _ in 0..2 {
        for moment in START_UP {
            stop_while_starting(Signal::SIGTERM, moment);
        }
    }
}

#[test]
fn sigint_right_after_the_first_listener_is_bound_stops_the_gateway_gracefully() {
    for _ in 0..3 {
        stop_while_starting(Signal::SIGINT, "MLLP listener ready");
    }
}

const ORU: &str = "MSH|^~\\&|LAB|A|LIS|H|20261201120000||ORU^R01|HUP-1|P|2.5.1\rPID|1||P1\rOBX|1|NM|GLU||5.4|mmol/L\r";

/// Sends one message over MLLP and returns the acknowledgement code
/// (`AA`, `AR`, ...).
fn ack_code(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("\x0b{ORU}\x1c\r").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"\x1c\r") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the ACK");
        out.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let msa = text
        .split('\r')
        .find(|s| s.trim_start_matches('\x0b').starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {text:?}"));
    msa.split('|').nth(1).unwrap_or_default().to_string()
}

fn listener(name: &str, port: u16, enabled: bool) -> String {
    format!(
        "[[endpoint]]\nname = \"{name}\"\ntype = \"mllp\"\nlisten = \"127.0.0.1:{port}\"\nenabled = {enabled}\n\n"
    )
}

fn write_config(path: &Path, data: &Path, listeners: &[String], from: &[&str]) {
    let from = from
        .iter()
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[journal]\npath = \"{d}/journal.db\"\n\n{listeners}[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"{d}/archive\"\n\n[[route]]\nname = \"results\"\nfrom = [{from}]\nto = [\"archive\"]\n\n[admin]\nenabled = false\n",
        d = data.display(),
        listeners = listeners.concat(),
    );
    std::fs::write(path, text).unwrap();
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn sighup_applies_the_edited_file_and_a_broken_file_leaves_the_gateway_serving_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let log = dir.path().join("log");
    let (lab, ward) = (ecko_tests::free_port(), ecko_tests::free_port());
    write_config(&config, dir.path(), &[listener("lab", lab, true)], &["lab"]);
    let mut gw = Gateway::start(&config, &log, &[]);
    let hup = |gw: &Gateway| kill(Pid::from_raw(gw.pid()), Signal::SIGHUP).unwrap();
    assert_eq!(ack_code(lab), "AA");

    // A new listener: its port answers after SIGHUP.
    write_config(
        &config,
        dir.path(),
        &[listener("lab", lab, true), listener("ward", ward, true)],
        &["lab", "ward"],
    );
    let from = log_len(&log);
    hup(&gw);
    gw.wait_for_log("configuration changed", from, Duration::from_secs(10));
    assert!(ecko_tests::wait_for_port(ward, Duration::from_secs(5)));
    assert_eq!(ack_code(ward), "AA");
    assert_eq!(ack_code(lab), "AA");

    // A listener disabled in the file answers AR after SIGHUP.
    write_config(
        &config,
        dir.path(),
        &[listener("lab", lab, false), listener("ward", ward, true)],
        &["lab", "ward"],
    );
    let from = log_len(&log);
    hup(&gw);
    gw.wait_for_log("configuration changed", from, Duration::from_secs(10));
    assert!(ecko_tests::eventually(Duration::from_secs(5), || ack_code(
        lab
    ) == "AR"));
    assert_eq!(ack_code(ward), "AA");

    // A broken file: its errors are logged with their place, nothing
    // changes, the gateway keeps serving.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("type = \"file\"", "type = \"fiel\""),
    )
    .unwrap();
    let from = log_len(&log);
    hup(&gw);
    gw.wait_for_log("configuration not reloaded", from, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap();
    let tail = &text[from as usize..];
    assert!(
        tail.contains(&format!("{}:", config.display())) && tail.contains("fiel"),
        "the error and its place are not in the log:\n{tail}"
    );
    assert_eq!(ack_code(ward), "AA");
    assert_eq!(ack_code(lab), "AR");
    assert_eq!(gw.terminate(), Some(0));
}
