//! The admin page in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed by
//! scripts/install-peers): first-run setup (refused with a wrong setup code,
//! accepted with the one `ecko-gateway setup-code` prints), login, the dashboard (its
//! counts following a message sent while it is open, without a reload), a message
//! sent by a real MLLP peer (python-hl7's `mllp_send`) appearing in the live
//! log, the message viewer, and two failed deliveries of one cause retried
//! from the errors page in one action until they are delivered; an outage's backlog rising and draining on
//! the statistics page's chart of messages waiting, minute by minute. Screenshots of each page go to
//! `<target tmp>/admin_browser/`.

use ecko_tests::{eventually, peer_tool, Gateway};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSWORD: &str = "browser test secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small WebDriver client: one HTTP/1.1 request per connection.
struct Driver {
    port: u16,
    session: String,
    process: Child,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly Content-Length bytes (or chunks until
    // the last one): the driver may keep the connection open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        let n = s.read(&mut buf).expect("reply from chromedriver");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None => body.ends_with(b"0\r\n\r\n"),
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).expect("reply from chromedriver");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let rest = if length.is_none() && head.contains("transfer-encoding: chunked") {
        dechunk(&rest)
    } else {
        rest
    };
    serde_json::from_str(&rest).unwrap_or_else(|e| panic!("{e}: {head}\n{rest}"))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

impl Driver {
    fn start(profile: &Path) -> Driver {
        let port = free_port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "chromedriver did not listen"
        );
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = http(port, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            port,
            session,
            process,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        if v["value"].get("error").is_some() {
            panic!("{method} {path}: {v}");
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }
    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }
    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }
    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }
    /// Sets the window's outer size.
    fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` in the page and returns its value.
    fn run(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn screenshot(&self, dir: &Path, name: &str) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64_decode(b64.as_str().unwrap_or(""));
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn wait_for(d: &Driver, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let s = d.source();
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {timeout:?}; page {}:\n{s}",
            d.url()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// python-hl7's `mllp_send` with the message in `file` to `port`.
fn mllp_send(file: &Path, port: u16) -> std::process::Output {
    Command::new(peer_tool("venv-hl7", "mllp_send"))
        .args(["--loose", "-f"])
        .arg(file)
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .output()
        .expect("run mllp_send")
}

/// What every test here starts with: Chromium present, a scratch
/// directory, and where its screenshots go (`target/tmp/admin_browser/`).
fn browser_test() -> (tempfile::TempDir, PathBuf) {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        panic!("chromium and chromedriver are missing: run scripts/install-peers");
    }
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin_browser");
    std::fs::create_dir_all(&shots).unwrap();
    (tempfile::tempdir().unwrap(), shots)
}

/// Logs in as the user [`add_admin`] made.
fn log_in(b: &Driver, base: &str) {
    b.go(&format!("{base}/login"));
    b.type_into("input[name=name]", "admin");
    b.type_into("input[name=password]", PASSWORD);
    b.click("#login");
}

/// Adds the user `admin` with [`PASSWORD`] by the command line, as a field
/// engineer would before handing the box over.
fn add_admin(config: &Path) {
    let mut add = Command::new(ecko_tests::gateway_binary())
        .args(["user", "add", "--config"])
        .arg(config)
        .args(["--role", "admin", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(add.wait().unwrap().success());
}

#[test]
fn an_operator_sets_up_logs_in_watches_a_message_arrive_and_retries_a_group_of_failed_deliveries_in_one_action(
) {
    let (dir, shots) = browser_test();
    let d = dir.path();
    let outbox = d.join("outbox");
    // A regular file where the outbox directory should be: deliveries fail.
    std::fs::write(&outbox, b"in the way").unwrap();
    let port = free_port();
    let mllp_port = free_port();
    let ward_port = free_port();
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "lab-mllp"
type = "mllp"
listen = "127.0.0.1:{mllp_port}"
[[endpoint]]
name = "archive"
type = "file"
path = "{outbox}"
[endpoint.retry]
max_attempts = 1
[[route]]
name = "all"
from = ["lab-mllp"]
to = ["archive"]
[[endpoint]]
name = "ward-mllp"
type = "mllp"
listen = "127.0.0.1:{ward_port}"
[[endpoint]]
name = "ward-archive"
type = "file"
path = "{d}/ward"
[[route]]
name = "ward"
from = ["ward-mllp"]
to = ["ward-archive"]
[admin]
listen = "127.0.0.1:{port}"
"#,
            d = d.display(),
            outbox = outbox.display()
        ),
    )
    .unwrap();
    let mut gw = Gateway::start(&config, &d.join("gateway.log"), &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));
    let base = format!("https://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();
    let b = Driver::start(profile.path());

    // First run: every page leads to the setup.
    b.go(&format!("{base}/"));
    assert!(b.url().ends_with("/setup"), "{}", b.url());
    b.screenshot(&shots, "1-setup");
    // The form asks for the device's setup code; the browser itself keeps
    // an empty one from being sent, and the gateway refuses a wrong one on
    // its field.
    let form = b.source();
    assert!(
        form.contains("<input name=\"setup_code\" required"),
        "{form}"
    );
    b.type_into("input[name=setup_code]", "AAAA-BBBB-CCCC");
    b.type_into("input[name=name]", "admin");
    b.type_into("input[name=password]", PASSWORD);
    b.type_into("input[name=confirm]", PASSWORD);
    b.click("#create");
    let refused = wait_for(&b, "the refused setup", Duration::from_secs(5), |s| {
        s.contains("id=\"setup_code-error\"")
    });
    assert!(refused.contains("not this device"), "{refused}");
    b.screenshot(&shots, "1-setup-refused");
    // The code as the person at the device finds it: `ecko-gateway
    // setup-code`, which reads the file beside the journal.
    let out = Command::new(ecko_tests::gateway_binary())
        .args(["setup-code", "--config"])
        .arg(&config)
        .output()
        .expect("ecko-gateway setup-code");
    assert!(out.status.success(), "{out:?}");
    let code = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        std::fs::read_to_string(d.join("setup-code"))
            .unwrap()
            .trim(),
        code
    );
    // The name is kept on the refused form; the code and passwords are not.
    b.type_into("input[name=setup_code]", &code);
    b.type_into("input[name=password]", PASSWORD);
    b.type_into("input[name=confirm]", PASSWORD);
    b.click("#create");
    wait_for(&b, "the login page", Duration::from_secs(5), |s| {
        s.contains("id=\"login\"")
    });
    b.type_into("input[name=name]", "admin");
    b.type_into("input[name=password]", PASSWORD);
    b.click("#login");
    let dash = wait_for(&b, "the dashboard", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoints\"")
    });
    assert!(dash.contains(">lab-mllp</a>") && dash.contains(">archive</a>"));
    // The listener reported itself bound: the dashboard says so.
    let row = dash
        .split("<tr class=\"endpoint\" data-name=\"lab-mllp\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(row.contains("class=\"status up\""), "{row}");
    assert!(
        dash.contains("class=\"status idle\""),
        "the delivery worker runs"
    );
    b.screenshot(&shots, "2-dashboard");

    // With the dashboard open, a message from the ward shows in its row's
    // count without a reload.
    let today = |page: &str| {
        page.split("data-name=\"ward-mllp\"")
            .nth(1)
            .and_then(|r| r.split("class=\"today\">").nth(1))
            .and_then(|r| r.split('<').next())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(today(&b.source()), "0");
    let ward = d.join("ward.hl7");
    std::fs::write(
        &ward,
        "MSH|^~\\&|WARD|HOSP|GW|HOSP|20240301115900||ADT^A01|WARD-1|P|2.5\nPID|||PAT-7||Roe^Ann\n",
    )
    .unwrap();
    let out = mllp_send(&ward, ward_port);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MSA|AA|WARD-1"),
        "{out:?}"
    );
    let live = wait_for(&b, "the count to follow", Duration::from_secs(15), |s| {
        today(s) == "1"
    });
    assert!(live.contains(">live<"), "the page says it is live");
    b.screenshot(&shots, "2-dashboard-live");

    // The live log, filtered to the MLLP endpoint, shows a message sent by
    // a real MLLP peer within a second of the send.
    b.go(&format!("{base}/logs?endpoint=lab-mllp"));
    wait_for(&b, "the live stream", Duration::from_secs(5), |s| {
        s.contains(">live<")
    });
    let msg = "MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20240301120000||ORU^R01|BROWSER-1|P|2.5\nPID|||PAT-42||Doe^Jane\nOBR|1||S-1|GLU^Glucose\nOBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\n";
    let file = d.join("message.hl7");
    std::fs::write(&file, msg).unwrap();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let out = mllp_send(&file, mllp_port);
        (Instant::now(), out)
    });
    wait_for(
        &b,
        "the message in the live log",
        Duration::from_secs(10),
        |s| s.contains("<td>BROWSER-1</td>") && s.contains(">received<"),
    );
    let seen = Instant::now();
    let (acked, out) = sender.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("MSA|AA|BROWSER-1"),
        "mllp_send: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after_ack = seen.saturating_duration_since(acked);
    eprintln!(
        "live log showed the MLLP message {after_ack:?} after mllp_send had its ACK ({:?} after starting it)",
        seen - started
    );
    b.screenshot(&shots, "3-live-log");

    // The viewer shows its segments and fields.
    wait_for(&b, "the failed attempt", Duration::from_secs(5), |s| {
        s.contains("attempt dead")
    });
    b.click("#live-log a[href^='/messages/']");
    let viewer = wait_for(&b, "the viewer", Duration::from_secs(5), |s| {
        s.contains("Message #")
    });
    for needle in ["MSH-10", "BROWSER-1", "PID-3", "PAT-42", "OBX-5", "dead"] {
        assert!(viewer.contains(needle), "viewer lacks {needle}");
    }
    b.screenshot(&shots, "4-viewer");

    // A second result dies of the same cause: the errors page groups the
    // two, and one action retries both once the way is clear.
    let second = d.join("message-2.hl7");
    std::fs::write(&second, msg.replace("BROWSER-1", "BROWSER-2")).unwrap();
    let out = mllp_send(&second, mllp_port);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MSA|AA|BROWSER-2"),
        "{out:?}"
    );
    b.go(&format!("{base}/errors"));
    let errors = wait_for(&b, "both in one group", Duration::from_secs(10), |s| {
        s.contains("BROWSER-2") && s.contains(": 2 messages since")
    });
    assert!(
        errors.contains("BROWSER-1"),
        "errors page lacks the message"
    );
    assert_eq!(
        errors.matches("class=\"error-group\"").count(),
        1,
        "one cause, one group"
    );
    b.screenshot(&shots, "5-errors");
    std::fs::remove_file(&outbox).unwrap();
    std::fs::create_dir_all(&outbox).unwrap();
    b.run("window.confirm = function () { return true; };");
    b.click("button.retry-group");
    let retried = wait_for(&b, "an empty errors page", Duration::from_secs(5), |s| {
        s.contains("id=\"no-errors\"")
    });
    assert!(retried.contains("2 deliveries queued again"), "{retried}");
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_dir(&outbox)
            .map(|d| d.count() == 2)
            .unwrap_or(false)),
        "the retried messages were not delivered"
    );
    b.go(&format!("{base}/logs"));
    b.click("#messages a[href^='/messages/']");
    let viewer = wait_for(&b, "the viewer", Duration::from_secs(5), |s| {
        s.contains("Message #")
    });
    assert!(viewer.contains("class=\"delivery st-delivered\""));
    assert!(viewer.contains("retried"));
    b.screenshot(&shots, "6-delivered");
    b.go(&format!("{base}/stats"));
    b.screenshot(&shots, "7-stats");
    assert!(
        after_ack < Duration::from_secs(1),
        "the live log took {after_ack:?} after the send"
    );

    // The endpoints page and an endpoint's edit form.
    b.go(&format!("{base}/endpoints"));
    wait_for(&b, "the endpoints page", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoint-list\"")
    });
    b.screenshot(&shots, "8-endpoints");
    b.go(&format!("{base}/endpoints/archive/edit"));
    wait_for(&b, "the edit form", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoint-form\"")
    });
    b.screenshot(&shots, "9-endpoint-edit");

    // At a tablet's and a phone's width every page stays within the
    // window (tables scroll in their own box), and the navigation wraps.
    for (width, name) in [(1400, "wide"), (768, "tablet"), (420, "phone")] {
        b.resize(width, 900);
        for (path, shot) in [
            ("/", "dashboard"),
            ("/logs", "logs"),
            ("/errors", "errors"),
            ("/endpoints/archive/edit", "form"),
        ] {
            b.go(&format!("{base}{path}"));
            let fits =
                b.run("return document.documentElement.scrollWidth <= window.innerWidth + 1;");
            assert_eq!(
                fits,
                json!(true),
                "{path} is wider than the window at {width} px"
            );
            b.screenshot(&shots, &format!("10-{name}-{shot}"));
        }
    }
}

