//! Alerts with the real binary: an MLLP destination whose port is closed
//! fires its endpoint-down alert once, by e-mail over STARTTLS to aiosmtpd
//! (verified against the test's CA) and by a signed webhook; when a
//! listener appears on the port (hl7apy's MLLP server) the alert recovers
//! once on both; each notice is in the audit log.

use ecko_tests::{eventually, free_port, peer_python, python_script, wait_for_port, Gateway};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "a webhook secret of some length";

/// HMAC-SHA256 written out from RFC 2104, independent of the gateway's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

/// One POST the receiver took: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Post {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the signature is the HMAC of `{timestamp}.{body}`.
    fn signed(&self) -> bool {
        let (Some(ts), Some(sig)) = (
            self.header("x-ecko-timestamp"),
            self.header("x-ecko-signature"),
        ) else {
            return false;
        };
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(&self.body);
        sig == format!("sha256={}", hmac_sha256(SECRET.as_bytes(), &signed))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver on `port`: answers its first POST 503 (so the
/// gateway has to retry), every later one 200; keeps every POST.
fn webhook_receiver(port: u16) -> Arc<Mutex<Vec<Post>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let posts = Arc::new(Mutex::new(Vec::new()));
    let kept = posts.clone();
    std::thread::spawn(move || {
        let mut answered = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i);
                }
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => data.extend_from_slice(&buf[..n]),
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&data[..head_end]).to_string();
            let headers: Vec<(String, String)> = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = data[head_end + 4..].to_vec();
            while body.len() < length {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
            answered += 1;
            let status = if answered == 1 {
                "503 Service Unavailable"
            } else {
                kept.lock().unwrap().push(Post { headers, body });
                "200 OK"
            };
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    posts
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=alerts test CA",
        "-days",
        "2",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// aiosmtpd on `port` with STARTTLS required, delivering into a maildir.
fn smtp_sink(port: u16, maildir: &Path, cert: &Path, key: &Path) -> Child {
    let child = Command::new(peer_python("smtp-venv"))
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tlscert")
        .arg(cert)
        .arg("--tlskey")
        .arg(key)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "aiosmtpd did not start"
    );
    child
}

/// The messages aiosmtpd delivered, as text, oldest first.
fn mails(maildir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

fn subjects(maildir: &Path) -> Vec<String> {
    mails(maildir)
        .iter()
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .map(str::to_string)
        })
        .collect()
}

fn hl7apy_server(port: u16, dir: &Path) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(peer_python("venv-hl7"))
        .arg(python_script("hl7apy_server.py"))
        .arg(port.to_string())
        .arg(dir)
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
fn an_endpoint_down_alert_is_mailed_and_posted_once_when_it_fires_and_once_when_it_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (smtp_port, hook_port, far_port) = (free_port(), free_port(), free_port());
    let (ca, cert, key) = pki(d);
    let maildir = d.join("maildir");
    let mut smtp = smtp_sink(smtp_port, &maildir, &cert, &key);
    let posts = webhook_receiver(hook_port);
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
message_type = "ORU^R01"
poll_interval = "20ms"

[[endpoint]]
name = "lis"
type = "mllp"
connect = "127.0.0.1:{far_port}"
ack_timeout = "5s"
[endpoint.retry]
initial = "100ms"
max = "500ms"

[[route]]
name = "all"
from = ["inbox"]
to = ["lis"]

[alerts]
check_every = "1s"

[alerts.channels.lab-it]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "starttls"
ca_file = "{ca}"
from = "Ecko gateway <gateway@lab.example>"
to = ["lab-it@lab.example"]
timeout = "10s"

[alerts.channels.pager]
type = "webhook"
url = "http://127.0.0.1:{hook_port}/alerts"
secret = "{SECRET}"
timeout = "5s"

