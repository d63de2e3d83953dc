//! The hub uplink against a real mosquitto broker, with paho-mqtt as the
//! hub: the retained status and its Last Will, health within its interval,
//! and durable events that survive a killed broker and a killed gateway.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::decode;
use ecko_gateway::journal::JournalReader;
use ecko_tests::mqtt::{Broker, HubListener};
use ecko_tests::{dead_letter_config, eventually, hl7_sample, Gateway};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const PREFIX: &str = "ecko/north/lab-1/";

/// [`dead_letter_config`] in `dir` plus the uplink to `broker`.
fn config(dir: &Path, broker: &Broker, format: &str) -> String {
    format!(
        r#"{base}
[hub]
url = "mqtt://127.0.0.1:{port}"
site = "north"
device = "lab-1"
format = "{format}"
health_interval = "2s"
reconnect_min = "1s"
reconnect_max = "2s"
keepalive = "5s"
"#,
        base = dead_letter_config(dir),
        port = broker.port,
    )
}

fn gateway_dir(dir: &Path, broker: &Broker, format: &str) -> std::path::PathBuf {
    let d = dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("gateway.toml"), config(&d, broker, format)).unwrap();
    d
}

fn start(d: &Path) -> Gateway {
    Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[])
}

/// Drops `n` distinct HL7 results into the inbox, numbered from `first`.
fn drop_results(d: &Path, first: usize, n: usize) {
    let sample = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    for i in first..first + n {
        let text = sample.replacen("XN20260314093015001", &format!("HUB{i:06}"), 1);
        let tmp = d.join(format!("r{i}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, d.join("inbox").join(format!("r{i}.hl7"))).unwrap();
    }
}

fn payloads(l: &HubListener, topic: &str, format: PayloadFormat) -> Vec<(bool, Value)> {
    l.on(&format!("{PREFIX}{topic}"))
        .into_iter()
        .map(|r| (r.retain, decode(format, &r.payload).unwrap()))
        .collect()
}

/// The message ids of the dead-letter events received, and how many
/// events arrived in all (duplicates included).
fn dead_letters(l: &HubListener) -> (BTreeSet<i64>, usize) {
    let events = payloads(l, "events", PayloadFormat::Cbor);
    let ids = events
        .iter()
        .filter(|(_, e)| e["kind"] == "message.dead")
        .map(|(_, e)| e["detail"]["message_id"].as_i64().unwrap())
        .collect();
    (ids, events.len())
}

fn dead_in_journal(d: &Path) -> u64 {
    JournalReader::open(&d.join("journal.db"))
        .and_then(|r| r.counts())
        .map(|c| c.iter().map(|c| c.dead).sum())
        .unwrap_or(0)
}

#[test]
fn the_status_is_retained_online_and_turns_offline_through_the_last_will_when_the_gateway_is_killed(
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let d = gateway_dir(dir.path(), &broker, "json");
    let gw = start(&d);
    let status = format!("{PREFIX}status");
    let hub = HubListener::start(&broker, "hub-a", &[&status], &dir.path().join("a.jsonl"));
    assert!(
        eventually(Duration::from_secs(10), || payloads(
            &hub,
            "status",
            PayloadFormat::Json
        )
        .iter()
        .any(|(retain, s)| *retain && s["state"] == "online")),
        "no retained online status: {:?}",
        hub.received()
    );
    let online = payloads(&hub, "status", PayloadFormat::Json)
        .pop()
        .unwrap()
        .1;
    assert_eq!(online["v"], 1);
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"));
    assert!(online["uptime_s"].is_u64());

    gw.kill();
    assert!(
        eventually(Duration::from_secs(10), || payloads(
            &hub,
            "status",
            PayloadFormat::Json
        )
        .last()
        .is_some_and(
            |(_, s)| s["state"] == "offline" && s["reason"] == "connection lost"
        )),
        "no Last Will: {:?}",
        payloads(&hub, "status", PayloadFormat::Json)
    );
    // A hub that subscribes only now is told at once: the will is retained.
    let late = HubListener::start(&broker, "hub-b", &[&status], &dir.path().join("b.jsonl"));
    assert!(eventually(Duration::from_secs(5), || {
        payloads(&late, "status", PayloadFormat::Json)
            .first()
            .is_some_and(|(retain, s)| *retain && s["state"] == "offline")
    }));

    // A graceful stop says so itself.
    let gw = start(&d);
    assert!(eventually(Duration::from_secs(10), || payloads(
        &late,
        "status",
        PayloadFormat::Json
    )
    .last()
    .is_some_and(|(_, s)| s["state"] == "online")));
    assert_eq!(gw.terminate(), Some(0));
    // Published before the exit; the subscriber, another process on a
    // loaded machine, may take a while to write it down.
    assert!(eventually(Duration::from_secs(20), || payloads(
        &late,
        "status",
        PayloadFormat::Json
    )
    .last()
    .is_some_and(
        |(_, s)| s["state"] == "offline" && s["reason"] == "stopped"
    )));
}

#[test]
fn health_arrives_within_its_interval_and_is_smaller_in_cbor_than_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"));
    let health = format!("{PREFIX}health");
    let mut sizes = Vec::new();
    for (format, name) in [(PayloadFormat::Cbor, "cbor"), (PayloadFormat::Json, "json")] {
        let d = gateway_dir(&dir.path().join(name), &broker, name);
        let out = dir.path().join(format!("{name}.jsonl"));
        let hub = HubListener::start(&broker, &format!("hub-{name}"), &[&health], &out);
        let gw = start(&d);
        let began = Instant::now();
        // The first report comes on connecting, the next within the 2 s
        // interval.
        assert!(
            eventually(Duration::from_secs(8), || hub.on(&health).len() >= 2),
            "{name}: {:?}",
            hub.received()
        );
        assert!(began.elapsed() < Duration::from_secs(8));
        let r = hub.on(&health).pop().unwrap();
        assert!(!r.retain);
        let report = decode(format, &r.payload).unwrap();
        assert_eq!(report["v"], 1);
        let names: Vec<&str> = report["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["inbox", "archive"]);
        assert!(report["disk"]["free_bytes"].as_u64().unwrap() > 0);
        sizes.push(r.payload.len());
        gw.terminate();
    }
    println!(
        "health message: {} bytes CBOR, {} bytes JSON (2 endpoints)",
        sizes[0], sizes[1]
    );
    assert!(sizes[0] < sizes[1], "{sizes:?}");
}

#[test]
fn every_event_arrives_at_least_once_though_the_broker_and_the_gateway_are_killed_midway() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"));
    let events = format!("{PREFIX}events");
    let hub = HubListener::start(
        &broker,
        "hub-events",
        &[&events],
        &dir.path().join("e.jsonl"),
    );
    // The broker keeps queueing for the hub across its own restart only
    // once it has saved the hub's session.
    broker.wait_until_saved();
    let d = gateway_dir(dir.path(), &broker, "cbor");
    let mut gw = start(&d);

    drop_results(&d, 0, 150);
    assert!(
        eventually(Duration::from_secs(20), || dead_letters(&hub).0.len() >= 20),
        "no events: {:?}",
        dead_letters(&hub)
    );
    broker.kill();
    drop_results(&d, 150, 150);
    std::thread::sleep(Duration::from_millis(1500));
    broker.restart();

    assert!(eventually(Duration::from_secs(30), || dead_letters(&hub)
        .0
        .len()
        >= 200));
    gw.kill();
    drop_results(&d, 300, 100);
    gw = start(&d);

    let all = eventually(Duration::from_secs(60), || {
        dead_letters(&hub).0.len() >= 400
    });
    let (ids, received) = dead_letters(&hub);
    assert!(all, "{} of 400 dead letters reported", ids.len());
    assert_eq!(dead_in_journal(&d), 400);
    println!(
        "events: 400 dead letters reported, {received} events received ({} more than once or other kinds)",
        received - ids.len()
    );
    drop(gw);
}

#[test]
fn events_journalled_while_the_broker_is_away_flow_out_at_a_measured_rate() {
    const N: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"));
    let events = format!("{PREFIX}events");
    let hub = HubListener::start(&broker, "hub-rate", &[&events], &dir.path().join("r.jsonl"));
    broker.wait_until_saved();
    drop(hub);
    broker.kill();
    let d = gateway_dir(dir.path(), &broker, "cbor");
    let gw = start(&d);
    drop_results(&d, 0, N as usize);
    assert!(
        eventually(Duration::from_secs(120), || dead_in_journal(&d) == N),
        "{} of {N} dead",
        dead_in_journal(&d)
    );
    broker.restart();
    let hub = HubListener::start(&broker, "hub-rate", &[&events], &dir.path().join("r.jsonl"));
    assert!(
        eventually(Duration::from_secs(120), || dead_letters(&hub).0.len()
            as u64
            >= N),
        "{} of {N}",
        dead_letters(&hub).0.len()
    );
    let times: Vec<f64> = hub.on(&events).iter().map(|r| r.at).collect();
    let span = times.last().unwrap() - times.first().unwrap();
    println!(
        "events through the outbox: {} in {span:.2} s, {:.0} events/s",
        times.len(),
        times.len() as f64 / span.max(0.001)
    );
    drop(gw);
}
