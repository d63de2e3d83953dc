//! The hub's commands against a real mosquitto broker, with paho-mqtt as
//! the hub: a dead letter retried by command and delivered, a replayed and
//! an expired command refused, a configuration pushed with a valid
//! signature applied, one with a byte changed refused, and one that breaks
//! an endpoint rolled back; a firmware bundle downloaded from a local HTTP
//! server (Python's http.server) and installed, a refused one never
//! touching a slot.

use base64::Engine;
use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::{decode, encode};
use ecko_gateway::journal::JournalReader;
use ecko_tests::mqtt::{hub_publish, Broker, HubListener};
use ecko_tests::{dead_letter_config, eventually, hl7_sample, Gateway};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "ecko/north/lab-1/";

/// [`dead_letter_config`] in `d` plus the uplink to `broker`, with
/// `hub_extra` lines in `[hub]`.
fn config(d: &Path, broker: &Broker, format: &str, hub_extra: &str) -> String {
    format!(
        r#"{base}
[hub]
url = "mqtt://127.0.0.1:{port}"
site = "north"
device = "lab-1"
format = "{format}"
reconnect_min = "1s"
reconnect_max = "2s"
{hub_extra}
"#,
        base = dead_letter_config(d),
        port = broker.port,
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The gateway in `dir/gw`, its hub listening on status and replies, and
/// the gateway connected (its online status seen, so it has subscribed).
fn start(
    dir: &Path,
    broker: &Broker,
    format: &str,
    hub_extra: &str,
) -> (std::path::PathBuf, Gateway, HubListener) {
    let d = dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("gateway.toml"),
        config(&d, broker, format, hub_extra),
    )
    .unwrap();
    let hub = HubListener::start(
        broker,
        "hub-commands",
        &[&format!("{PREFIX}status"), &format!("{PREFIX}reply/+")],
        &dir.join("hub.jsonl"),
    );
    let gw = Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[]);
    assert!(
        eventually(Duration::from_secs(15), || !hub
            .on(&format!("{PREFIX}status"))
            .is_empty()),
        "the gateway did not come online"
    );
    (d, gw, hub)
}

/// The hub gives command `id` (`name` with `body`, issued at `issued_at`).
fn give(broker: &Broker, format: PayloadFormat, id: &str, issued_at: i64, name: &str, body: Value) {
    let command = json!({"v": 1, "id": id, "issued_at": issued_at, "cmd": name, "body": body});
    hub_publish(
        broker,
        &format!("{PREFIX}cmd/{id}"),
        &encode(format, &command),
    );
}

/// The replies to command `id` so far.
fn replies(hub: &HubListener, format: PayloadFormat, id: &str) -> Vec<Value> {
    hub.on(&format!("{PREFIX}reply/{id}"))
        .iter()
        .map(|r| decode(format, &r.payload).unwrap())
        .collect()
}

/// The `n`th reply to command `id`, waiting for it.
fn reply(hub: &HubListener, format: PayloadFormat, id: &str, n: usize) -> Value {
    assert!(
        eventually(Duration::from_secs(15), || replies(hub, format, id).len()
            > n),
        "no reply {n} to {id}"
    );
    replies(hub, format, id).remove(n)
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["ok"], false, "{reply}");
    reply["error"]["code"].as_str().unwrap()
}

fn dead_in_journal(d: &Path) -> u64 {
    JournalReader::open(&d.join("journal.db"))
        .and_then(|r| r.counts())
        .map(|c| c.iter().map(|c| c.dead).sum())
        .unwrap_or(0)
}

