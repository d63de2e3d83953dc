//! Signals to the running gateway: SIGTERM and SIGINT stop it in order
//! whenever they arrive, even while it is still starting.

use ecko_tests::Gateway;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration on free ports, in a fresh data directory.
fn default_on_free_ports(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("ECKO_DATA_DIR", dir.join("var").display().to_string()),
        ("ECKO_MLLP_PORT", ecko_tests::free_port().to_string()),
        ("ECKO_ASTM_PORT", ecko_tests::free_port().to_string()),
        ("ECKO_ADMIN_PORT", ecko_tests::free_port().to_string()),
    ]
}

fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

/// Starts the default configuration, sends `signal` as soon as the log
/// shows `moment`, and expects an orderly stop.
fn stop_while_starting(signal: Signal, moment: &str) {
    let dir = tempfile::tempdir().unwrap();
    let env = default_on_free_ports(dir.path());
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