#[test]
fn an_admin_uploads_a_bundle_sees_its_verified_manifest_and_installs_it_after_giving_the_password_again(
) {
    use ecko_tests::firmware::Firmware;
    let (dir, shots) = browser_test();
    let d = dir.path();
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    let good = fw.bundle("1.1", 1);
    let other_board = fw.bundle_for("1.2", 1, "another-board");
    let port = free_port();
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = \"{d}/journal.db\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\n{update}",
            d = d.display(),
            update = fw.section("5m"),
        ),
    )
    .unwrap();
    add_admin(&config);
    let mut gw = Gateway::start(&config, &d.join("gateway.log"), &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));
    let base = format!("https://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();
    let b = Driver::start(profile.path());
    log_in(&b, &base);
    wait_for(&b, "the dashboard", Duration::from_secs(5), |s| {
        s.contains("id=\"firmware\"")
    });
    b.go(&format!("{base}/update"));
    let page = wait_for(&b, "the update page", Duration::from_secs(5), |s| {
        s.contains("id=\"slots\"")
    });
    assert!(page.contains("<td>1.0</td>"), "{page}");
    let before = fw.status();

    // A bundle for other hardware: refused with the reason, no slot touched.
    b.type_into("#upload-file", &other_board.display().to_string());
    b.click("#upload-bundle");
    let refused = wait_for(&b, "the refusal", Duration::from_secs(10), |s| {
        s.contains("Refused:")
    });
    assert!(refused.contains("another-board"), "{refused}");
    assert_eq!(fw.status(), before);
    b.screenshot(&shots, "update-refused");

    // The right bundle: its verified manifest before anything is written.
    b.go(&format!("{base}/update"));
    b.type_into("#upload-file", &good.display().to_string());
    b.click("#upload-bundle");
    let shown = wait_for(&b, "the verified manifest", Duration::from_secs(10), |s| {
        s.contains("id=\"verified-bundle\"")
    });
    assert!(shown.contains("id=\"manifest-version\">1.1<"), "{shown}");
    assert!(shown.contains("id=\"manifest-hardware\">ecko-test-board<"));
    assert!(shown.contains("id=\"manifest-security-version\">1<"));
    assert_eq!(
        fw.status(),
        before,
        "nothing installed before the confirmation"
    );
    b.screenshot(&shots, "update-verified");

    // The confirmation needs the password again.
    b.run("window.confirm = function () { return true; };");
    b.type_into("#install-password", "not the password");
    b.click("#install-confirm");
    wait_for(
        &b,
        "the wrong password refused",
        Duration::from_secs(5),
        |s| s.contains("id=\"update-error\""),
    );
    assert_eq!(fw.status(), before);
    b.run("window.confirm = function () { return true; };");
    b.type_into("#install-password", PASSWORD);
    b.click("#install-confirm");
    let done = wait_for(&b, "the install's result", Duration::from_secs(30), |s| {
        s.contains("installed 1.1 in slot a") && s.contains("class=\"slot-state pending\"")
    });
    assert!(!done.contains("id=\"verified-bundle\""), "{done}");
    b.screenshot(&shots, "update-installed");
    let after = fw.status();
    assert_eq!(after["a"]["state"], "pending", "{after}");
    assert_eq!(after["a"]["version"], "1.1");
    assert_eq!(after["next"], "a");
    b.go(&format!("{base}/audit"));
    let audit = b.source();
    for action in ["update.refused", "update.upload", "update.install"] {
        assert!(audit.contains(action), "{action} not audited:\n{audit}");
    }
}