#[test]
fn a_dead_letter_is_retried_by_command_and_delivered_and_a_replayed_or_expired_command_is_refused()
{
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let cbor = PayloadFormat::Cbor;
    let (d, gw, hub) = start(dir.path(), &broker, "cbor", "");

    std::fs::write(d.join("inbox/r1.hl7"), hl7_sample("oru_r01_v251.hl7")).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || dead_in_journal(&d) == 1),
        "the delivery did not die"
    );
    // The destination takes deliveries again.
    std::fs::remove_file(d.join("blocked")).unwrap();

    give(
        &broker,
        cbor,
        "retry-1",
        now_ms(),
        "messages.retry",
        json!({"endpoint": "archive"}),
    );
    let r = reply(&hub, cbor, "retry-1", 0);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["cmd"], "messages.retry");
    assert_eq!(r["result"]["rows"], 1, "{r}");
    assert!(
        eventually(Duration::from_secs(15), || {
            dead_in_journal(&d) == 0
                && std::fs::read_dir(d.join("blocked/out")).is_ok_and(|e| e.count() == 1)
        }),
        "the retried message was not delivered"
    );

    // The same id again, fresh as it is: refused, nothing retried.
    give(
        &broker,
        cbor,
        "retry-1",
        now_ms(),
        "messages.retry",
        json!({"endpoint": "archive"}),
    );
    assert_eq!(error_code(&reply(&hub, cbor, "retry-1", 1)), "replayed");

    // Issued ten minutes ago, past the default max_age of five.
    give(
        &broker,
        cbor,
        "old-1",
        now_ms() - 600_000,
        "endpoint.pause",
        json!({"endpoint": "archive"}),
    );
    assert_eq!(error_code(&reply(&hub, cbor, "old-1", 0)), "expired");

    // Neither is allowed by the default policy.
    give(
        &broker,
        cbor,
        "push-1",
        now_ms(),
        "config.push",
        json!({"config": "", "signature": ""}),
    );
    assert_eq!(error_code(&reply(&hub, cbor, "push-1", 0)), "forbidden");
    give(
        &broker,
        cbor,
        "fw-1",
        now_ms(),
        "firmware.install",
        json!({"url": "https://hub.example/fw.bin"}),
    );
    let fw = reply(&hub, cbor, "fw-1", 0);
    assert_eq!(error_code(&fw), "forbidden");

    // The endpoint the expired command named still runs.
    let text = std::fs::read_to_string(d.join("gateway.toml")).unwrap();
    assert!(!text.contains("enabled = false"), "{text}");
    drop(gw);
}

/// The canonical bytes of a push, as `docs/hub-protocol.md` defines them.
fn signed_bytes(id: &str, issued_at: i64, toml: &str) -> Vec<u8> {
    format!("ecko-config-push/1\nnorth/lab-1\n{id}\n{issued_at}\n{toml}").into_bytes()
}

fn push(broker: &Broker, key: &SigningKey, id: &str, signed: &str, sent: &str) {
    let issued_at = now_ms();
    let signature = key.sign(&signed_bytes(id, issued_at, signed));
    give(
        broker,
        PayloadFormat::Json,
        id,
        issued_at,
        "config.push",
        json!({"config": sent, "signature": hex::encode(signature.to_bytes())}),
    );
}

#[test]
fn a_signed_configuration_is_applied_one_with_a_byte_changed_is_refused_and_one_that_breaks_an_endpoint_is_rolled_back(
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let json_format = PayloadFormat::Json;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().to_bytes());
    let policy = format!(
        "config_key = \"{public}\"\n[hub.commands]\nallow = [\"config.push\"]\nrole = \"admin\"\n"
    );
    let (d, gw, hub) = start(dir.path(), &broker, "json", &policy);
    let file = d.join("gateway.toml");
    let original = std::fs::read_to_string(&file).unwrap();

    // Signed by the hub's key: validated, applied, kept.
    let slower = original.replace("poll_interval = \"20ms\"", "poll_interval = \"30ms\"");
    assert_ne!(slower, original);
    push(&broker, &key, "push-1", &slower, &slower);
    let r = reply(&hub, json_format, "push-1", 0);
    assert_eq!(r["ok"], true, "{r}");
    assert!(
        r["result"]["restarted"]
            .as_array()
            .unwrap()
            .contains(&json!("inbox")),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), slower);

    // One byte changed after signing: refused before it is parsed.
    let signed = slower.replace("\"30ms\"", "\"40ms\"");
    let tampered = slower.replace("\"30ms\"", "\"50ms\"");
    push(&broker, &key, "push-2", &signed, &tampered);
    let r = reply(&hub, json_format, "push-2", 0);
    assert_eq!(error_code(&r), "forbidden");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{r}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), slower);

    // Signed and valid, but its new listener's port is taken: the apply
    // fails, the running gateway goes back, the file stays.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let breaking = slower.replace(
        "[[route]]",
        &format!(
            "[[endpoint]]\nname = \"lis\"\ntype = \"mllp\"\nlisten = \"127.0.0.1:{port}\"\n\n[[route]]"
        ),
    );
    let breaking = breaking.replace("from = [\"inbox\"]", "from = [\"inbox\", \"lis\"]");
    push(&broker, &key, "push-3", &breaking, &breaking);
    let r = reply(&hub, json_format, "push-3", 0);
    assert_eq!(error_code(&r), "failed");
    assert_eq!(r["error"]["detail"]["rolled_back"], true, "{r}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), slower);

    // The gateway still takes messages on the configuration in force.
    std::fs::write(d.join("inbox/r1.hl7"), hl7_sample("oru_r01_v251.hl7")).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || dead_in_journal(&d) == 1),
        "the inbox stopped after the rollback"
    );
    drop(taken);
    drop(gw);
}

