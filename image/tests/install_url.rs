//! `ecko-image install URL` against a local HTTPS server (Python's
//! http.server with ssl, a throw-away CA): a bundle downloaded and
//! installed, and every download that must not reach a slot — an unknown
//! CA, plain HTTP not allowed, a truncated body, a body over the cap with
//! and without its length declared, a missing file — refused with 28
//! before the slot is touched, leaving no downloaded file behind.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::Scratch;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(d: &Path, plain: bool) -> Server {
        let port_file = d.join(if plain { "plain-port" } else { "tls-port" });
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bundle_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--dir")
            .arg(d.join("served"))
            .arg("--port-file")
            .arg(&port_file);
        if plain {
            cmd.arg("--plain");
        } else {
            cmd.arg("--cert")
                .arg(d.join("server.pem"))
                .arg("--key")
                .arg(d.join("server-key.pem"));
        }
        // Killed and waited for on drop, whatever the test's outcome.
        let mut server = Server {
            child: cmd.spawn().expect("python3"),
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                server.port = p.trim().parse().unwrap();
                return server;
            }
            assert!(Instant::now() < deadline, "the bundle server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Device {
    scratch: Scratch,
    tls: Server,
}

impl std::ops::Deref for Device {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl Device {
    fn new() -> Device {
        let scratch = Scratch::new(&["slots", "served"]);
        let d = &scratch.d;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(d.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(d.join("server-key.pem"), key.serialize_pem()).unwrap();
        let tls = Server::start(d, false);
        let dev = Device { scratch, tls };
        dev.ok(&["keygen", &dev.p("key")]);
        std::fs::write(dev.d.join("payload"), vec![9u8; 300_000]).unwrap();
        let o = dev.run(&[
            "build",
            "--payload",
            &dev.p("payload"),
            "--hardware",
            "box-v2",
            "--version",
            "1.0",
            "--security-version",
            "1",
            "--key",
            &dev.p("key"),
            "-o",
            &dev.p("served/good.bundle"),
        ]);
        assert!(o.status.success(), "{o:?}");
        dev
    }
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}/{path}", self.tls.port)
    }
    fn install(&self, url: &str, extra: &[&str]) -> Output {
        let (t, s) = (self.p("key.pub"), self.p("slots"));
        let mut a = vec![
            "install",
            url,
            "--trust",
            &t,
            "--hardware",
            "box-v2",
            "--slots",
            &s,
            "--json",
        ];
        a.extend(extra);
        self.run(&a)
    }
    /// Refused with 28 and `reason` in its message, nothing written.
    fn refused(&self, url: &str, extra: &[&str], reason: &str) {
        let before = self.slots_snapshot();
        let o = self.install(url, extra);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(28), "{url}: {stderr}");
        assert!(stderr.contains(reason), "{url}: {stderr}");
        assert_eq!(
            self.slots_snapshot(),
            before,
            "{url} touched the slots directory"
        );
    }
}

#[test]
fn a_bundle_downloaded_over_https_is_installed_and_the_download_removed() {
    let dev = Device::new();
    let o = dev.install(&dev.url("good.bundle"), &["--ca-file", &dev.p("ca.pem")]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["slot"], "b");
    assert_eq!(v["version"], "1.0");
    assert_eq!(
        std::fs::read(dev.d.join("slots/slot-b")).unwrap(),
        std::fs::read(dev.d.join("payload")).unwrap()
    );
    let names: Vec<String> = dev.slots_snapshot().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["boot-state.json", "slot-b"],
        "no download left behind"
    );
}

#[test]
fn a_server_outside_the_trusted_ca_and_plain_http_without_the_flag_are_refused() {
    let dev = Device::new();
    dev.refused(&dev.url("good.bundle"), &[], "certificate");
    let plain = Server::start(&dev.d, true);
    let http = format!("http://127.0.0.1:{}/good.bundle", plain.port);
    dev.refused(&http, &[], "--allow-http");
    let o = dev.install(&http, &["--allow-http"]);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn a_truncated_download_and_a_missing_bundle_are_refused_before_any_slot_is_written() {
    let dev = Device::new();
    let ca = ["--ca-file", &dev.p("ca.pem")].map(str::to_owned);
    let ca: Vec<&str> = ca.iter().map(String::as_str).collect();
    dev.refused(&dev.url("truncated/good.bundle"), &ca, "broke off");
    dev.refused(&dev.url("cut/good.bundle"), &ca, "broke off");
    dev.refused(&dev.url("missing.bundle"), &ca, "404");
}

#[test]
fn a_download_over_the_size_cap_is_refused_declared_or_not() {
    let dev = Device::new();
    let cap = ["--ca-file", &dev.p("ca.pem"), "--max-size", "100000"].map(str::to_owned);
    let cap: Vec<&str> = cap.iter().map(String::as_str).collect();
    dev.refused(
        &dev.url("good.bundle"),
        &cap,
        "larger than the 100000 bytes",
    );
    dev.refused(
        &dev.url("undeclared/good.bundle"),
        &cap,
        "larger than the 100000 bytes",
    );
    let o = dev.install(&dev.url("undeclared/good.bundle"), &cap[..2]);
    assert!(o.status.success(), "{o:?}");
}
