//! `health` and `stats`: made fresh when due and published with QoS 0, so
//! they are coalesced by construction: while the broker is away nothing is
//! made and nothing queues, and the first report after a connection is the
//! state at that moment.
//!
//! Health is due every `health_interval` and as soon as something in it
//! changes that the hub acts on (an endpoint's status, a dead letter more
//! or fewer, a queue starting or stopping to wait, the disk running low,
//! the clock losing or regaining its synchronisation),
//! at most once per [`LOOK_EVERY`]. Stats are due every `stats_interval`
//! and cover that interval.

use super::payload::{encode, VERSION};
use crate::config::{Config, HubConfig, PayloadFormat};
use crate::control::Gateway;
use crate::health::Health;
use crate::journal::Backlog;
use ecko_hal::Storage;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How often the uplink looks whether health changed.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Health,
    Stats,
}

/// The disk holding the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub free_bytes: u64,
    pub reserve_bytes: u64,
    pub journal_bytes: u64,
}

/// The device's clock as the kernel and the hardware tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockFacts {
    /// Synchronised to a reference per `adjtimex`; `None`: not known.
    pub synchronised: Option<bool>,
    /// A real-time clock keeps time across a power cut.
    pub rtc_present: bool,
}

impl ClockFacts {
    pub fn of(clock: &dyn ecko_hal::Clock) -> ClockFacts {
        ClockFacts {
            synchronised: clock.synchronised().ok(),
            rtc_present: clock.rtc_present(),
        }
    }
}

/// The health report: `at` and `started_at` in Unix ms.
#[allow(clippy::too_many_arguments)]
pub fn health_value(
    config: &Config,
    health: &Health,
    queues: &[Backlog],
    disk: Option<Disk>,
    clock: ClockFacts,
    events_pending: u64,
    at: i64,
    started_at: i64,
) -> Value {
    let endpoints: Vec<Value> = config
        .endpoints
        .iter()
        .map(|e| {
            let (status, since, detail) = if !e.enabled {
                ("disabled", None, None)
            } else {
                match health.get(&e.name) {
                    Some(s) => {
                        let (st, since) = s.status(at);
                        (st.as_str(), Some(since), s.detail)
                    }
                    None => ("unknown", None, None),
                }
            };
            json!({"name": e.name, "type": e.kind.type_name(), "status": status,
                   "since": since, "detail": detail})
        })
        .collect();
    let queues: Vec<Value> = queues
        .iter()
        .map(|q| {
            json!({"destination": q.destination, "pending": q.pending, "dead": q.dead,
                   "oldest_age_s": q.oldest_pending_at.map(|t| (at - t).max(0) / 1000)})
        })
        .collect();
    let disk = disk.map(|d| {
        json!({"free_bytes": d.free_bytes, "reserve_bytes": d.reserve_bytes,
               "journal_bytes": d.journal_bytes, "low": d.free_bytes < d.reserve_bytes})
    });
    json!({
        "v": VERSION,
        "at": at,
        "uptime_s": (at - started_at).max(0) / 1000,
        "endpoints": endpoints,
        "queues": queues,
        "disk": disk,
        "clock": {"synchronised": clock.synchronised, "rtc_present": clock.rtc_present},
        "events_pending": events_pending,
    })
}

/// What in a health report makes it due at once when it changes.
fn signature(report: &Value) -> String {
    let pick = |key: &str, fields: &[&str]| -> Vec<Value> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                Value::Array(
                    fields
                        .iter()
                        .map(|f| match (&item[*f], *f) {
                            (Value::Number(n), "pending") => Value::Bool(n.as_u64() != Some(0)),
                            (v, _) => v.clone(),
                        })
                        .collect(),
                )
            })
            .collect()
    };
    json!([
        pick("endpoints", &["name", "status"]),
        pick("queues", &["destination", "pending", "dead"]),
        report["disk"]["low"],
        report["clock"]["synchronised"],
        pick_slots(report),
    ])
    .to_string()
}

