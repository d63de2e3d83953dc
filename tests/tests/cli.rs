//! The command line as an operator meets it: version, configuration checks
//! with locations, fast start on an empty journal, graceful stop on SIGTERM
//! and SIGINT.

use ecko_tests::{dead_letter_config, gateway_binary, Gateway};
use std::process::Command;
use std::time::{Duration, Instant};

/// `ecko-gateway 0.1.0 (commit 1d285b4977c3, built 2026-12-02,
/// x86_64-unknown-linux-gnu)`: the commit is the checkout's when it was
/// built from one.
#[test]
fn version_names_the_crate_version_the_commit_the_build_date_and_the_target() {
    let out = Command::new(gateway_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text.trim();
    let rest = text
        .strip_prefix(&format!(
            "ecko-gateway {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    let (date, target) = rest.split_once(", ").unwrap_or_else(|| panic!("{text}"));
    assert!(
        jiff::civil::Date::strptime("%Y-%m-%d", date).is_ok(),
        "build date {date:?}"
    );
    let target = target.strip_suffix(')').unwrap_or_else(|| panic!("{text}"));
    assert!(
        target.contains("-linux-") && target.starts_with(std::env::consts::ARCH),
        "target {target:?}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(h) if h.status.success() => {
            assert_eq!(commit, String::from_utf8_lossy(&h.stdout).trim())
        }
        _ => println!("no git here: commit {commit} not compared"),
    }
}

#[test]
fn check_config_accepts_the_shipped_default() {
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg(&default)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn check_config_lists_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"[journal]
path = "j.db"
retention_dayz = 30

[[endpoint]]
name = "in"
type = "file-drop"
path = "in"

[[endpoint]]
name = "in"
type = "file"
path = "out"
[endpoint.retry]
initial = "10s"
max = "1s"

[[route]]
name = "r"
from = ["in"]
to = ["nowhere"]
"#,
    )
    .unwrap();
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let f = file.display();
    for expected in [
        format!("{f}:3:1: [journal]: unknown field `retention_dayz`"),
        format!("{f}:14:1: endpoint `in`: impossible retry policy: `max` (1s) is shorter than `initial` (10s)"),
        format!("{f}:21:6: route `r`: `to` names unknown endpoint `nowhere`"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn check_config_reports_a_missing_file_without_panicking() {
    let out = Command::new(gateway_binary())
        .args(["check-config", "/nonexistent/gateway.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the file"));
}

#[test]
fn the_default_configuration_listens_within_a_fraction_of_a_second_and_stops_gracefully_on_sigterm()
{
    let dir = tempfile::tempdir().unwrap();
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let env = ecko_tests::default_on_free_ports(dir.path());
    let data = dir.path().join("var");
    let mllp_port: u16 = env[1].1.parse().unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let gw = Gateway::start(&default, &dir.path().join("log"), &env_refs);
    assert!(ecko_tests::wait_for_port(mllp_port, Duration::from_secs(5)));
    let startup = started.elapsed();
    eprintln!("listening {startup:?} after the process was started");
    assert!(
        startup < Duration::from_secs(1),
        "took {startup:?} to listen on an empty journal"
    );
    // The drop folder may still be being created by its source.
    std::fs::create_dir_all(data.join("inbox")).unwrap();
    std::fs::write(data.join("inbox/hello.txt"), b"hello").unwrap();
    assert!(ecko_tests::eventually(Duration::from_secs(10), || {
        std::fs::read_dir(data.join("outbox")).is_ok_and(|mut d| d.next().is_some())
    }));
    let log = gw.log.clone();
    assert_eq!(gw.terminate(), Some(0));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.contains("shutting down") && text.contains("stopped"),
        "{text}"
    );
    // The WAL was checkpointed into the database on close.
    let wal = data.join("journal.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[test]
fn ctrl_c_stops_the_gateway_gracefully_too() {
    let dir = tempfile::tempdir().unwrap();
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let env = ecko_tests::default_on_free_ports(dir.path());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start(&default, &dir.path().join("log"), &env_refs);
    let log = gw.log.clone();
    assert_eq!(gw.interrupt(), Some(0));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("stopped"), "{text}");
    let wal = dir.path().join("var/journal.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[test]
fn a_log_that_is_not_a_terminal_carries_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let env = ecko_tests::default_on_free_ports(dir.path());
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The harness sets NO_COLOR; a service manager does not.
    env_refs.push(("NO_COLOR", ""));
    let gw = Gateway::start(&default, &dir.path().join("log"), &env_refs);
    let log = gw.log.clone();
    assert_eq!(gw.interrupt(), Some(0));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("stopped"), "{text}");
    assert!(!text.contains('\u{1b}'), "escape sequences in:\n{text}");
}

#[test]
fn check_config_refuses_a_file_whose_certificate_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tls.toml");
    std::fs::write(
        &file,
        r#"[journal]
path = "j.db"

[[endpoint]]
name = "hub"
type = "fhir"
url = "https://hub.example/fhir"
ca_file = "/nonexistent/hub-ca.pem"
"#,
    )
    .unwrap();
    let out = Command::new(gateway_binary())
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("endpoint `hub`") && stderr.contains("/nonexistent/hub-ca.pem"),
        "{stderr}"
    );
}

#[test]
fn retry_puts_dead_deliveries_back_while_the_gateway_runs_and_they_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("gateway.toml");
    std::fs::write(&cfg, dead_letter_config(d)).unwrap();
    let gw = Gateway::start(&cfg, &d.join("log"), &[]);
    std::fs::write(d.join("inbox/result.hl7"), b"MSH|^~\\&|A").unwrap();
    let status = || {
        let out = Command::new(gateway_binary())
            .args(["status", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        ecko_tests::eventually(Duration::from_secs(10), || {
            ecko_gateway::journal::JournalReader::open(&d.join("journal.db"))
                .and_then(|r| r.counts())
                .is_ok_and(|c| c.iter().any(|c| c.dead == 1))
        }),
        "the delivery never went dead: {}",
        status()
    );

    let dry = Command::new(gateway_binary())
        .args(["retry", "--dry-run", "--destination", "archive", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(String::from_utf8_lossy(&dry.stdout).contains("1 dead deliveries would be requeued"));

    std::fs::remove_file(d.join("blocked")).unwrap();
    let out = Command::new(gateway_binary())
        .args(["retry", "--destination", "archive", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 dead deliveries requeued"));
    assert!(
        ecko_tests::eventually(Duration::from_secs(10), || {
            std::fs::read_dir(d.join("blocked/out")).is_ok_and(|mut e| e.next().is_some())
        }),
        "the requeued delivery was not made: {}",
        status()
    );
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn retry_refuses_an_endpoint_that_is_not_a_destination() {
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let out = Command::new(gateway_binary())
        .args(["retry", "--destination", "mllp-in", "--config"])
        .arg(&default)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a destination endpoint"));
}

#[test]
fn send_delivers_a_file_of_messages_to_a_running_gateway_and_shows_each_answer() {
    let dir = tempfile::tempdir().unwrap();
    let default = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let env = ecko_tests::default_on_free_ports(dir.path());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mllp_port = &env[1].1;
    let gw = Gateway::start(&default, &dir.path().join("log"), &env_refs);
    let file = dir.path().join("results.hl7");
    std::fs::write(
        &file,
        "MSH|^~\\&|LAB|A|LIS|H|20261201120000||ORU^R01|SEND-1|P|2.5.1\nPID|1||P1\nOBX|1|NM|GLU||5.4|mmol/L\n\
         MSH|^~\\&|LAB|A|LIS|H|20261201120001||ORU^R01|SEND-2|P|2.5.1\nPID|1||P2\nOBX|1|NM|GLU||6.1|mmol/L\n",
    )
    .unwrap();
    let out = Command::new(gateway_binary())
        .args(["send", "--to", &format!("127.0.0.1:{mllp_port}")])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("SEND-1") && stdout.contains("SEND-2"),
        "{stdout}"
    );
    assert!(stdout.contains("2 of 2 messages accepted"), "{stdout}");
    assert!(stdout.contains("AA"), "{stdout}");
    let reader =
        ecko_gateway::journal::JournalReader::open(&dir.path().join("var/journal.db")).unwrap();
    assert_eq!(reader.message_ids().unwrap().len(), 2);
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn send_to_a_port_where_nobody_listens_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.hl7");
    std::fs::write(&file, "MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1\rPID|1\r").unwrap();
    let port = ecko_tests::free_port();
    let out = Command::new(gateway_binary())
        .args([
            "send",
            "--timeout",
            "2s",
            "--to",
            &format!("127.0.0.1:{port}"),
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cannot connect") && stdout.contains("0 of 1"),
        "{stdout}"
    );
}
