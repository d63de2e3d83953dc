//! The gateway as an appliance service, seen from outside the process:
//! `/readyz` follows the FHIR destination, `/metrics` parses with the
//! Prometheus client library's own parser, and the service manager's
//! notify socket hears `READY=1` only once the MLLP port accepts, the
//! watchdog keepalives at half of `WATCHDOG_USEC`, and `STOPPING=1` on
//! SIGTERM.

use ecko_tests::fhir::FhirServer;
use ecko_tests::{
    free_port, hl7_sample, http_exchange, mllp_ack_code as send_mllp, wait_for_port, Gateway,
};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// One HTTP/1.1 GET on 127.0.0.1; (status, body).
fn get(port: u16, path: &str, bearer: Option<&str>) -> (u16, String) {
    let auth = bearer.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let (status, _, body) = http_exchange(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"),
    );
    (status, body)
}

fn write_config(dir: &Path, mllp: u16, admin: u16, destination: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

{destination}

[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^R01"]
transform = "{transform}"
to = ["out"]

[admin]
listen = "127.0.0.1:{admin}"
tls = false
metrics_token = "${{ECKO_METRICS_TOKEN:-}}"
"#,
            d = dir.display(),
            transform = if destination.contains("\"fhir\"") {
                "hl7v2-fhir"
            } else {
                "none"
            },
        ),
    )
    .unwrap();
    path
}

/// A file destination `out` writing to `dir/out`.
fn archive(dir: &Path) -> String {
    format!(
        "[[endpoint]]\nname = \"out\"\ntype = \"file\"\npath = \"{}/out\"\n",
        dir.display()
    )
}