/// A peer process, ended when the test ends, passed or not.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// aiosmtpd on `port` requiring STARTTLS with `pki`'s server certificate,
/// delivering into `maildir`; the subjects it took, oldest first, from
/// [`mail_subjects`].
fn smtp_sink(port: u16, maildir: &Path, pki: &ecko_tests::fhir::TestPki) -> Peer {
    let child = Command::new(ecko_tests::peer_python("smtp-venv"))
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tlscert")
        .arg(&pki.server_cert)
        .arg("--tlskey")
        .arg(&pki.server_key)
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiosmtpd");
    let child = Peer(child);
    assert!(
        ecko_tests::wait_for_port(port, Duration::from_secs(20)),
        "aiosmtpd did not start"
    );
    child
}

fn mail_subjects(maildir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .map(str::to_string)
        })
        .collect()
}

/// The POSTs `tests/python/webhook_receiver.py` kept in `out`, oldest
/// first.
fn webhooks(out: &Path) -> Vec<Value> {
    (1..)
        .map(|n| out.join(format!("{n}.json")))
        .take_while(|p| p.exists())
        .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
        .collect()
}

#[test]
fn an_endpoint_misconfigured_on_the_page_raises_an_alert_that_is_mailed_posted_and_on_the_audit_page(
) {
    let (dir, shots) = browser_test();
    let d = dir.path();
    let pki = ecko_tests::fhir::TestPki::create(&d.join("pki"));
    let maildir = d.join("maildir");
    let (smtp_port, lis_port, mistyped_port, admin_port) =
        (free_port(), free_port(), free_port(), free_port());
    let _smtp = smtp_sink(smtp_port, &maildir, &pki);
    let hooks = d.join("hooks");
    let _receiver = Peer(
        Command::new("python3")
            .arg(ecko_tests::python_script("webhook_receiver.py"))
            .arg("--out")
            .arg(&hooks)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the webhook receiver"),
    );
    assert!(eventually(Duration::from_secs(10), || hooks
        .join("port")
        .exists()));
    let hook_port = std::fs::read_to_string(hooks.join("port")).unwrap();
    // The LIS: hl7apy's MLLP server, up from the start.
    std::fs::create_dir_all(d.join("received")).unwrap();
    let _lis = Peer(
        Command::new(ecko_tests::peer_python("venv-hl7"))
            .arg(ecko_tests::python_script("hl7apy_server.py"))
            .arg(lis_port.to_string())
            .arg(d.join("received"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the hl7apy server"),
    );
    assert!(ecko_tests::wait_for_port(lis_port, Duration::from_secs(10)));
    std::fs::create_dir_all(d.join("inbox")).unwrap();
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
connect = "127.0.0.1:{lis_port}"
ack_timeout = "5s"
[endpoint.retry]
initial = "100ms"
max = "500ms"
[[route]]
name = "results"
from = ["inbox"]
to = ["lis"]
[admin]
listen = "127.0.0.1:{admin_port}"
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
secret = "a webhook secret of some length"
timeout = "5s"
[[alerts.rule]]
name = "lis-down"
when = "endpoint_down"
endpoint = "lis"
for = "2s"
channels = ["lab-it", "pager"]
"#,
            d = d.display(),
            ca = pki.ca.display(),
        ),
    )
    .unwrap();
    add_admin(&config);
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));
    let result = |seq: usize| {
        format!("MSH|^~\\&|LAB|HOSP|LIS|HOSP|20260312101500||ORU^R01|C{seq}|P|2.5.1\rPID|1||P1\rOBR|1||S{seq}|GLU\rOBX|1|NM|GLU||5.4|mmol/L|||||F\r")
    };
    std::fs::write(d.join("inbox/r1.hl7"), result(1)).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || {
            !ecko_tests::file_names(&d.join("received")).is_empty()
        }),
        "the LIS took nothing"
    );

    let base = format!("https://127.0.0.1:{admin_port}");
    let profile = tempfile::tempdir().unwrap();
    let b = Driver::start(profile.path());
    log_in(&b, &base);
    wait_for(&b, "the dashboard", Duration::from_secs(10), |s| {
        s.contains("href=\"/logout\"") || s.contains("action=\"/logout\"")
    });
    // The LIS's port mistyped on the endpoint form.
    b.go(&format!("{base}/endpoints/lis/edit"));
    wait_for(&b, "the edit form", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoint-form\"")
    });
    b.run("document.querySelector('input[name=connect]').value = ''; return true;");
    b.type_into("input[name=connect]", &format!("127.0.0.1:{mistyped_port}"));
    b.screenshot(&shots, "alerts-1-port-mistyped");
    b.click("#save");
    wait_for(&b, "the change applied", Duration::from_secs(10), |s| {
        s.contains("id=\"notice\"") && s.contains("restarted lis")
    });
    b.screenshot(&shots, "alerts-2-saved");
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains(&format!("connect = \"127.0.0.1:{mistyped_port}\"")));

    // The next result cannot be delivered: the alert fires on both channels.
    std::fs::write(d.join("inbox/r2.hl7"), result(2)).unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(60), || !mail_subjects(&maildir)
            .is_empty()),
        "no alert e-mail:\n{}",
        log_text()
    );
    let subjects = mail_subjects(&maildir);
    assert!(
        subjects[0].contains("FIRING: lis-down: lis"),
        "{subjects:?}"
    );
    assert!(
        eventually(Duration::from_secs(30), || !webhooks(&hooks).is_empty()),
        "no webhook:\n{}",
        log_text()
    );
    let hook = &webhooks(&hooks)[0];
    assert_eq!(hook["path"], "/alerts");
    assert!(
        hook["headers"]["x-ecko-signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256=")),
        "{hook}"
    );
    let posted: Value = serde_json::from_str(hook["body"].as_str().unwrap()).unwrap();
    assert_eq!(posted["state"], "fired", "{posted}");
    assert_eq!(posted["rule"], "lis-down");
    assert_eq!(posted["subject"], "lis");

    // The audit page shows the alert after the edit that caused it.
    b.go(&format!("{base}/audit"));
    let audit = wait_for(
        &b,
        "the alert on the audit page",
        Duration::from_secs(10),
        |s| s.contains("alert.fired"),
    );
    let fired = audit.find("alert.fired").unwrap();
    let row = &audit[fired..];
    assert!(
        row[..row.find("</tr>").unwrap()].contains("lis-down: lis"),
        "{audit}"
    );
    let edited = audit
        .find("endpoint.edit")
        .expect("the edit in the audit log");
    // Newest first: the alert above the edit that brought it about.
    assert!(fired < edited, "{audit}");
    b.screenshot(&shots, "alerts-3-audit");

    drop(b);
    assert_eq!(gw.terminate(), Some(0));
}

