//! Listening below port 1024, as the service does it: the real binary under
//! `setpriv`, once without `CAP_NET_BIND_SERVICE` (root with it dropped
//! from the bounding set: the log, `/readyz`, a SIGHUP reload and a change
//! from the page's API say the capability is missing and how to get it)
//! and once as an unprivileged
//! user holding it as an ambient capability, which is what the unit's
//! generated drop-in gives the `ecko` user (python-hl7's `mllp_send` is
//! acknowledged on the low port). `ip_unprivileged_port_start` must be at
//! its default, 1024, for the refusals to happen: checked, else skipped.

use ecko_tests::{free_port, hl7_sample, http_exchange, peer_tool, wait_for_port, Gateway};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Root without the capability: out of the bounding set, so not in the
/// binary's effective set either.
const WITHOUT_CAPABILITY: &[&str] = &[
    "setpriv",
    "--inh-caps=-all",
    "--ambient-caps=-all",
    "--bounding-set=-net_bind_service",
    "--",
];

/// `nobody` with the capability the drop-in grants, and no other.
const NOBODY_WITH_CAPABILITY: &[&str] = &[
    "setpriv",
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--inh-caps=+net_bind_service",
    "--ambient-caps=+net_bind_service",
    "--",
];

const FIX: &str = "systemctl daemon-reload && systemctl restart ecko-gateway";

/// Whether the kernel refuses low ports to a process without the
/// capability here.
fn low_ports_are_privileged() -> bool {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    // setpriv can only hand on what this process holds.
    let holds = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|set| set & (1 << 10) != 0);
    if start.is_some_and(|s| s > 1000) && holds {
        return true;
    }
    println!(
        "skipped: needs CAP_NET_BIND_SERVICE to drop and ip_unprivileged_port_start at 1024 (it is {start:?})"
    );
    false
}

/// A port below 1024 nothing listens on now.
fn free_low_port() -> u16 {
    (900..1024)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

/// A directory the `nobody` user may write the journal in.
fn data_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// An MLLP listener `his` on `mllp`, an ASTM TCP server `analyzer` on
/// `astm`, results archived to files, the page in plain HTTP on `admin`.
fn config_text(dir: &Path, mllp: u16, astm: u16, admin: u16) -> String {
    format!(
        r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "his"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "analyzer"
type = "astm-tcp"
role = "server"
address = "127.0.0.1:{astm}"

[[endpoint]]
name = "out"
type = "file"
path = "{d}/out"

[[route]]
name = "results"
from = ["his"]
message_types = ["ORU^R01"]
transform = "none"
to = ["out"]

[admin]
listen = "127.0.0.1:{admin}"
tls = false
"#,
        d = dir.display()
    )
}

fn write_config(dir: &Path, mllp: u16, astm: u16, admin: u16) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config_text(dir, mllp, astm, admin)).unwrap();
    path
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Waits until the log holds `needle`, or panics with it.
fn wait_for_log(log: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = log_text(log);
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "no `{needle}` in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_low_mllp_port_without_the_capability_stops_the_start_naming_the_capability_and_the_fix() {
    if !low_ports_are_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let low = free_low_port();
    let config = write_config(dir.path(), low, free_port(), free_port());
    let log = dir.path().join("log");
    let gw = Gateway::spawn_under(WITHOUT_CAPABILITY, &config, &log, &[]);
    let code = gw.wait_for_exit();
    let text = log_text(&log);
    assert_ne!(code, Some(0), "started anyway:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{low}")) && l.contains("denied"))
        .unwrap_or_else(|| panic!("no bind error for port {low}:\n{text}"));
    assert!(line.contains("CAP_NET_BIND_SERVICE"), "{line}");
    assert!(line.contains(FIX), "{line}");
}

