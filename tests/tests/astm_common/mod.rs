//! Shared by the ASTM end-to-end tests: python-astm as the analyzer, the
//! journal as the witness.
#![allow(dead_code)]

use ecko_gateway::journal::JournalReader;
use ecko_message::StoredMessage;
use ecko_tests::gateway_binary;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// python-astm's venv, installed by `scripts/install-peers`.
pub fn python() -> PathBuf {
    let peers = std::env::var_os("ECKO_PEERS_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ecko-peers"),
        PathBuf::from,
    );
    let py = peers.join("astm-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/install-peers",
        py.display()
    );
    py
}

pub fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python/astm_analyzer.py")
}

/// Runs the python-astm analyzer helper; panics with its output on failure.
pub fn analyzer(args: &[&str]) -> String {
    let out: Output = Command::new(python())
        .arg(helper())
        .args(args)
        .output()
        .expect("run python-astm");
    assert!(
        out.status.success(),
        "python-astm {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the python-astm analyzer helper to its end, whatever the gateway
/// answered: what it printed, stdout then stderr (where it reports each
/// record the gateway rejected).
pub fn analyzer_output(args: &[&str]) -> String {
    let out: Output = Command::new(python())
        .arg(helper())
        .args(args)
        .output()
        .expect("run python-astm");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub const RESULT_1: &str = "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405\rP|1||PID1||Doe^Jane\rO|1|SPEC1||^^^GLU|R\rR|1|^^^GLU|5.4|mmol/L|3.9-6.1|N||F\rL|1|N\r";
pub const RESULT_2: &str = "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102031000\rP|1||PID2||Roe^Rick\rO|1|SPEC2||^^^NA\\^^^K|R\rR|1|^^^NA|140|mmol/L|135-145|N||F\rR|2|^^^K|6.1|mmol/L|3.5-5.1|H||F\rL|1|N\r";

/// Writes a message file for the helper (records one per line).
pub fn message_file(dir: &Path, name: &str, records: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, records.replace('\r', "\n")).expect("write message file");
    path.display().to_string()
}

/// The ASTM result messages in the journal.
pub fn results(journal: &Path) -> Vec<StoredMessage> {
    let r = JournalReader::open(journal).expect("open journal");
    r.message_ids()
        .expect("ids")
        .into_iter()
        .filter_map(|id| r.message(id).expect("message"))
        .filter(|m| m.message_type == "ASTM")
        .collect()
}

/// A configuration with one ASTM endpoint (`endpoint_toml`) archived to
/// `outbox`.
pub fn config(dir: &Path, endpoint_toml: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        r#"
[journal]
path = "{dir}/journal.db"

{endpoint_toml}

[[endpoint]]
name = "archive"
type = "file"
path = "{dir}/outbox"

[[route]]
name = "astm-results"
from = ["astm"]
message_types = ["ASTM"]
to = ["archive"]
"#,
        dir = dir.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// `ecko-gateway order add` for endpoint `astm`, patient P9 Doe^John.
pub fn add_order(config: &Path, specimen: &str, tests: &[&str]) {
    let mut cmd = Command::new(gateway_binary());
    cmd.args(["order", "add", "--config"])
        .arg(config)
        .args(["--analyzer", "astm", "--specimen", specimen])
        .args(["--patient", "P9", "--name", "Doe^John"]);
    for t in tests {
        cmd.args(["--test", t]);
    }
    let added = cmd.output().expect("run ecko-gateway order add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
}

/// `ecko-gateway order list` as printed.
pub fn listed_orders(config: &Path) -> String {
    let out = Command::new(gateway_binary())
        .args(["order", "list", "--config"])
        .arg(config)
        .output()
        .expect("run ecko-gateway order list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The record types of a host-query answer printed by the helper.
pub fn kinds(answer: &serde_json::Value) -> Vec<String> {
    answer
        .as_array()
        .expect("a list of records")
        .iter()
        .map(|r| r[0].as_str().unwrap_or("").to_string())
        .collect()
}

/// `socat PTY,link=<tty>,raw,echo=0 TCP-LISTEN:<port>`: the pty exists at
/// once; socat serves one TCP connection, then exits and the pty vanishes,
/// as a pulled USB-serial adapter would.
pub fn socat(tty: &Path, port: u16) -> Child {
    let child = Command::new("socat")
        .arg(format!("PTY,link={},raw,echo=0", tty.display()))
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (run scripts/install-peers)");
    assert!(
        ecko_tests::eventually(Duration::from_secs(5), || tty.exists()),
        "socat made no pty"
    );
    child
}