/// The current UTC time as a `datetime-local` field takes it, to the minute.
fn minute_field(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M").to_string()
}

#[test]
fn an_outage_backlog_rises_and_drains_on_the_statistics_chart() {
    let (dir, shots) = browser_test();
    let d = dir.path();
    let outbox = d.join("outbox");
    // The destination is down: a regular file where its folder should be.
    std::fs::write(&outbox, b"in the way").unwrap();
    let (port, mllp_port) = (free_port(), free_port());
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[site]
time_zone = "UTC"
[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "lab-mllp"
type = "mllp"
listen = "127.0.0.1:{mllp_port}"
[[endpoint]]
name = "archive"
type = "file"
path = "{outbox}"
[endpoint.retry]
initial = "1s"
max = "2s"
[[route]]
name = "all"
from = ["lab-mllp"]
to = ["archive"]
[admin]
listen = "127.0.0.1:{port}"
"#,
            d = d.display(),
            outbox = outbox.display()
        ),
    )
    .unwrap();
    add_admin(&config);
    let mut gw = Gateway::start(&config, &d.join("gateway.log"), &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));
    let base = format!("https://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();
    let b = Driver::start(profile.path());
    log_in(&b, &base);
    wait_for(&b, "the dashboard", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoints\"")
    });

    let send = |n: u32| {
        let file = d.join(format!("r{n}.hl7"));
        std::fs::write(
            &file,
            format!("MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20240301120000||ORU^R01|OUT-{n}|P|2.5\nPID|||PAT-{n}\nOBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\n"),
        )
        .unwrap();
        let out = mllp_send(&file, mllp_port);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("MSA|AA|OUT-{n}")),
            "{out:?}"
        );
    };
    let second = || jiff::Timestamp::now().as_second().rem_euclid(60);
    let wait_for_next_minute = |after: i64| {
        let next = (after.div_euclid(60) + 1) * 60;
        while jiff::Timestamp::now().as_second() < next {
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Room for a sample (every 10 s) in the minute of the first three.
    while second() > 35 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let first = jiff::Timestamp::now();
    for n in 1..=3 {
        send(n);
    }
    std::thread::sleep(Duration::from_secs(12));
    // Six more in the next minute, while the destination is still down.
    wait_for_next_minute(first.as_second());
    let second_minute = jiff::Timestamp::now();
    for n in 4..=9 {
        send(n);
    }
    std::thread::sleep(Duration::from_secs(12));
    // The destination comes back; the backlog drains.
    std::fs::remove_file(&outbox).unwrap();
    std::fs::create_dir_all(&outbox).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || ecko_tests::file_names(&outbox)
            .len()
            == 9),
        "the backlog was not delivered: {:?}",
        ecko_tests::file_names(&outbox)
    );
    assert!(
        jiff::Timestamp::now().as_second().div_euclid(60)
            == second_minute.as_second().div_euclid(60),
        "the backlog drained after its minute; the test machine is too slow for this test's timing"
    );
    // The minute after: nothing waits any more.
    wait_for_next_minute(second_minute.as_second());
    std::thread::sleep(Duration::from_secs(1));

    // The admin picks the three minutes of the outage on the statistics page.
    b.go(&format!("{base}/stats"));
    wait_for(&b, "the statistics page", Duration::from_secs(5), |s| {
        s.contains("id=\"stats-range\"")
    });
    let from = minute_field(first);
    let to = minute_field(first + jiff::SignedDuration::from_mins(3));
    b.run(&format!(
        "document.querySelector('#stats-range input[name=from]').value = '{from}';\
         document.querySelector('#stats-range input[name=to]').value = '{to}';"
    ));
    b.click("#stats-range button");
    wait_for(&b, "the chosen range", Duration::from_secs(5), |s| {
        s.contains("figure class=\"queue\"")
    });
    b.run("document.querySelector('figure.queue').scrollIntoView();");
    b.screenshot(&shots, "stats-outage");
    let bars = b.run(
        "return [...document.querySelectorAll('figure.queue svg rect title')].map(t => t.textContent);",
    );
    let titles: Vec<&str> = bars
        .as_array()
        .expect("bar titles")
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| t.starts_with("waiting:"))
        .collect();
    let counts: Vec<u64> = titles
        .iter()
        .map(|t| {
            t.trim_start_matches("waiting: ")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a bar title without its count: {t}"))
        })
        .collect();
    assert_eq!(
        counts,
        [3, 9, 0],
        "the backlog per minute over the outage: {titles:?}"
    );
    let minute = |t: jiff::Timestamp| t.strftime("%H:%M").to_string();
    assert!(
        titles[1].contains(&format!("{} – ", minute(second_minute))),
        "{titles:?}"
    );
    // How long the oldest had waited, the longest in each minute: growing
    // while the destination was down, none once it was back.
    let ages = b.run(
        "return [...document.querySelectorAll('figure.queue-age svg rect title')].map(t => t.textContent);",
    );
    let ages: Vec<u64> = ages
        .as_array()
        .expect("bar titles")
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| t.starts_with("oldest waited:"))
        .map(|t| {
            t.trim_start_matches("oldest waited: ")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a bar title without its age: {t}"))
        })
        .collect();
    assert!(
        ages.len() == 3 && 0 < ages[0] && ages[0] < ages[1] && ages[2] == 0,
        "the oldest's wait per minute: {ages:?}"
    );
    // The same minutes in the chart of traffic: received while down,
    // delivered once it came back.
    let traffic = b.run(
        "return [...document.querySelectorAll('figure:not(.queue):not(.queue-age) svg rect title')].map(t => t.textContent);",
    );
    let traffic: Vec<&str> = traffic
        .as_array()
        .expect("bar titles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for expected in ["received: 3 ", "received: 6 ", "delivered: 9 "] {
        assert!(
            traffic.iter().any(|t| t.starts_with(expected)),
            "no bar `{expected}` in {traffic:?}"
        );
    }
}