/// Each slot's state and version: an install, a slot marked good or a
/// fallback is news at once.
fn pick_slots(report: &Value) -> Value {
    report["update"]["slots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| json!([s["state"], s["version"], s["active"]]))
        .collect()
}

/// When health and stats were last published.
pub struct Telemetry {
    format: PayloadFormat,
    health_every: Duration,
    stats_every: Duration,
    last_health: Option<(Instant, String)>,
    /// The MQTT of the connection up, reported in health.
    mqtt: Option<super::mqtt::Protocol>,
    last_stats: Option<(Instant, i64)>,
    storage: ecko_hal::storage::LinuxStorage,
}

impl Telemetry {
    pub fn new(config: &HubConfig) -> Telemetry {
        Telemetry {
            format: config.format,
            health_every: config.health_interval.0,
            stats_every: config.stats_interval.0,
            last_health: None,
            mqtt: None,
            last_stats: None,
            storage: ecko_hal::storage::LinuxStorage,
        }
    }

    /// A new connection, with `mqtt`: health is due at once.
    pub fn connected(&mut self, mqtt: super::mqtt::Protocol) {
        self.last_health = None;
        self.mqtt = Some(mqtt);
    }

    /// The reports due now, encoded.
    pub async fn due(
        &mut self,
        gateway: &dyn Gateway,
        now: i64,
        started_at: i64,
    ) -> Vec<(Which, Vec<u8>)> {
        let mut out = Vec::new();
        let journal = gateway.journal();
        let config = gateway.config();
        let mut report = health_report(
            journal,
            &config,
            &gateway.health(),
            &self.storage,
            gateway.service().clock.as_ref(),
            now,
            started_at,
        )
        .await;
        report["mqtt"] = self.mqtt.map(|m| m.as_str()).into();
        let sig = signature(&report);
        let health_due = match &self.last_health {
            None => true,
            Some((at, last)) => *last != sig || at.elapsed() >= self.health_every,
        };
        if health_due {
            out.push((Which::Health, encode(self.format, &report)));
            self.last_health = Some((Instant::now(), sig));
        }
        let since = match self.last_stats {
            None => {
                self.last_stats = Some((Instant::now(), now));
                None
            }
            Some((at, since)) if at.elapsed() >= self.stats_every => Some(since),
            Some(_) => None,
        };
        if let Some(since) = since {
            let names = config.endpoints.iter().map(|e| e.name.clone()).collect();
            if let Ok(stats) = journal.endpoint_stats(names, since, 1).await {
                let value = stats_value(&stats, since, now);
                out.push((Which::Stats, encode(self.format, &value)));
                self.last_stats = Some((Instant::now(), now));
            }
        }
        out
    }
}

/// The health report of the gateway at `now`, gathered from its parts.
pub async fn health_report(
    journal: &crate::journal::Journal,
    config: &Config,
    health: &Health,
    storage: &dyn Storage,
    clock: &dyn ecko_hal::Clock,
    now: i64,
    started_at: i64,
) -> Value {
    let queues = journal.backlogs().await.unwrap_or_default();
    let pending = journal.hub_events_pending().await.unwrap_or(0);
    let dir = journal
        .path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into());
    let disk = storage.available_bytes(&dir).ok().map(|free| Disk {
        free_bytes: free,
        reserve_bytes: journal.limits().1,
        journal_bytes: journal.file_bytes(),
    });
    let mut report = health_value(
        config,
        health,
        &queues,
        disk,
        ClockFacts::of(clock),
        pending,
        now,
        started_at,
    );
    report["update"] = update_value(crate::update::status(config.update.as_ref()).await);
    // Why every message is refused, when it is: a full disk, or a journal
    // a newer gateway wrote (open read-only after a fallback).
    let reason = journal.unwritable_reason();
    report["journal"] = json!({"writable": reason.is_none(), "reason": reason});
    report
}

/// Both slots with their versions and states, the last result and a failed
/// update; `null` when the gateway does not manage updates.
pub fn update_value(status: Option<Result<crate::update::UpdateStatus, String>>) -> Value {
    match status {
        None => Value::Null,
        Some(Ok(s)) => json!({
            "slots": s.slots,
            "last_result": s.last_result,
            "failed": s.failed,
        }),
        Some(Err(e)) => json!({"error": e}),
    }
}

