//! Sizing figures for the hub team: runs a gateway against mosquitto with
//! fast intervals for a measured period, measures what it publishes per
//! topic, and extrapolates messages and bytes per gateway per hour at the
//! typical load (docs/hub-protocol.md, "Sizes", has the method). Run with
//! `--nocapture` to read the table.

use ecko_tests::mqtt::{Broker, HubListener};
use ecko_tests::{dead_letter_config, eventually, hl7_sample, Gateway};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const PREFIX: &str = "ecko/north/lab-1/";
/// How long the gateway is watched.
const MEASURED: Duration = Duration::from_secs(12);

/// The typical load the figures are extrapolated to.
const HEALTH_EVERY_S: f64 = 30.0;
const STATS_EVERY_S: f64 = 300.0;
const EVENTS_PER_HOUR: f64 = 6.0;
const KEEPALIVE_S: f64 = 30.0;

/// Bytes of an MQTT 3.1.1 PUBLISH carrying `payload` on `topic`.
fn publish_bytes(topic: &str, payload: usize, qos1: bool) -> usize {
    let remaining = 2 + topic.len() + if qos1 { 2 } else { 0 } + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

#[derive(Default, Debug)]
struct Topic {
    count: usize,
    payload_bytes: usize,
    wire_bytes: usize,
}

impl Topic {
    fn avg_payload(&self) -> f64 {
        self.payload_bytes as f64 / self.count.max(1) as f64
    }
    fn avg_wire(&self) -> f64 {
        self.wire_bytes as f64 / self.count.max(1) as f64
    }
}

/// What the hub received from one gateway in `format` over [`MEASURED`].
fn measure(dir: &Path, format: &str) -> BTreeMap<String, Topic> {
    let broker = Broker::start(&dir.join("broker"));
    let hub = HubListener::start(
        &broker,
        "hub-sizing",
        &[&format!("{PREFIX}#")],
        &dir.join("hub.jsonl"),
    );
    let d = dir.join("gw");
    std::fs::create_dir_all(&d).unwrap();
    let text = format!(
        "{base}\n[hub]\nurl = \"mqtt://127.0.0.1:{port}\"\nsite = \"north\"\ndevice = \"lab-1\"\n\
         format = \"{format}\"\nhealth_interval = \"1s\"\nstats_interval = \"2s\"\n",
        base = dead_letter_config(&d),
        port = broker.port,
    );
    std::fs::write(d.join("gateway.toml"), text).unwrap();
    let gw = Gateway::start(&d.join("gateway.toml"), &d.join("gateway.log"), &[]);
    assert!(
        eventually(Duration::from_secs(15), || !hub
            .on(&format!("{PREFIX}status"))
            .is_empty()),
        "the gateway never came online"
    );
    // Three results that end as dead letters: three durable events (and
    // the archive going down), so every kind of publication is measured.
    let sample = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    for i in 0..3 {
        let text = sample.replacen("XN20260314093015001", &format!("SIZE{i:04}"), 1);
        std::fs::write(d.join("inbox").join(format!("r{i}.tmp")), &text).unwrap();
        std::fs::rename(
            d.join("inbox").join(format!("r{i}.tmp")),
            d.join("inbox").join(format!("r{i}.hl7")),
        )
        .unwrap();
    }
    std::thread::sleep(MEASURED);
    let mut topics: BTreeMap<String, Topic> = BTreeMap::new();
    for r in hub.received() {
        let name = r.topic.trim_start_matches(PREFIX).to_string();
        let qos1 = !matches!(name.as_str(), "health" | "stats");
        let t = topics.entry(name).or_default();
        t.count += 1;
        t.payload_bytes += r.payload.len();
        t.wire_bytes += publish_bytes(&r.topic, r.payload.len(), qos1);
    }
    assert_eq!(gw.terminate(), Some(0));
    topics
}

#[test]
fn a_gateway_at_a_typical_load_sends_a_measured_number_of_messages_and_bytes_per_hour() {
    let mut per_hour = Vec::new();
    for format in ["cbor", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let topics = measure(dir.path(), format);
        let health = topics.get("health").expect("health was published");
        let stats = topics.get("stats").expect("stats were published");
        let events = topics.get("events").expect("events were published");
        // At one health a second and stats every two, twelve seconds give
        // about a dozen and a half dozen: the intervals are kept.
        assert!(health.count >= 6, "{topics:?}");
        assert!(stats.count >= 3, "{topics:?}");
        assert!(events.count >= 3, "{topics:?}");
        println!("{format}: measured over {} s", MEASURED.as_secs());
        for (name, t) in &topics {
            println!(
                "  {name:<8} {:>3} messages, {:>6.0} bytes payload, {:>6.0} bytes on the wire each",
                t.count,
                t.avg_payload(),
                t.avg_wire()
            );
        }
        let hour = 3600.0;
        let rows = [
            ("health", hour / HEALTH_EVERY_S, health.avg_wire()),
            ("stats", hour / STATS_EVERY_S, stats.avg_wire()),
            ("events", EVENTS_PER_HOUR, events.avg_wire()),
            // The broker's PUBACK of each event, 4 bytes.
            ("puback", EVENTS_PER_HOUR, 4.0),
            // PINGREQ and PINGRESP when nothing else is sent in a
            // keepalive; counted as if always, an upper bound.
            ("ping", 2.0 * hour / KEEPALIVE_S, 2.0),
        ];
        let messages: f64 = rows.iter().map(|r| r.1).sum();
        let bytes: f64 = rows.iter().map(|r| r.1 * r.2).sum();
        println!(
            "{format}: per gateway per hour (health {HEALTH_EVERY_S} s, stats {STATS_EVERY_S} s, {EVENTS_PER_HOUR} events): \
             {messages:.0} packets, {:.1} KiB; 10,000 gateways: {:.0} packets/s, {:.2} MiB/h, {:.1} kbit/s",
            bytes / 1024.0,
            messages * 10_000.0 / hour,
            bytes * 10_000.0 / (1024.0 * 1024.0),
            bytes * 10_000.0 * 8.0 / hour / 1000.0
        );
        per_hour.push(bytes);
    }
    assert!(
        per_hour[0] < per_hour[1],
        "CBOR is not smaller than JSON: {per_hour:?}"
    );
}
