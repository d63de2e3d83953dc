//! The gateway's metrics in the Prometheus text format, for the hospital's
//! monitoring (`/metrics`).
//!
//! Counters and histograms are kept by the tasks that see the events, each
//! through handles resolved once when the task starts ([`SourceCounters`],
//! [`DeliveryCounters`]): per message that is an atomic add, with no label
//! lookup, lock or allocation on the ingest path. What is a state rather
//! than an event (queue depth, the oldest queued row, file sizes, free disk,
//! uptime) is read when scraped and set just before encoding
//! ([`Metrics::encode`]). The names are listed in README.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// What became of one delivery attempt of one message.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The destination took it.
    Delivered,
    /// It failed and will be tried again.
    Retry,
    /// Refused for good, out of retries, or not transformable.
    Dead,
    /// Not attempted (the batch ended early); queued again as it was.
    Released,
    /// Sandbox mode: captured, or sent to the sandbox URL, not live.
    Captured,
}

impl DeliveryOutcome {
    /// Its `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Dead => "dead",
            DeliveryOutcome::Released => "released",
            DeliveryOutcome::Captured => "captured",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    endpoint: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    target: String,
    build_date: String,
}

type SecondsGauge = Gauge<f64, AtomicU64>;
type HistogramFamily = Family<EndpointLabel, Histogram, fn() -> Histogram>;

fn delivery_seconds() -> Histogram {
    // 5 ms … ~40 s: a file write to a FHIR batch over a slow uplink.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of one gateway; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    received: Family<EndpointLabel, Counter>,
    acknowledged: Family<EndpointLabel, Counter>,
    refused: Family<EndpointLabel, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    connections_refused: Family<RefusedLabels, Counter>,
    delivery_seconds: HistogramFamily,
    queue_depth: Family<EndpointLabel, Gauge>,
    queue_oldest_seconds: Family<EndpointLabel, SecondsGauge>,
    journal_bytes: Gauge,
    wal_bytes: Gauge,
    disk_free_bytes: Gauge,
    commit_batch: Histogram,
    uptime_seconds: SecondsGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a source counts, resolved for its endpoint.
#[derive(Debug, Clone, Default)]
pub struct SourceCounters {
    /// Every message handed to the journal.
    pub received: Counter,
    /// Stored (or a duplicate of a stored one) and so acknowledged.
    pub acknowledged: Counter,
    /// Answered negatively: the journal refused it, or it could not be
    /// read or routed; for ASTM also a session refused (`NAK` to `ENQ`)
    /// while the journal cannot take messages.
    pub refused: Counter,
    /// Connections refused or cut by the listener, per reason.
    pub connections: crate::net::ConnectionCounters,
}

/// What a delivery worker counts, resolved for its endpoint.
#[derive(Debug, Clone)]
pub struct DeliveryCounters {
    delivered: Counter,
    retry: Counter,
    dead: Counter,
    released: Counter,
    captured: Counter,
    seconds: Histogram,
}

impl Default for DeliveryCounters {
    fn default() -> Self {
        Self {
            delivered: Counter::default(),
            retry: Counter::default(),
            dead: Counter::default(),
            released: Counter::default(),
            captured: Counter::default(),
            seconds: delivery_seconds(),
        }
    }
}

impl DeliveryCounters {
    /// One message's attempt ended with `outcome`.
    pub fn outcome(&self, outcome: DeliveryOutcome) {
        match outcome {
            DeliveryOutcome::Delivered => self.delivered.inc(),
            DeliveryOutcome::Retry => self.retry.inc(),
            DeliveryOutcome::Dead => self.dead.inc(),
            DeliveryOutcome::Released => self.released.inc(),
            DeliveryOutcome::Captured => self.captured.inc(),
        };
    }

    /// One batch was sent and answered (or timed out) in `took`.
    pub fn attempt_took(&self, took: Duration) {
        self.seconds.observe(took.as_secs_f64());
    }
}

/// The states read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per destination: rows waiting (queued or in flight) and the age of
    /// the oldest, in seconds.
    pub queues: Vec<(String, u64, f64)>,
    pub journal_bytes: u64,
    pub wal_bytes: u64,
    pub disk_free_bytes: Option<u64>,
    pub uptime: Duration,
}

/// What `ecko-gateway --version` and `ecko_build_info` say.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub build_date: &'static str,
    pub target: &'static str,
}