#[test]
fn readyz_names_the_missing_capability_of_a_low_astm_port_and_the_fix() {
    if !low_ports_are_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (low, admin) = (free_low_port(), free_port());
    let config = write_config(dir.path(), free_port(), low, admin);
    let log = dir.path().join("log");
    // The ASTM server keeps trying its port: the gateway runs on.
    let mut gw = Gateway::spawn_under(WITHOUT_CAPABILITY, &config, &log, &[]);
    gw.wait_for_log("gateway running", 0, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    let detail = loop {
        let (status, _, body) = http_exchange(
            admin,
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let analyzer = &json["sources"]["analyzer"];
        if let Some(detail) = analyzer["detail"].as_str().filter(|d| d.contains("denied")) {
            assert_eq!(status, 503, "{body}");
            assert_eq!(analyzer["status"], "failing", "{body}");
            break detail.to_string();
        }
        assert!(Instant::now() < deadline, "/readyz: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(detail.contains(&format!("127.0.0.1:{low}")), "{detail}");
    assert!(detail.contains("CAP_NET_BIND_SERVICE"), "{detail}");
    assert!(detail.contains(FIX), "{detail}");
    gw.kill();
}

/// One message and its acknowledgement's code on an open MLLP connection.
fn exchange(stream: &mut std::net::TcpStream, message: &[u8]) -> String {
    ecko_tests::msa_code(&ecko_tests::mllp_exchange(stream, message))
}

#[test]
fn a_reload_moving_the_mllp_listener_below_1024_without_the_capability_is_refused_before_it_stops()
{
    if !low_ports_are_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mllp, astm, admin) = (free_port(), free_port(), free_port());
    let config = write_config(dir.path(), mllp, astm, admin);
    let log = dir.path().join("log");
    let gw = Gateway::start_under(WITHOUT_CAPABILITY, &config, &log);
    let oru = hl7_sample("oru_r01_v251.hl7");
    let mut sender = std::net::TcpStream::connect(("127.0.0.1", mllp)).unwrap();
    sender
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(exchange(&mut sender, &oru), "AA");

    let low = free_low_port();
    std::fs::write(&config, config_text(dir.path(), low, astm, admin)).unwrap();
    let _ = kill(Pid::from_raw(gw.pid()), Signal::SIGHUP);
    let text = wait_for_log(&log, "configuration not reloaded", Duration::from_secs(10));
    let line = text
        .lines()
        .find(|l| l.contains("configuration not reloaded"))
        .unwrap();
    assert!(line.contains(&format!("127.0.0.1:{low}")), "{line}");
    assert!(line.contains("CAP_NET_BIND_SERVICE"), "{line}");
    assert!(line.contains(FIX), "{line}");
    // The listener was never stopped: the sender's connection still works.
    assert_eq!(exchange(&mut sender, &oru), "AA", "{text}");
    gw.kill();
}

#[test]
fn a_change_from_the_page_moving_the_mllp_listener_below_1024_is_refused_with_the_fix() {
    use ecko_tests::admin_http::{csrf_of, get, login, send_json, user_add};
    if !low_ports_are_privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (mllp, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), mllp, free_port(), admin);
    let log = dir.path().join("log");
    user_add(&config, "ann", "a long admin secret");
    let gw = Gateway::start_under(WITHOUT_CAPABILITY, &config, &log);
    let before = std::fs::read_to_string(&config).unwrap();
    let cookie = login(admin, "ann", "a long admin secret");
    let (_, page) = get(admin, "/endpoints", &cookie);
    let low = free_low_port();
    let (status, body) = send_json(
        admin,
        "PUT",
        "/api/v1/endpoints/his",
        &cookie,
        &csrf_of(&page),
        &format!(r#"{{"settings":{{"listen":"127.0.0.1:{low}"}}}}"#),
    );
    assert!(status >= 400, "{status} {body}");
    assert!(body.contains("CAP_NET_BIND_SERVICE"), "{body}");
    assert!(body.contains(FIX), "{body}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert_eq!(
        ecko_tests::mllp_ack_code(mllp, &hl7_sample("oru_r01_v251.hl7")),
        "AA"
    );
    gw.kill();
}

#[test]
fn an_unprivileged_user_holding_the_ambient_capability_serves_mllp_below_1024() {
    if !low_ports_are_privileged() {
        return;
    }
    let dir = data_dir();
    let low = free_low_port();
    let config = write_config(dir.path(), low, free_port(), free_port());
    let log = dir.path().join("log");
    let gw = Gateway::start_under(NOBODY_WITH_CAPABILITY, &config, &log);
    assert!(wait_for_port(low, Duration::from_secs(10)));
    let file = dir.path().join("message.hl7");
    std::fs::write(&file, hl7_sample("oru_r01_v251.hl7")).unwrap();
    let out = Command::new(peer_tool("venv-hl7", "mllp_send"))
        .args(["--loose", "-p", &low.to_string(), "-f"])
        .arg(&file)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("MSA|AA|"),
        "{said} {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_text(&log)
    );
    gw.kill();
}
