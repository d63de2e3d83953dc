//! Which MQTT the hub uplink speaks (`[hub] protocol`): MQTT 5 to
//! mosquitto under `auto`, as mosquitto's own log shows; 3.1.1 under
//! `auto` to aedes, a broker that speaks only 3.1.1, with the retained
//! status, the events and the Last Will reaching a paho-mqtt hub through
//! it; `protocol = "5"` refused by aedes with a log line that says why;
//! and the persistent session on both versions: a command given while the
//! gateway is killed is delivered once it is back.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::{decode, encode};
use ecko_tests::mqtt::{hub_publish, Broker, Broker311, HubListener};
use ecko_tests::{dead_letter_config, eventually, hl7_sample, Gateway};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PREFIX: &str = "ecko/north/lab-1/";

/// [`dead_letter_config`] in `dir/gw` plus the uplink (JSON payloads) to
/// the broker at `port`, with `hub_extra` lines in `[hub]`.
fn gateway_dir(dir: &Path, port: u16, hub_extra: &str) -> PathBuf {
    let d = dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let text = format!(
        r#"{base}
[hub]
url = "mqtt://127.0.0.1:{port}"
site = "north"
device = "lab-1"
format = "json"
health_interval = "2s"
reconnect_min = "1s"
reconnect_max = "2s"
keepalive = "5s"
{hub_extra}
"#,
        base = dead_letter_config(&d),
    );
    std::fs::write(d.join("gateway.toml"), text).unwrap();
    d
}

fn start(d: &Path) -> Gateway {
    Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[])
}

fn log(d: &Path) -> String {
    std::fs::read_to_string(d.join("gateway.log")).unwrap_or_default()
}

fn payloads(l: &HubListener, topic: &str) -> Vec<(bool, Value)> {
    l.on(&format!("{PREFIX}{topic}"))
        .into_iter()
        .map(|r| (r.retain, decode(PayloadFormat::Json, &r.payload).unwrap()))
        .collect()
}