/// This binary's.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("ECKO_GIT_COMMIT"),
    build_date: env!("ECKO_BUILD_DATE"),
    target: env!("ECKO_TARGET"),
};

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let received = Family::<EndpointLabel, Counter>::default();
        let acknowledged = Family::<EndpointLabel, Counter>::default();
        let refused = Family::<EndpointLabel, Counter>::default();
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        let connections_refused = Family::<RefusedLabels, Counter>::default();
        let delivery_seconds_family: HistogramFamily =
            Family::new_with_constructor(delivery_seconds);
        let queue_depth = Family::<EndpointLabel, Gauge>::default();
        let queue_oldest_seconds = Family::<EndpointLabel, SecondsGauge>::default();
        let journal_bytes = Gauge::default();
        let wal_bytes = Gauge::default();
        let disk_free_bytes = Gauge::default();
        // 1 … 2048 jobs: the writer's largest batch.
        let commit_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let uptime_seconds = SecondsGauge::default();
        registry.register(
            "ecko_messages_received",
            "Messages a source handed to the journal",
            received.clone(),
        );
        registry.register(
            "ecko_messages_acknowledged",
            "Messages stored and acknowledged to their sender",
            acknowledged.clone(),
        );
        registry.register(
            "ecko_messages_refused",
            "Messages answered negatively (journal refused, unreadable, not routed)",
            refused.clone(),
        );
        registry.register(
            "ecko_deliveries",
            "Delivery attempts per message, by outcome",
            deliveries.clone(),
        );
        registry.register(
            "ecko_connections_refused",
            "Connections a listener refused or cut, by reason",
            connections_refused.clone(),
        );
        registry.register(
            "ecko_delivery_duration_seconds",
            "Time a destination took to answer one batch",
            delivery_seconds_family.clone(),
        );
        registry.register(
            "ecko_queue_depth",
            "Messages waiting for a destination (queued or in flight)",
            queue_depth.clone(),
        );
        registry.register(
            "ecko_queue_oldest_age_seconds",
            "Age of the oldest message waiting for a destination",
            queue_oldest_seconds.clone(),
        );
        registry.register(
            "ecko_journal_size_bytes",
            "Size of the journal database file",
            journal_bytes.clone(),
        );
        registry.register(
            "ecko_journal_wal_size_bytes",
            "Size of the journal's write-ahead log",
            wal_bytes.clone(),
        );
        registry.register(
            "ecko_disk_free_bytes",
            "Space available on the filesystem holding the journal",
            disk_free_bytes.clone(),
        );
        registry.register(
            "ecko_journal_commit_batch_size",
            "Jobs committed together in one journal transaction",
            commit_batch.clone(),
        );
        registry.register(
            "ecko_uptime_seconds",
            "Time since the gateway started",
            uptime_seconds.clone(),
        );
        registry.register(
            "ecko_build",
            "Version, commit, build date and target of the running binary",
            Info::new(BuildLabels {
                version: BUILD.version.to_string(),
                commit: BUILD.commit.to_string(),
                target: BUILD.target.to_string(),
                build_date: BUILD.build_date.to_string(),
            }),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                received,
                acknowledged,
                refused,
                deliveries,
                connections_refused,
                delivery_seconds: delivery_seconds_family,
                queue_depth,
                queue_oldest_seconds,
                journal_bytes,
                wal_bytes,
                disk_free_bytes,
                commit_batch,
                uptime_seconds,
            }),
        }
    }

    /// The counters of source `endpoint`; a restarted source keeps counting
    /// on the same series.
    pub fn source(&self, endpoint: &str) -> SourceCounters {
        let label = EndpointLabel {
            endpoint: endpoint.to_string(),
        };
        SourceCounters {
            received: self.inner.received.get_or_create_owned(&label),
            acknowledged: self.inner.acknowledged.get_or_create_owned(&label),
            refused: self.inner.refused.get_or_create_owned(&label),
            connections: self.connections(endpoint),
        }
    }

    /// The refused and cut connections of listener `endpoint` (the admin
    /// page's is `admin`).
    pub fn connections(&self, endpoint: &str) -> crate::net::ConnectionCounters {
        crate::net::ConnectionCounters::new(endpoint, |reason| {
            self.inner
                .connections_refused
                .get_or_create_owned(&RefusedLabels {
                    endpoint: endpoint.to_string(),
                    reason: reason.as_str(),
                })
        })
    }

    /// The counters of destination `endpoint`.
    pub fn destination(&self, endpoint: &str) -> DeliveryCounters {
        let outcome = |outcome| {
            self.inner.deliveries.get_or_create_owned(&DeliveryLabels {
                endpoint: endpoint.to_string(),
                outcome: DeliveryOutcome::as_str(outcome),
            })
        };
        DeliveryCounters {
            delivered: outcome(DeliveryOutcome::Delivered),
            retry: outcome(DeliveryOutcome::Retry),
            dead: outcome(DeliveryOutcome::Dead),
            released: outcome(DeliveryOutcome::Released),
            captured: outcome(DeliveryOutcome::Captured),
            seconds: self
                .inner
                .delivery_seconds
                .get_or_create_owned(&EndpointLabel {
                    endpoint: endpoint.to_string(),
                }),
        }
    }

    /// The histogram the journal writer records each commit's size in.
    pub fn commit_batch_sizes(&self) -> Histogram {
        self.inner.commit_batch.clone()
    }

    /// Every metric, with the states of `now` set, in the Prometheus text
    /// format.
    pub fn encode(&self, now: &Snapshot) -> String {
        let m = &self.inner;
        // Destinations removed since the last scrape disappear.
        m.queue_depth.clear();
        m.queue_oldest_seconds.clear();
        for (endpoint, depth, oldest) in &now.queues {
            let label = EndpointLabel {
                endpoint: endpoint.clone(),
            };
            m.queue_depth
                .get_or_create(&label)
                .set(i64::try_from(*depth).unwrap_or(i64::MAX));
            m.queue_oldest_seconds.get_or_create(&label).set(*oldest);
        }
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        m.journal_bytes.set(bytes(now.journal_bytes));
        m.wal_bytes.set(bytes(now.wal_bytes));
        m.disk_free_bytes.set(now.disk_free_bytes.map_or(-1, bytes));
        m.uptime_seconds.set(now.uptime.as_secs_f64());
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &m.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
    }

    #[test]
    fn counters_resolved_for_an_endpoint_are_encoded_under_its_label() {
        let metrics = Metrics::new();
        let lab = metrics.source("lab");
        lab.received.inc();
        lab.received.inc();
        lab.acknowledged.inc();
        lab.refused.inc();
        // Resolved again (a restarted source): the same series.
        metrics.source("lab").received.inc();
        let hub = metrics.destination("hub");
        hub.outcome(DeliveryOutcome::Delivered);
        hub.outcome(DeliveryOutcome::Retry);
        hub.attempt_took(Duration::from_millis(20));
        let text = metrics.encode(&Snapshot::default());
        assert_eq!(
            line(&text, "ecko_messages_received_total{"),
            "ecko_messages_received_total{endpoint=\"lab\"} 3"
        );
        assert!(text.contains("ecko_messages_acknowledged_total{endpoint=\"lab\"} 1"));
        assert!(text.contains("ecko_messages_refused_total{endpoint=\"lab\"} 1"));
        assert!(text.contains("ecko_deliveries_total{endpoint=\"hub\",outcome=\"delivered\"} 1"));
        assert!(text.contains("ecko_delivery_duration_seconds_count{endpoint=\"hub\"} 1"));
        assert!(text.contains("ecko_build_info{"));
    }

    #[test]
    fn a_refused_connection_is_counted_under_its_endpoint_and_reason() {
        let metrics = Metrics::new();
        let peer = "192.0.2.7:4000".parse().unwrap();
        metrics
            .source("lab")
            .connections
            .refused("lab", peer, crate::net::Reason::PerAddressCap);
        metrics
            .connections("admin")
            .refused("admin", peer, crate::net::Reason::TooSlow);
        let text = metrics.encode(&Snapshot::default());
        assert!(
            text.contains(
                "ecko_connections_refused_total{endpoint=\"lab\",reason=\"per_address_cap\"} 1"
            ),
            "{text}"
        );
        assert!(text
            .contains("ecko_connections_refused_total{endpoint=\"admin\",reason=\"too_slow\"} 1"));
        assert!(text.contains("ecko_connections_refused_total{endpoint=\"lab\",reason=\"idle\"} 0"));
    }

    #[test]
    fn states_are_those_of_the_scrape_and_removed_destinations_disappear() {
        let metrics = Metrics::new();
        let text = metrics.encode(&Snapshot {
            queues: vec![("hub".into(), 7, 12.5), ("archive".into(), 0, 0.0)],
            journal_bytes: 4096,
            wal_bytes: 8192,
            disk_free_bytes: Some(1 << 30),
            uptime: Duration::from_secs(3),
        });
        assert!(text.contains("ecko_queue_depth{endpoint=\"hub\"} 7"));
        assert!(text.contains("ecko_queue_oldest_age_seconds{endpoint=\"hub\"} 12.5"));
        assert!(text.contains("ecko_journal_size_bytes 4096"));
        assert!(text.contains("ecko_journal_wal_size_bytes 8192"));
        assert!(text.contains("ecko_disk_free_bytes 1073741824"));
        assert!(text.contains("ecko_uptime_seconds 3"));
        let text = metrics.encode(&Snapshot {
            queues: vec![("archive".into(), 1, 1.0)],
            ..Snapshot::default()
        });
        assert!(!text.contains("endpoint=\"hub\""), "{text}");
    }
}