#[test]
fn an_admin_resets_the_gateway_from_the_settings_page_after_giving_the_password_again_and_it_starts_as_on_first_boot(
) {
    let (dir, shots) = browser_test();
    let d = dir.path();
    let (port, mllp_port) = (free_port(), free_port());
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{d}/var/journal.db"
[[endpoint]]
name = "lab-mllp"
type = "mllp"
listen = "127.0.0.1:{mllp_port}"
[[endpoint]]
name = "lab-archive"
type = "file"
path = "{d}/out"
[[route]]
name = "all"
from = ["lab-mllp"]
to = ["lab-archive"]
[admin]
listen = "127.0.0.1:{port}"
"#,
            d = d.display()
        ),
    )
    .unwrap();
    add_admin(&config);
    let gw = Gateway::start(&config, &d.join("gateway.log"), &[]);
    let message = d.join("message.hl7");
    std::fs::write(
        &message,
        "MSH|^~\\&|LAB|HOSP|GW|HOSP|20240301120000||ORU^R01|RESET-1|P|2.5\nPID|||PAT-1||Doe^Jane\nOBX|1|NM|GLU^Glucose||5.4|mmol/L|||||F\n",
    )
    .unwrap();
    let out = mllp_send(&message, mllp_port);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MSA|AA|RESET-1"),
        "{out:?}"
    );
    let journal = d.join("var/journal.db");
    assert!(journal.exists());

    let base = format!("https://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();
    let b = Driver::start(profile.path());
    log_in(&b, &base);
    wait_for(&b, "the dashboard", Duration::from_secs(5), |s| {
        s.contains("id=\"endpoints\"")
    });
    b.go(&format!("{base}/settings"));
    wait_for(&b, "the settings page", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-link\"")
    });
    b.click("#factory-reset-link");
    let page = wait_for(&b, "the factory reset page", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-wiped\"")
    });
    assert!(
        page.contains(&journal.display().to_string()),
        "the page names the journal it wipes:\n{page}"
    );
    b.screenshot(&shots, "factory-reset");

    // A wrong password: refused on the page, nothing wiped, still running.
    b.run("window.confirm = function () { return true; };");
    b.type_into("#factory-reset-password", "not the password");
    b.click("#factory-reset-confirm");
    let refused = wait_for(&b, "the refusal", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-error\"")
    });
    assert!(refused.contains("not your password"), "{refused}");
    assert!(journal.exists(), "nothing is wiped on a wrong password");
    b.go(&format!("{base}/settings"));
    wait_for(&b, "still logged in", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-link\"")
    });

    // Dismissing the browser's confirmation sends nothing.
    b.go(&format!("{base}/settings/factory-reset"));
    wait_for(&b, "the factory reset page", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-password\"")
    });
    b.run("window.confirm = function () { return false; };");
    b.type_into("#factory-reset-password", PASSWORD);
    b.click("#factory-reset-confirm");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!b.source().contains("id=\"factory-reset-started\""));
    assert!(journal.exists(), "nothing is wiped when the admin says no");

    b.go(&format!("{base}/settings/factory-reset"));
    wait_for(&b, "the factory reset page", Duration::from_secs(5), |s| {
        s.contains("id=\"factory-reset-password\"")
    });
    b.run("window.confirm = function () { return true; };");
    b.type_into("#factory-reset-password", PASSWORD);
    b.click("#factory-reset-confirm");
    wait_for(&b, "the reset started", Duration::from_secs(10), |s| {
        s.contains("id=\"factory-reset-started\"")
    });
    b.screenshot(&shots, "factory-reset-started");
    assert_eq!(gw.wait_for_exit(), Some(75), "exits to be started again");
    assert!(!journal.exists(), "the journal is wiped");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("name = \"mllp-in\""), "the defaults:\n{text}");
    assert!(!text.contains("lab-archive"), "{text}");

    // Started again (as the unit does on exit 75), on the defaults: the
    // same browser is sent to the first-run setup, which asks for the
    // device's new setup code; its old session opens nothing.
    let env = [
        ("ECKO_DATA_DIR", d.join("var").display().to_string()),
        ("ECKO_ADMIN_PORT", port.to_string()),
        ("ECKO_MLLP_PORT", free_port().to_string()),
        ("ECKO_ASTM_PORT", free_port().to_string()),
        (
            "ECKO_FHIR_URL",
            format!("http://127.0.0.1:{}/fhir/R4", free_port()),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let again = Gateway::start(&config, &d.join("after-reset.log"), &env);
    b.go(&format!("{base}/"));
    let setup = wait_for(&b, "the first-run setup", Duration::from_secs(10), |s| {
        s.contains("<input name=\"setup_code\" required")
    });
    assert!(b.url().ends_with("/setup"), "{}", b.url());
    assert!(!setup.contains("id=\"endpoints\""), "{setup}");
    b.screenshot(&shots, "factory-reset-first-boot");
    assert_eq!(again.terminate(), Some(0));
}
