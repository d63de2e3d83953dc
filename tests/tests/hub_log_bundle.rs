//! `log.bundle` end to end: the hub asks over mosquitto (mutual TLS), the
//! gateway uploads a gzip tar with HTTPS `PUT` to a Python server that
//! requires the device's certificate; the bundle unpacks with GNU tar and
//! holds what a support engineer needs. URLs outside the policy's
//! `upload_to`, or not HTTPS, are refused without an upload.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::{decode, encode};
use ecko_tests::fhir::TestPki;
use ecko_tests::mqtt::{hub_publish, Broker, HubListener, TlsListener};
use ecko_tests::{eventually, python_script, Gateway};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "ecko/north/lab-1/";

struct Receiver {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Receiver {
    fn start(dir: &Path, pki: &TestPki) -> Receiver {
        let out = dir.join("uploads");
        let child = Command::new("python3")
            .arg(python_script("upload_receiver.py"))
            .arg("--out")
            .arg(&out)
            .arg("--cert")
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .arg("--ca")
            .arg(&pki.ca)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 upload_receiver.py");
        assert!(
            eventually(Duration::from_secs(10), || out.join("port").exists()),
            "the upload receiver did not start"
        );
        let port = std::fs::read_to_string(out.join("port"))
            .unwrap()
            .parse()
            .unwrap();
        Receiver { child, out, port }
    }

    /// The uploads so far: body and metadata.
    fn uploads(&self) -> Vec<(Vec<u8>, Value)> {
        (1..)
            .map_while(|n| {
                let meta = std::fs::read(self.out.join(format!("{n}.json"))).ok()?;
                let body = std::fs::read(self.out.join(format!("{n}.body"))).ok()?;
                Some((body, serde_json::from_slice(&meta).ok()?))
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn give(broker: &Broker, id: &str, body: Value) {
    let command =
        json!({"v": 1, "id": id, "issued_at": now_ms(), "cmd": "log.bundle", "body": body});
    hub_publish(
        broker,
        &format!("{PREFIX}cmd/{id}"),
        &encode(PayloadFormat::Cbor, &command),
    );
}

fn reply(hub: &HubListener, id: &str) -> Value {
    let topic = format!("{PREFIX}reply/{id}");
    assert!(
        eventually(Duration::from_secs(30), || !hub.on(&topic).is_empty()),
        "no reply to {id}"
    );
    decode(PayloadFormat::Cbor, &hub.on(&topic)[0].payload).unwrap()
}

#[test]
fn a_log_bundle_asked_for_by_the_hub_is_uploaded_over_mutual_tls_and_holds_log_health_and_masked_configuration(
) {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let broker = Broker::start_tls(
        &dir.path().join("broker"),
        &TlsListener {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            require_certificate: true,
        },
    );
    let receiver = Receiver::start(dir.path(), &pki);
    let d = dir.path().join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let text = format!(
        r#"{base}
[[endpoint]]
name = "lis"
type = "fhir"
url = "http://127.0.0.1:9/fhir"
[endpoint.auth]
type = "api-key"
key = "hunter2"

[hub]
url = "mqtts://127.0.0.1:{port}"
ca_file = "{ca}"
cert = "{cert}"
key = "{key}"
site = "north"
device = "lab-1"
reconnect_min = "1s"
reconnect_max = "2s"

[hub.commands]
allow = ["messages.retry", "log.bundle"]
upload_to = ["https://127.0.0.1:{upload}/bundles/"]
"#,
        base = ecko_tests::dead_letter_config(&d),
        port = broker.tls_port.unwrap(),
        ca = pki.ca.display(),
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
        upload = receiver.port,
    );
    std::fs::write(d.join("gateway.toml"), text).unwrap();
    let hub = HubListener::start(
        &broker,
        "hub-bundle",
        &[&format!("{PREFIX}status"), &format!("{PREFIX}reply/+")],
        &dir.path().join("hub.jsonl"),
    );
    let _gw = Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[]);
    assert!(
        eventually(Duration::from_secs(20), || !hub
            .on(&format!("{PREFIX}status"))
            .is_empty()),
        "the gateway did not come online"
    );

    // Refused before anything is made or sent.
    give(
        &broker,
        "b-elsewhere",
        json!({"url": "https://127.0.0.1:1/elsewhere/x"}),
    );
    let r = reply(&hub, "b-elsewhere");
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    give(
        &broker,
        "b-plain",
        json!({"url": format!("http://127.0.0.1:{}/bundles/x", receiver.port)}),
    );
    let r = reply(&hub, "b-plain");
    assert_eq!(r["error"]["code"], "invalid", "{r}");
    assert!(receiver.uploads().is_empty());

    let url = format!("https://127.0.0.1:{}/bundles/b-1.tar.gz", receiver.port);
    give(&broker, "b-1", json!({"url": url, "max_bytes": 1 << 20}));
    let r = reply(&hub, "b-1");
    assert_eq!(r["ok"], true, "{r}");
    let result = &r["result"];
    assert_eq!(result["status"], 201, "{r}");

    let uploads = receiver.uploads();
    assert_eq!(uploads.len(), 1, "one upload");
    let (body, meta) = &uploads[0];
    assert_eq!(meta["path"], "/bundles/b-1.tar.gz");
    assert_eq!(meta["client_subject"], json!(["client"]), "mTLS identity");
    let headers = &meta["headers"];
    assert_eq!(headers["content-type"], "application/gzip");
    assert_eq!(headers["x-ecko-device"], "lab-1");
    assert_eq!(headers["x-ecko-command"], "b-1");
    let digest = hex::encode(Sha256::digest(body));
    assert_eq!(headers["x-ecko-sha256"], digest.as_str());
    assert_eq!(result["sha256"], digest.as_str());
    assert_eq!(result["bytes"], body.len());
    assert!(body.len() <= 1 << 20);

    // GNU tar reads it.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    std::fs::write(dir.path().join("b-1.tar.gz"), body).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(dir.path().join("b-1.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success(), "tar could not unpack the bundle");
    let read = |name: &str| {
        std::fs::read_to_string(unpacked.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let manifest: Value = serde_json::from_str(&read("manifest.json")).unwrap();
    assert_eq!(manifest["identity"]["device"], "lab-1");
    assert_eq!(manifest["identity"]["command"], "b-1");
    // What the process logged, as its log file has it.
    let log = read("log/recent.log");
    let logged = std::fs::read_to_string(d.join("gateway.log")).unwrap();
    let first = logged.lines().next().expect("the gateway logged");
    assert!(log.contains(first), "{first:?} not in the bundle's log");
    assert!(log.contains("hub"), "{log}");
    let health: Value = serde_json::from_str(&read("health.json")).unwrap();
    assert!(health["endpoints"].is_array(), "{health}");
    let config = read("config/gateway.toml");
    assert!(config.contains("[hub.commands]"), "{config}");
    assert!(!config.contains("hunter2"), "the API key is masked");
    // The audit in the bundle has the two refusals made before it.
    let audit: Value = serde_json::from_str(&read("audit.json")).unwrap();
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "hub.command.refused")
        .count();
    assert_eq!(refused, 2, "{audit}");
    let log_after = std::fs::read_to_string(d.join("gateway.log")).unwrap();
    assert!(!log_after.contains("panicked"), "{log_after}");
}