/// `/readyz` until `check` holds for (status, body), or panics with the last.
fn readyz_until(admin: u16, timeout: Duration, check: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = get(admin, "/readyz", None);
        if check(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed at {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_is_503_while_the_fhir_destination_is_down_and_200_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = FhirServer::start(0, &[]);
    let fhir_port = server.port;
    let (mllp, admin) = (free_port(), free_port());
    let hub = format!(
        "[[endpoint]]\nname = \"out\"\ntype = \"fhir\"\nurl = \"{}\"\ntimeout = \"5s\"\n\n[endpoint.retry]\ninitial = \"200ms\"\nmax = \"1s\"\n",
        server.base
    );
    let config = write_config(dir.path(), mllp, admin, &hub);
    let log = dir.path().join("log");
    let gw = Gateway::start(&config, &log, &[]);
    assert!(wait_for_port(admin, Duration::from_secs(10)));

    let body = readyz_until(admin, Duration::from_secs(10), |s, _| s == 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ready"], true, "{body}");
    assert_eq!(json["sources"]["lab"]["status"], "ok", "{body}");
    assert_eq!(json["journal"]["status"], "ok", "{body}");
    assert!(json["disk"]["free_bytes"].as_u64().unwrap() > 0, "{body}");
    assert!(json["clock"]["status"].is_string(), "{body}");

    // The hub goes away; a result for it fails to be delivered.
    server.stop();
    let oru = hl7_sample("oru_r01_v251.hl7");
    assert_eq!(send_mllp(mllp, &oru), "AA");
    let body = readyz_until(admin, Duration::from_secs(20), |s, _| s == 503);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ready"], false, "{body}");
    assert_eq!(json["destinations"]["out"]["status"], "failing", "{body}");
    assert!(
        !body.contains("refused") && !body.contains("PID"),
        "error texts or message content in the public body: {body}"
    );

    // Back on the same port: the queued result is delivered, ready again.
    let _server = FhirServer::start(fhir_port, &[]);
    let body = readyz_until(admin, Duration::from_secs(30), |s, _| s == 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["destinations"]["out"]["status"], "ok", "{body}");
    assert_eq!(get(admin, "/healthz", None), (200, "ok\n".to_string()));
    assert_eq!(gw.terminate(), Some(0));
}

/// Parses Prometheus text with `prometheus_client.parser` (Python) and
/// returns `name{labels} value` lines, sorted.
fn parse_with_prometheus_client(text: &str) -> Vec<String> {
    let python = ecko_tests::peer_python("metrics-venv");
    let mut child = Command::new(python)
        .arg(ecko_tests::python_script("parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn sample(samples: &[String], prefix: &str) -> f64 {
    samples
        .iter()
        .find_map(|s| s.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{prefix}` in {samples:#?}"))
}

#[test]
fn metrics_after_traffic_parse_with_the_prometheus_client_parser_and_need_the_scrape_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, admin) = (free_port(), free_port());
    let archive = archive(dir.path());
    let config = write_config(dir.path(), mllp, admin, &archive);
    let log = dir.path().join("log");
    let token = "scrape-7f3a9c";
    let gw = Gateway::start(&config, &log, &[("ECKO_METRICS_TOKEN", token)]);
    assert!(wait_for_port(admin, Duration::from_secs(10)));

    let oru = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    for i in 0..3 {
        let unique = oru.replacen("|P|", &format!("{i}|P|"), 1);
        assert_eq!(send_mllp(mllp, unique.as_bytes()), "AA");
    }
    // No route takes an ADT: refused with AR, counted as refused.
    assert_ne!(send_mllp(mllp, &hl7_sample("adt_a01_v25.hl7")), "AA");
    let delivered = ecko_tests::eventually(Duration::from_secs(10), || {
        std::fs::read_dir(dir.path().join("out")).is_ok_and(|d| d.count() == 3)
    });
    assert!(delivered, "the archive did not get the three messages");

    assert_ne!(
        get(admin, "/metrics", None).0,
        200,
        "served without a caller"
    );
    assert_eq!(get(admin, "/metrics", Some("wrong")).0, 401);
    // The files are written before their rows settle: scrape until the
    // journal has recorded all three.
    let mut samples = Vec::new();
    let settled = ecko_tests::eventually(Duration::from_secs(10), || {
        let (status, text) = get(admin, "/metrics", Some(token));
        assert_eq!(status, 200, "{text}");
        samples = parse_with_prometheus_client(&text);
        samples
            .iter()
            .any(|s| s == "ecko_queue_depth{endpoint=\"out\"} 0.0")
    });
    assert!(settled, "{samples:#?}");
    assert_eq!(
        sample(&samples, "ecko_messages_received_total{endpoint=\"lab\"}"),
        4.0
    );
    assert_eq!(
        sample(
            &samples,
            "ecko_messages_acknowledged_total{endpoint=\"lab\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(&samples, "ecko_messages_refused_total{endpoint=\"lab\"}"),
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "ecko_deliveries_total{endpoint=\"out\",outcome=\"delivered\"}"
        ),
        3.0
    );
    assert!(
        sample(
            &samples,
            "ecko_delivery_duration_seconds_count{endpoint=\"out\"}"
        ) >= 1.0
    );
    assert_eq!(sample(&samples, "ecko_queue_depth{endpoint=\"out\"}"), 0.0);
    assert!(sample(&samples, "ecko_journal_commit_batch_size_count") >= 3.0);
    assert!(sample(&samples, "ecko_journal_size_bytes") > 0.0);
    assert!(sample(&samples, "ecko_disk_free_bytes") > 0.0);
    assert!(sample(&samples, "ecko_uptime_seconds") > 0.0);
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("ecko_build_info{") && s.contains("version=\"")),
        "{samples:#?}"
    );
    assert!(samples
        .iter()
        .any(|s| s.starts_with("ecko_queue_oldest_age_seconds{")));
    assert!(samples
        .iter()
        .any(|s| s.starts_with("ecko_journal_wal_size_bytes ")));
    assert_eq!(gw.terminate(), Some(0));
}

/// The datagrams the gateway sent to the notify socket, each with the time
/// it arrived.
struct NotifySocket {
    socket: UnixDatagram,
    heard: Vec<(Instant, String)>,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        NotifySocket {
            socket,
            heard: Vec::new(),
        }
    }

    /// Reads until a datagram contains `needle`; returns when it arrived.
    fn until(&mut self, needle: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let at = Instant::now();
                self.heard.push((at, text.clone()));
                if text.lines().any(|l| l == needle) {
                    return at;
                }
            }
        }
        panic!("no {needle} within {timeout:?}; heard {:?}", self.heard);
    }

    fn times_of(&self, needle: &str) -> Vec<Instant> {
        self.heard
            .iter()
            .filter(|(_, t)| t.lines().any(|l| l == needle))
            .map(|(at, _)| *at)
            .collect()
    }
}

#[test]
fn the_service_manager_hears_ready_once_mllp_accepts_keepalives_at_half_the_timeout_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (mllp, admin) = (free_port(), free_port());
    let archive = archive(dir.path());
    let config = write_config(dir.path(), mllp, admin, &archive);
    let socket_path = dir.path().join("notify");
    let mut notify = NotifySocket::bind(&socket_path);
    let log = dir.path().join("log");
    let socket = socket_path.display().to_string();
    let gw = Gateway::spawn(
        &config,
        &log,
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "1000000")],
    );

    notify.until("READY=1", Duration::from_secs(10));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", mllp)).is_ok(),
        "READY=1 before the MLLP port accepts"
    );

    // WATCHDOG_USEC=1 s: a keepalive about every 500 ms.
    let first = notify.until("WATCHDOG=1", Duration::from_secs(5));
    while Instant::now() < first + Duration::from_millis(3_100) {
        notify.until("WATCHDOG=1", Duration::from_secs(2));
    }
    let pings = notify.times_of("WATCHDOG=1");
    let span = *pings.last().unwrap() - pings[0];
    let mean = span / (pings.len() as u32 - 1);
    assert!(
        (Duration::from_millis(350)..=Duration::from_millis(700)).contains(&mean),
        "{} keepalives, {mean:?} apart on average",
        pings.len()
    );
    assert!(
        notify
            .heard
            .iter()
            .any(|(_, t)| t.starts_with("STATUS=running; ")),
        "no status line: {:?}",
        notify.heard
    );

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid()),
        nix::sys::signal::Signal::SIGTERM,
    );
    notify.until("STOPPING=1", Duration::from_secs(10));
    assert_eq!(gw.wait_for_exit(), Some(0));

    // Standard error was a file, not a terminal: syslog priorities, no
    // timestamps of its own.
    let text = std::fs::read_to_string(&log).unwrap();
    let running = text
        .lines()
        .find(|l| l.contains("gateway running"))
        .unwrap_or_else(|| panic!("no start line in:\n{text}"));
    assert!(running.starts_with("<6>"), "{running}");
    assert!(!running[3..].starts_with("20"), "a timestamp: {running}");
}