/// Drops `n` distinct HL7 results into the inbox; each becomes a dead
/// letter and so an event.
fn drop_results(d: &Path, n: usize) {
    let sample = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    for i in 0..n {
        let text = sample.replacen("XN20260314093015001", &format!("PROTO{i:04}"), 1);
        let tmp = d.join(format!("r{i}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, d.join("inbox").join(format!("r{i}.hl7"))).unwrap();
    }
}

fn dead_letter_events(l: &HubListener) -> usize {
    payloads(l, "events")
        .iter()
        .filter(|(_, e)| e["kind"] == "message.dead")
        .count()
}

#[test]
fn under_auto_mosquitto_is_spoken_to_in_mqtt5_and_the_status_and_health_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let (status, health) = (format!("{PREFIX}status"), format!("{PREFIX}health"));
    let hub = HubListener::start(
        &broker,
        "hub-v5",
        &[&status, &health],
        &dir.path().join("hub.jsonl"),
    );
    let d = gateway_dir(dir.path(), broker.port, "");
    let gw = start(&d);
    assert!(
        eventually(Duration::from_secs(15), || {
            payloads(&hub, "status")
                .iter()
                .any(|(_, s)| s["state"] == "online")
                && !payloads(&hub, "health").is_empty()
        }),
        "{:?}",
        hub.received()
    );
    // mosquitto logs each client's protocol: p5 is MQTT 5 (p2 is 3.1.1),
    // c0 a kept session (clean start false).
    assert!(
        broker.log().contains("as ecko-north-lab-1 (p5, c0, k5)"),
        "{}",
        broker.log()
    );
    let online = payloads(&hub, "status").pop().unwrap().1;
    assert_eq!(online["mqtt"], "5", "{online}");
    assert_eq!(payloads(&hub, "health").pop().unwrap().1["mqtt"], "5");
    assert!(log(&d).contains(r#"hub uplink connected session_present=false mqtt="5""#));
    assert!(!log(&d).contains("does not take MQTT 5"));
    drop(gw);
}

#[test]
fn under_auto_a_broker_that_speaks_only_3_1_1_is_spoken_to_in_3_1_1_and_the_hub_sees_status_events_and_will(
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker311::start(&dir.path().join("broker"));
    let (status, events) = (format!("{PREFIX}status"), format!("{PREFIX}events"));
    let hub = HubListener::start_on(
        broker.port,
        "hub-311",
        &[&status, &events],
        &dir.path().join("hub.jsonl"),
    );
    let d = gateway_dir(dir.path(), broker.port, "");
    let gw = start(&d);
    drop_results(&d, 5);
    assert!(
        eventually(Duration::from_secs(20), || dead_letter_events(&hub) >= 5),
        "{} dead letters: {}",
        dead_letter_events(&hub),
        log(&d)
    );
    let online = payloads(&hub, "status")
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s["state"] == "online")
        .expect("online status");
    assert_eq!(online["mqtt"], "3.1.1", "{online}");
    assert!(
        broker.log().contains("unacceptable protocol version"),
        "{}",
        broker.log()
    );
    // Said once, and every connection after it is 3.1.1.
    let text = log(&d);
    assert_eq!(
        text.matches("does not take MQTT 5; using MQTT 3.1.1")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains(r#"mqtt="3.1.1""#), "{text}");

    // A hub subscribing only now is told at once: the status is retained.
    let late = HubListener::start_on(
        broker.port,
        "hub-311-late",
        &[&status],
        &dir.path().join("late.jsonl"),
    );
    assert!(
        eventually(Duration::from_secs(10), || payloads(&late, "status")
            .first()
            .is_some_and(|(retain, s)| *retain && s["state"] == "online")),
        "{:?}",
        payloads(&late, "status")
    );
    gw.kill();
    assert!(
        eventually(Duration::from_secs(15), || payloads(&late, "status")
            .last()
            .is_some_and(
                |(_, s)| s["state"] == "offline" && s["reason"] == "connection lost"
            )),
        "no Last Will: {:?}",
        payloads(&late, "status")
    );
}

#[test]
fn with_protocol_5_a_broker_that_speaks_only_3_1_1_is_refused_and_the_log_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker311::start(&dir.path().join("broker"));
    let d = gateway_dir(dir.path(), broker.port, "protocol = \"5\"");
    let mut gw = start(&d);
    gw.wait_for_log(
        "the broker answered MQTT 5 the way a 3.1.1 broker does; `protocol = 5` needs an MQTT 5 broker",
        0,
        Duration::from_secs(15),
    );
    // It keeps trying (with 5) and never connects.
    assert!(eventually(Duration::from_secs(10), || broker
        .log()
        .matches("unacceptable protocol version")
        .count()
        >= 2));
    let text = log(&d);
    assert!(!text.contains("hub uplink connected"), "{text}");
    assert!(
        !broker.log().contains("client connected"),
        "{}",
        broker.log()
    );
    drop(gw);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The broker keeps the gateway's session while it is away: on MQTT 5
/// because the gateway asked for `session_expiry`, on 3.1.1 because the
/// session is not clean.
#[test]
fn a_command_given_while_the_gateway_is_killed_is_delivered_after_it_reconnects_on_5_and_on_3_1_1()
{
    for protocol in ["5", "3.1.1"] {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(&dir.path().join("broker"));
        let (status, replies) = (format!("{PREFIX}status"), format!("{PREFIX}reply/+"));
        let hub = HubListener::start(
            &broker,
            "hub-session",
            &[&status, &replies],
            &dir.path().join("hub.jsonl"),
        );
        let d = gateway_dir(
            dir.path(),
            broker.port,
            &format!("protocol = \"{protocol}\""),
        );
        let gw = start(&d);
        // The subscriptions go out before the online status.
        assert!(
            eventually(Duration::from_secs(15), || payloads(&hub, "status")
                .iter()
                .any(|(_, s)| s["state"] == "online" && s["mqtt"] == protocol)),
            "{protocol}: {:?}",
            payloads(&hub, "status")
        );
        gw.kill();
        assert!(eventually(Duration::from_secs(15), || payloads(
            &hub, "status"
        )
        .last()
        .is_some_and(|(_, s)| s["reason"] == "connection lost")));

        let id = format!("away-{}", protocol.replace('.', ""));
        let command = json!({"v": 1, "id": id, "issued_at": now_ms(), "cmd": "endpoint.pause",
                             "body": {"endpoint": "archive"}});
        hub_publish(
            &broker,
            &format!("{PREFIX}cmd/{id}"),
            &encode(PayloadFormat::Json, &command),
        );
        let gw = start(&d);
        let reply_topic = format!("{PREFIX}reply/{id}");
        assert!(
            eventually(Duration::from_secs(15), || !hub.on(&reply_topic).is_empty()),
            "{protocol}: the command given while away never came: {}",
            log(&d)
        );
        let reply = decode(PayloadFormat::Json, &hub.on(&reply_topic)[0].payload).unwrap();
        assert_eq!(reply["ok"], true, "{protocol}: {reply}");
        assert!(
            log(&d).contains("session_present=true"),
            "{protocol}: {}",
            log(&d)
        );
        drop(gw);
    }
}
