//! Orders from the hub over MQTT (mosquitto, paho-mqtt as the hub) served
//! to python-astm's host query while the FHIR upstream is down, a
//! cancellation honoured, a duplicate delivery kept once, a malformed
//! order refused with an event; an order committed whose PUBACK never
//! reached the broker (the gateway killed in between) journalled once
//! when the broker delivers it again.

mod astm_common;

use astm_common::{analyzer, free_port, kinds};
use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::{decode, encode};
use ecko_tests::mqtt::{hub_publish, Broker, HubListener, Relay};
use ecko_tests::{eventually, Gateway};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PREFIX: &str = "ecko/north/lab-1/";

fn config(d: &Path, broker: &Broker, astm_port: u16) -> std::path::PathBuf {
    config_on(d, broker.port, astm_port)
}

/// [`config`] with the broker at `mqtt_port`.
fn config_on(d: &Path, mqtt_port: u16, astm_port: u16) -> std::path::PathBuf {
    // Nothing listens on the FHIR port: the upstream is down throughout.
    let fhir_port = free_port();
    let text = format!(
        r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "astm"
type = "astm-tcp"
address = "127.0.0.1:{astm_port}"

[[endpoint]]
name = "fhir"
type = "fhir"
url = "http://127.0.0.1:{fhir_port}/fhir"

[[route]]
name = "results"
from = ["astm"]
to = ["fhir"]

[hub]
url = "mqtt://127.0.0.1:{mqtt}"
site = "north"
device = "lab-1"
reconnect_min = "1s"
reconnect_max = "2s"
"#,
        d = d.display(),
        mqtt = mqtt_port,
    );
    let path = d.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The hub's order message `id` for specimen `specimen`: a FHIR Bundle
/// of a Patient, a Specimen and one ServiceRequest per test, in CBOR.
fn order(id: &str, reference: &str, status: &str, specimen: &str, tests: &[&str]) -> Vec<u8> {
    let mut entry = vec![
        json!({"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "MRN-31"}],
            "name": [{"family": "Hub", "given": ["Hanna"]}]}}),
        json!({"fullUrl": "urn:uuid:s", "resource": {"resourceType": "Specimen",
            "accessionIdentifier": {"value": specimen},
            "subject": {"reference": "urn:uuid:p"}}}),
    ];
    for (i, t) in tests.iter().enumerate() {
        entry.push(json!({"fullUrl": format!("urn:uuid:sr{i}"), "resource": {
            "resourceType": "ServiceRequest", "status": status, "intent": "order",
            "requisition": {"value": reference},
            "code": {"coding": [{"system": "urn:lab-codes", "code": t}]},
            "subject": {"reference": "urn:uuid:p"},
            "specimen": [{"reference": "urn:uuid:s"}]}}));
    }
    encode(
        PayloadFormat::Cbor,
        &json!({"v": 1, "id": id, "issued_at": 0, "analyzer": "astm",
                "bundle": {"resourceType": "Bundle", "type": "collection", "entry": entry}}),
    )
}

fn events(l: &HubListener) -> Vec<Value> {
    l.on(&format!("{PREFIX}events"))
        .into_iter()
        .map(|r| decode(PayloadFormat::Cbor, &r.payload).unwrap())
        .collect()
}

fn query(port: u16, specimen: &str) -> Value {
    serde_json::from_str(&analyzer(&["query", &port.to_string(), specimen])).unwrap()
}