/// Per endpoint volumes and latencies from `since` to `until` (Unix ms).
pub fn stats_value(stats: &[crate::journal::EndpointStats], since: i64, until: i64) -> Value {
    let endpoints: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({"name": s.name, "received": s.received, "rejected": s.rejected,
                   "attempts": s.attempts, "delivered": s.delivered, "failed": s.failed,
                   "success_rate": s.success_rate, "avg_ms": s.avg_ms, "p95_ms": s.p95_ms})
        })
        .collect();
    json!({"v": VERSION, "since": since, "until": until, "endpoints": endpoints})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Config {
        let text = include_str!("../../../config/gateway.toml");
        Config::parse(text, "gateway.toml", |_| None).unwrap()
    }

    fn report(health: &Health, queues: &[Backlog]) -> Value {
        report_with_clock(health, queues, Some(true))
    }

    fn report_with_clock(health: &Health, queues: &[Backlog], synchronised: Option<bool>) -> Value {
        let disk = Disk {
            free_bytes: 20 << 30,
            reserve_bytes: 256 << 20,
            journal_bytes: 300 << 20,
        };
        health_value(
            &shipped(),
            health,
            queues,
            Some(disk),
            ClockFacts {
                synchronised,
                rtc_present: true,
            },
            0,
            1_800_000_000_000,
            1_799_000_000_000,
        )
    }

    #[tokio::test]
    async fn health_names_why_a_journal_of_a_newer_gateway_refuses_every_message() {
        use crate::journal::{Journal, JournalOptions, SCHEMA_VERSION};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        Journal::open(JournalOptions::new(&path))
            .unwrap()
            .close()
            .await;
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let storage = ecko_hal::storage::SimStorage::new(u64::MAX);
        let clock = ecko_hal::clock::SimClock::new(true, true);
        let report = |journal: Journal| {
            let (storage, clock) = (storage.clone(), clock.clone());
            async move {
                let r = health_report(
                    &journal,
                    &shipped(),
                    &Health::default(),
                    &storage,
                    &clock,
                    0,
                    0,
                )
                .await;
                journal.close().await;
                r
            }
        };
        let r = report(Journal::open(JournalOptions::new(&path)).unwrap()).await;
        assert_eq!(r["journal"]["writable"], false, "{r}");
        let reason = r["journal"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("newer gateway"), "{r}");

        let fresh = dir.path().join("fresh.db");
        let r = report(Journal::open(JournalOptions::new(&fresh)).unwrap()).await;
        assert_eq!(
            r["journal"],
            json!({"writable": true, "reason": null}),
            "{r}"
        );
    }

    #[test]
    fn health_is_due_again_when_an_endpoint_goes_down_but_not_for_a_deeper_queue() {
        let h = Health::new();
        h.delivered("hub", 1_800_000_000_000);
        let q = |pending| {
            vec![Backlog {
                destination: "hub".into(),
                pending,
                dead: 0,
                oldest_pending_at: Some(1_799_999_000_000),
            }]
        };
        let base = signature(&report(&h, &q(3)));
        assert_eq!(
            base,
            signature(&report(&h, &q(40))),
            "depth alone is not a change"
        );
        assert_ne!(base, signature(&report(&h, &q(0))), "a queue emptied is");
        h.down("hub", 1_800_000_000_000, "refused");
        assert_ne!(base, signature(&report(&h, &q(3))));
    }

    #[test]
    fn health_carries_the_clock_and_is_due_again_when_the_clock_loses_its_synchronisation() {
        let h = Health::new();
        let synced = report_with_clock(&h, &[], Some(true));
        assert_eq!(synced["clock"]["synchronised"], true);
        assert_eq!(synced["clock"]["rtc_present"], true);
        let lost = report_with_clock(&h, &[], Some(false));
        assert_ne!(signature(&synced), signature(&lost));
        let unknown = report_with_clock(&h, &[], None);
        assert!(unknown["clock"]["synchronised"].is_null());
    }

    #[test]
    fn a_health_report_of_the_shipped_configuration_is_smaller_in_cbor_than_in_json() {
        let h = Health::new();
        for e in shipped().endpoints {
            h.up(&e.name, 1_799_000_000_000, "listening on 127.0.0.1:2575");
        }
        let q = vec![Backlog {
            destination: "hub".into(),
            pending: 12,
            dead: 1,
            oldest_pending_at: Some(1_799_999_000_000),
        }];
        let r = report(&h, &q);
        let cbor = encode(PayloadFormat::Cbor, &r).len();
        let json = encode(PayloadFormat::Json, &r).len();
        println!("health of the shipped configuration: {cbor} bytes CBOR, {json} bytes JSON");
        assert!(cbor < json, "{cbor} vs {json}");
    }
}
