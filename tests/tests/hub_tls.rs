//! The hub uplink over TLS to mosquitto with a test CA: `mqtts://` with
//! `ca_file`, mutual TLS where the device's certificate is its identity,
//! and the refusals: no client certificate, a broker of another CA.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::decode;
use ecko_tests::fhir::TestPki;
use ecko_tests::mqtt::{Broker, HubListener, TlsListener};
use ecko_tests::{eventually, Gateway};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PREFIX: &str = "ecko/north/lab-1/";

fn broker(dir: &Path, pki: &TestPki, require_certificate: bool) -> Broker {
    Broker::start_tls(
        &dir.join("broker"),
        &TlsListener {
            ca: pki.ca.clone(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            require_certificate,
        },
    )
}

/// A gateway directory whose uplink goes to the broker's TLS listener,
/// trusting `ca`, with the client certificate of `identity` if given.
fn gateway(dir: &Path, broker: &Broker, ca: &Path, identity: Option<&TestPki>) -> PathBuf {
    let d = dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let identity = identity.map_or(String::new(), |p| {
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            p.client_cert.display(),
            p.client_key.display()
        )
    });
    let text = format!(
        r#"{base}
[hub]
url = "mqtts://127.0.0.1:{port}"
ca_file = "{ca}"
{identity}site = "north"
device = "lab-1"
health_interval = "2s"
reconnect_min = "1s"
reconnect_max = "2s"
"#,
        base = ecko_tests::dead_letter_config(&d),
        port = broker.tls_port.unwrap(),
        ca = ca.display(),
    );
    std::fs::write(d.join("gateway.toml"), text).unwrap();
    d
}

fn start(d: &Path) -> Gateway {
    Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[])
}

fn listen(dir: &Path, broker: &Broker) -> HubListener {
    HubListener::start(
        broker,
        "hub-tls",
        &[&format!("{PREFIX}status"), &format!("{PREFIX}health")],
        &dir.join("hub.jsonl"),
    )
}

fn online(hub: &HubListener) -> bool {
    hub.on(&format!("{PREFIX}status"))
        .iter()
        .filter_map(|r| decode(PayloadFormat::Cbor, &r.payload).ok())
        .any(|s| s["state"] == "online")
}

fn log(d: &Path) -> String {
    std::fs::read_to_string(d.join("gateway.log")).unwrap_or_default()
}

#[test]
fn over_mqtts_with_the_broker_s_ca_the_status_and_health_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let broker = broker(dir.path(), &pki, false);
    let hub = listen(dir.path(), &broker);
    let d = gateway(dir.path(), &broker, &pki.ca, None);
    let gw = start(&d);
    assert!(
        eventually(Duration::from_secs(15), || online(&hub)
            && !hub.on(&format!("{PREFIX}health")).is_empty()),
        "no status and health over TLS: {:?}\n{}",
        hub.received(),
        log(&d)
    );
    let health = hub.on(&format!("{PREFIX}health")).pop().unwrap();
    let health = decode(PayloadFormat::Cbor, &health.payload).unwrap();
    assert_eq!(health["v"], 1);
    assert!(health["clock"]["rtc_present"].is_boolean(), "{health}");
    assert!(health["clock"].get("synchronised").is_some(), "{health}");
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn with_mutual_tls_the_device_certificate_is_its_identity_at_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let broker = broker(dir.path(), &pki, true);
    let hub = listen(dir.path(), &broker);
    let d = gateway(dir.path(), &broker, &pki.ca, Some(&pki));
    let gw = start(&d);
    assert!(
        eventually(Duration::from_secs(15), || online(&hub)),
        "no status over mutual TLS: {}\n{}",
        log(&d),
        broker.log()
    );
    // mosquitto names the client by its certificate's common name.
    let connected = broker
        .log()
        .lines()
        .find(|l| l.contains("as ecko-north-lab-1"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(connected.contains("u'client'"), "{}", broker.log());
    // Over MQTT 5 (mosquitto's p5), the device's certificate and all.
    assert!(connected.contains("(p5, c0,"), "{connected}");
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn without_its_client_certificate_the_gateway_is_refused_and_says_so_in_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let broker = broker(dir.path(), &pki, true);
    let hub = listen(dir.path(), &broker);
    let d = gateway(dir.path(), &broker, &pki.ca, None);
    let gw = start(&d);
    assert!(
        eventually(Duration::from_secs(15), || log(&d)
            .contains("hub broker not reachable")),
        "{}",
        log(&d)
    );
    // A few attempts more, none of them let in.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!online(&hub), "{:?}", hub.received());
    let refusal = log(&d)
        .lines()
        .find(|l| l.contains("hub broker not reachable"))
        .unwrap()
        .to_string();
    assert!(
        refusal.to_lowercase().contains("certificate"),
        "the log does not say why: {refusal}"
    );
    assert_eq!(
        log(&d)
            .matches("hub broker not reachable; trying again")
            .count(),
        1,
        "one warning per reason: {}",
        log(&d)
    );
    // A refused certificate is no sign of a broker without MQTT 5.
    assert!(!log(&d).contains("does not take MQTT 5"), "{}", log(&d));
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn a_broker_whose_certificate_is_of_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let other = TestPki::create(&dir.path().join("other"));
    let broker = broker(dir.path(), &pki, false);
    let hub = listen(dir.path(), &broker);
    let d = gateway(dir.path(), &broker, &other.ca, None);
    let gw = start(&d);
    assert!(
        eventually(Duration::from_secs(15), || log(&d)
            .contains("hub broker not reachable")),
        "{}",
        log(&d)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!online(&hub), "{:?}", hub.received());
    let refusal = log(&d)
        .lines()
        .find(|l| l.contains("hub broker not reachable"))
        .unwrap()
        .to_string();
    // Both test CAs are called the same, so rustls finds the issuer by
    // name and the signature does not verify.
    assert!(refusal.contains("invalid peer certificate"), "{refusal}");
    assert!(!log(&d).contains("does not take MQTT 5"), "{}", log(&d));
    assert_eq!(gw.terminate(), Some(0));
}