[[alerts.rule]]
name = "lis-down"
when = "endpoint_down"
endpoint = "lis"
for = "2s"
repeat = "1h"
channels = ["lab-it", "pager"]
"#,
            d = d.display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    let log = d.join("gateway.log");
    let gw = Gateway::start(&config, &log, &[]);
    std::fs::create_dir_all(d.join("inbox")).unwrap();
    std::fs::write(
        d.join("inbox/r1.hl7"),
        "MSH|^~\\&|LAB|HOSP|LIS|HOSP|20260312101500||ORU^R01|C1|P|2.5.1\rPID|1||P1\rOBR|1||S1|GLU\rOBX|1|NM|GLU||5.4|mmol/L|||||F\r",
    )
    .unwrap();

    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || subjects(&maildir).len() == 1),
        "no alert e-mail: {:?}\n{}",
        subjects(&maildir),
        log_text()
    );
    let fired = &subjects(&maildir)[0];
    assert!(fired.contains("FIRING: lis-down: lis"), "{fired}");
    assert!(
        mails(&maildir)[0].contains("deliveries to `lis` are failing"),
        "{}",
        mails(&maildir)[0]
    );
    // The first POST was answered 503: the one kept is the retry.
    assert!(
        eventually(Duration::from_secs(20), || posts.lock().unwrap().len() == 1),
        "no webhook: {}",
        log_text()
    );
    {
        let posts = posts.lock().unwrap();
        assert!(posts[0].signed(), "{:?}", posts[0]);
        let body = posts[0].json();
        assert_eq!(body["state"], "fired", "{body}");
        assert_eq!(body["rule"], "lis-down");
        assert_eq!(body["subject"], "lis");
        assert_eq!(body["alert"], "endpoint_down");
    }
    assert!(log_text().contains("an alert could not be sent; retrying"));

    // Still down a few checks later: nothing more is sent (no repeat yet).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(subjects(&maildir).len(), 1, "{:?}", subjects(&maildir));
    assert_eq!(posts.lock().unwrap().len(), 1);

    // The far end appears: the message is delivered and the alert recovers.
    let mut far = hl7apy_server(far_port, &d.join("received"));
    assert!(
        eventually(Duration::from_secs(30), || subjects(&maildir).len() == 2),
        "no recovery e-mail: {:?}\n{}",
        subjects(&maildir),
        log_text()
    );
    assert!(
        subjects(&maildir)[1].contains("RECOVERED: lis-down: lis"),
        "{:?}",
        subjects(&maildir)
    );
    assert!(eventually(Duration::from_secs(20), || posts
        .lock()
        .unwrap()
        .len()
        == 2));
    {
        let posts = posts.lock().unwrap();
        assert!(posts[1].signed(), "{:?}", posts[1]);
        assert_eq!(posts[1].json()["state"], "recovered");
        assert_ne!(posts[0].json()["id"], posts[1].json()["id"]);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(subjects(&maildir).len(), 2, "recovered once");
    assert_eq!(posts.lock().unwrap().len(), 2);

    assert_eq!(gw.terminate(), Some(0));
    let _ = far.kill();
    let _ = smtp.kill();
    let _ = far.wait();
    let _ = smtp.wait();

    // Both notices are in the audit log, by the alerts, in order.
    let audit = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let journal = ecko_gateway::journal::Journal::open(
                ecko_gateway::journal::JournalOptions::new(d.join("journal.db")),
            )
            .unwrap();
            let rows = journal.audit_log(None, 100).await.unwrap();
            journal.close().await;
            rows
        });
    let alerts: Vec<(String, String)> = audit
        .iter()
        .rev()
        .filter(|r| r.actor == "alerts")
        .map(|r| (r.action.clone(), r.target.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        alerts,
        vec![
            ("alert.fired".to_string(), "lis-down: lis".to_string()),
            ("alert.recovered".to_string(), "lis-down: lis".to_string()),
        ]
    );
}

#[test]
fn an_update_failed_alert_is_mailed_and_posted_once_when_it_fires_and_once_when_another_update_is_installed(
) {
    use ecko_tests::firmware::Firmware;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // 1.0 runs; 2.0 never gets marked good and the bootloader falls back.
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    fw.install(&fw.bundle("2.0", 1));
    for _ in 0..3 {
        assert_eq!(fw.boot()["slot"], "a");
    }
    assert_eq!(fw.boot()["fell_back"], true);

    let (smtp_port, hook_port) = (free_port(), free_port());
    let (ca, cert, key) = pki(d);
    let maildir = d.join("maildir");
    // Killed however the test ends: it holds the test's output open.
    let _smtp = KilledOnDrop(smtp_sink(smtp_port, &maildir, &cert, &key));
    let posts = webhook_receiver(hook_port);
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

{update}
[alerts]
check_every = "1s"

[alerts.channels.lab-it]
type = "email"
host = "127.0.0.1"
port = {smtp_port}
security = "starttls"
ca_file = "{ca}"
from = "Ecko gateway <gateway@lab.example>"
to = ["lab-it@lab.example"]
timeout = "10s"

[alerts.channels.pager]
type = "webhook"
url = "http://127.0.0.1:{hook_port}/alerts"
secret = "{SECRET}"
timeout = "5s"

[[alerts.rule]]
name = "firmware"
when = "update_failed"
repeat = "1h"
channels = ["lab-it", "pager"]
"#,
            d = d.display(),
            ca = ca.display(),
            update = fw.section("0s"),
        ),
    )
    .unwrap();
    let log = d.join("gateway.log");
    let gw = Gateway::start(&config, &log, &[]);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(30), || subjects(&maildir).len() == 1),
        "no alert e-mail: {:?}\n{}",
        subjects(&maildir),
        log_text()
    );
    assert!(
        subjects(&maildir)[0].contains("FIRING: firmware"),
        "{:?}",
        subjects(&maildir)
    );
    assert!(
        mails(&maildir)[0].contains("update to 2.0 in slot a failed"),
        "{}",
        mails(&maildir)[0]
    );
    assert!(
        eventually(Duration::from_secs(20), || posts.lock().unwrap().len() == 1),
        "no webhook: {}",
        log_text()
    );
    {
        let posts = posts.lock().unwrap();
        assert!(posts[0].signed(), "{:?}", posts[0]);
        assert_eq!(posts[0].json()["state"], "fired");
        assert_eq!(posts[0].json()["alert"], "update_failed");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(subjects(&maildir).len(), 1, "fired once");

    // 2.1 is installed in the slot 2.0 failed in: the failure is over.
    fw.install(&fw.bundle("2.1", 1));
    assert!(
        eventually(Duration::from_secs(30), || subjects(&maildir).len() == 2),
        "no recovery e-mail: {:?}\n{}",
        subjects(&maildir),
        log_text()
    );
    assert!(
        subjects(&maildir)[1].contains("RECOVERED: firmware"),
        "{:?}",
        subjects(&maildir)
    );
    assert!(eventually(Duration::from_secs(20), || posts
        .lock()
        .unwrap()
        .len()
        == 2));
    assert_eq!(posts.lock().unwrap()[1].json()["state"], "recovered");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(subjects(&maildir).len(), 2, "recovered once");
    assert_eq!(posts.lock().unwrap().len(), 2);
    assert_eq!(gw.terminate(), Some(0));
}

struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