#[test]
fn orders_published_by_the_hub_are_answered_to_a_host_query_while_the_fhir_upstream_is_down_and_a_cancelled_one_is_not(
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let hub = HubListener::start(
        &broker,
        "hub-orders",
        &[&format!("{PREFIX}events")],
        &dir.path().join("hub.jsonl"),
    );
    let d = dir.path().join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let astm_port = free_port();
    let config = config(&d, &broker, astm_port);
    let mut gw = Gateway::start(&config, &d.join("gateway.log"), &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    // The gateway's subscription is in place once the broker logged it.
    let broker_log = dir.path().join("broker/mosquitto.log");
    assert!(
        eventually(Duration::from_secs(15), || std::fs::read_to_string(
            &broker_log
        )
        .unwrap_or_default()
        .contains(&format!("{PREFIX}orders"))),
        "the gateway never subscribed to its orders"
    );

    let topic = format!("{PREFIX}orders");
    let placed = order("m-1", "REQ-7", "active", "SPEC-H1", &["GLU", "NA"]);
    hub_publish(&broker, &topic, &placed);
    // The same delivery again, as QoS 1 may bring it.
    hub_publish(&broker, &topic, &placed);
    hub_publish(&broker, &topic, b"\x00 not an order");
    let accepted = |l: &HubListener| {
        events(l)
            .into_iter()
            .filter(|e| e["kind"] == "order.accepted")
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(15), || accepted(&hub).len() == 2
            && events(&hub).iter().any(|e| e["kind"] == "order.refused")),
        "{:?}",
        events(&hub)
    );
    let a = accepted(&hub);
    assert_eq!(a[0]["detail"]["duplicate"], false, "{a:?}");
    assert_eq!(a[1]["detail"]["duplicate"], true, "{a:?}");
    assert_eq!(a[0]["detail"]["ref"], "REQ-7");
    assert_eq!(a[0]["subject"], "astm");
    let refused = events(&hub)
        .into_iter()
        .find(|e| e["kind"] == "order.refused")
        .unwrap();
    assert!(
        refused["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("CBOR"),
        "{refused}"
    );

    let answer = query(astm_port, "SPEC-H1");
    assert_eq!(kinds(&answer), ["H", "P", "O", "L"], "{answer}");
    let records = answer.as_array().unwrap();
    assert_eq!(records[1][2], "MRN-31");
    assert_eq!(records[2][2], "SPEC-H1");
    assert_eq!(records[2][4][0][3], "GLU");
    assert_eq!(records[2][4][1][3], "NA");

    hub_publish(
        &broker,
        &topic,
        &order("m-2", "REQ-7", "revoked", "SPEC-H1", &["GLU", "NA"]),
    );
    assert!(
        eventually(Duration::from_secs(15), || events(&hub)
            .iter()
            .any(|e| e["kind"] == "order.cancelled")),
        "{:?}",
        events(&hub)
    );
    let after = query(astm_port, "SPEC-H1");
    assert_eq!(kinds(&after), ["H", "L"], "{after}");
    assert_eq!(after[1][2], "I");
    assert_eq!(gw.terminate(), Some(0));
}

/// The broker keeps the gateway's session: an order published while the
/// gateway is stopped is taken when it comes back, and served.
#[test]
fn an_order_published_while_the_gateway_is_stopped_is_taken_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let d = dir.path().join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let astm_port = free_port();
    let config = config(&d, &broker, astm_port);
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("hub uplink connected", 0, Duration::from_secs(15));
    assert!(
        eventually(Duration::from_secs(15), || broker
            .log()
            .contains(&format!("{PREFIX}orders"))),
        "the gateway never subscribed to its orders"
    );
    assert_eq!(gw.terminate(), Some(0));

    hub_publish(
        &broker,
        &format!("{PREFIX}orders"),
        &order("m-9", "REQ-9", "active", "SPEC-H9", &["K"]),
    );
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    assert!(
        eventually(Duration::from_secs(15), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("hub order: placed")),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let answer = query(astm_port, "SPEC-H9");
    assert_eq!(kinds(&answer), ["H", "P", "O", "L"], "{answer}");
    assert_eq!(answer[2][4][3], "K", "{answer}");
    assert_eq!(gw.terminate(), Some(0));
}

/// The window between an order's commit and the broker's PUBACK of it,
/// held open by a relay that drops what the gateway sends: the gateway is
/// killed in it, the broker delivers the order again on the next
/// connection, and it is taken as the duplicate it is, not journalled
/// twice.
#[test]
fn an_order_committed_but_not_acknowledged_before_a_sigkill_is_journalled_once_when_it_comes_again()
{
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let hub = HubListener::start(
        &broker,
        "hub-orders-crash",
        &[&format!("{PREFIX}events")],
        &dir.path().join("hub.jsonl"),
    );
    let relay = Relay::start(broker.port);
    let d = dir.path().join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let astm_port = free_port();
    let config = config_on(&d, relay.port, astm_port);
    let log = d.join("gateway.log");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let gw = Gateway::start(&config, &log, &[]);
    assert!(
        eventually(Duration::from_secs(15), || broker
            .log()
            .contains(&format!("{PREFIX}orders"))),
        "the gateway never subscribed to its orders"
    );

    relay.hold(true);
    hub_publish(
        &broker,
        &format!("{PREFIX}orders"),
        &order("m-5", "REQ-5", "active", "SPEC-H5", &["GLU"]),
    );
    assert!(
        eventually(Duration::from_secs(15), || log_text()
            .contains("hub order: placed")),
        "{}",
        log_text()
    );
    // The PUBACK is sent right after the commit; the relay drops it.
    std::thread::sleep(Duration::from_millis(500));
    gw.kill();
    relay.hold(false);

    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("hub order: duplicate", 0, Duration::from_secs(20));
    let text = log_text();
    assert_eq!(text.matches("hub order: placed").count(), 1, "{text}");
    let accepted = || {
        events(&hub)
            .into_iter()
            .filter(|e| e["kind"] == "order.accepted")
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || accepted().len() >= 2),
        "{:?}",
        accepted()
    );
    let accepted = accepted();
    assert_eq!(accepted.len(), 2, "{accepted:?}");
    assert_eq!(accepted[0]["detail"]["duplicate"], false, "{accepted:?}");
    assert_eq!(accepted[1]["detail"]["duplicate"], true, "{accepted:?}");
    // One order, its one test, in the analyzer's answer.
    let answer = query(astm_port, "SPEC-H5");
    assert_eq!(kinds(&answer), ["H", "P", "O", "L"], "{answer}");
    assert_eq!(answer[2][4][3], "GLU", "{answer}");
    assert_eq!(gw.terminate(), Some(0));
}