#[test]
fn a_firmware_bundle_named_by_url_is_downloaded_and_installed_and_a_refused_one_never_touches_the_slot(
) {
    use ecko_tests::firmware::Firmware;
    use ecko_tests::{free_port, peer_python, wait_for_port};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let fw = Firmware::new(&dir.path().join("fw"));
    fw.shipped();
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    for (bundle, name) in [
        (fw.bundle("1.1", 1), "good.bundle"),
        (
            fw.bundle_for("1.2", 1, "another-board"),
            "other-board.bundle",
        ),
    ] {
        std::fs::copy(bundle, served.join(name)).unwrap();
    }
    let port = free_port();
    let mut server = std::process::Command::new(peer_python("mqtt-venv"))
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "http.server did not start"
    );
    let extra = format!(
        "[hub.commands]\nallow = [\"firmware.install\"]\nrole = \"admin\"\n\n{}",
        fw.section("5m")
    );
    let json_format = PayloadFormat::Json;
    let (d, gw, hub) = start(dir.path(), &broker, "json", &extra);
    let url = |name: &str| format!("http://127.0.0.1:{port}/{name}");

    give(
        &broker,
        json_format,
        "fw-good",
        now_ms(),
        "firmware.install",
        json!({"url": url("good.bundle")}),
    );
    let r = reply(&hub, json_format, "fw-good", 0);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["slot"], "a", "{r}");
    assert_eq!(r["result"]["version"], "1.1");
    let status = fw.status();
    assert_eq!(status["a"]["state"], "pending", "{status}");
    assert_eq!(status["a"]["version"], "1.1");
    assert_eq!(status["next"], "a");

    // For other hardware: refused, the slot as it was.
    give(
        &broker,
        json_format,
        "fw-other",
        now_ms(),
        "firmware.install",
        json!({"url": url("other-board.bundle")}),
    );
    let r = reply(&hub, json_format, "fw-other", 0);
    assert_eq!(error_code(&r), "failed");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("hardware"),
        "{r}"
    );
    assert_eq!(fw.status(), status);
    // Not there at all.
    give(
        &broker,
        json_format,
        "fw-missing",
        now_ms(),
        "firmware.install",
        json!({"url": url("missing.bundle")}),
    );
    let r = reply(&hub, json_format, "fw-missing", 0);
    assert_eq!(error_code(&r), "failed");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("404"),
        "{r}"
    );
    assert_eq!(fw.status(), status);
    // Nothing downloaded is left behind.
    assert_eq!(
        std::fs::read_dir(d.join("update"))
            .map(|e| e.count())
            .unwrap_or(0),
        0
    );
    drop(gw);
    let _ = server.kill();
    let _ = server.wait();

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
    let actions: Vec<&str> = audit
        .iter()
        .rev()
        .filter(|r| r.action.starts_with("update."))
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(actions, ["update.install", "update.refused"], "{audit:?}");
}
