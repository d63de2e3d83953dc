//! The gateway as an appliance service: what the service manager and the
//! hospital's monitoring see of it.
//!
//! - [`progress`]: which long-lived tasks still make progress;
//! - [`watchdog`]: `READY=1`, the keepalive fed only while every task makes
//!   progress, the status line, `STOPPING=1`;
//! - [`readiness`]: the per-component verdict of `/readyz`;
//! - [`metrics`]: the Prometheus metrics of `/metrics`;
//! - [`leds`]: the status LEDs, following readiness;
//! - [`recent_log`]: the last lines logged, for a log bundle.
//!
//! [`Service`] is the one handle the supervisor, the endpoints' tasks and
//! the admin page share.

pub mod leds;
pub mod metrics;
pub mod progress;
pub mod readiness;
pub mod recent_log;
pub mod watchdog;

pub use metrics::{DeliveryCounters, DeliveryOutcome, Metrics, SourceCounters, BUILD};
pub use progress::{Heartbeat, Progress};
pub use readiness::Readiness;

use crate::config::Config;
use crate::endpoints::Role;
use crate::health::Health;
use crate::journal::Journal;
use ecko_hal::Storage;
use readiness::{DeviceFacts, EndpointFact, EndpointRole, Facts};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long `/readyz` waits for the journal writer to answer.
const JOURNAL_ANSWER: Duration = Duration::from_secs(2);

/// The appliance side of one running gateway; cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub metrics: Metrics,
    pub progress: Progress,
    /// Free space of the journal's filesystem.
    pub storage: Arc<dyn Storage>,
    /// Whether the system clock is synchronised.
    pub clock: Arc<dyn ecko_hal::Clock>,
    /// Flash wear and read-only remounts.
    pub wear: Arc<dyn ecko_hal::StorageWear>,
    /// The box's status LEDs.
    pub leds: Arc<dyn ecko_hal::StatusLeds>,
    /// A factory reset asked for (admin page, reset button), for the run
    /// loop to carry out.
    pub factory_reset: crate::factory_reset::Requests,
    started: tokio::time::Instant,
}

impl Default for Service {
    /// The real disk and clock.
    fn default() -> Self {
        Self::new(
            Arc::new(ecko_hal::storage::LinuxStorage),
            Arc::new(ecko_hal::LinuxClock::default()),
            Arc::new(ecko_hal::LinuxStorageWear::default()),
            Arc::new(ecko_hal::LinuxLeds::default()),
        )
    }
}

impl Service {
    /// Devices that report all is well (a synchronised clock with an RTC,
    /// room on the disk, unworn flash, LEDs nobody sees): for a page with no
    /// running gateway behind it, and tests.
    pub fn simulated() -> Self {
        Self::new(
            Arc::new(ecko_hal::storage::SimStorage::new(u64::MAX)),
            Arc::new(ecko_hal::SimClock::new(true, true)),
            Arc::new(ecko_hal::SimStorageWear::default()),
            Arc::new(ecko_hal::SimLeds::default()),
        )
    }

    pub fn new(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn ecko_hal::Clock>,
        wear: Arc<dyn ecko_hal::StorageWear>,
        leds: Arc<dyn ecko_hal::StatusLeds>,
    ) -> Self {
        Self {
            metrics: Metrics::new(),
            progress: Progress::new(),
            storage,
            clock,
            wear,
            leds,
            factory_reset: crate::factory_reset::Requests::default(),
            started: tokio::time::Instant::now(),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The verdict of `/readyz` for the gateway running `config`.
    pub async fn readiness(
        &self,
        journal: &Journal,
        config: &Config,
        health: &Health,
    ) -> Readiness {
        let journal_answers = matches!(
            tokio::time::timeout(JOURNAL_ANSWER, journal.ping()).await,
            Ok(Ok(()))
        );
        let endpoints = config
            .endpoints
            .iter()
            .filter(|e| e.enabled)
            .map(|e| EndpointFact {
                name: e.name.clone(),
                role: match crate::endpoints::of(&e.kind).role(&e.kind) {
                    Role::Source => EndpointRole::Source,
                    Role::Destination => EndpointRole::Destination,
                },
                link: health.get(&e.name),
            })
            .collect();
        readiness::assess(&Facts {
            journal_answers,
            journal_unwritable: journal.unwritable_reason(),
            device: self.device(journal),
            endpoints,
        })
    }

    /// What the box says about the journal's disk, its flash and the clock.
    pub fn device(&self, journal: &Journal) -> DeviceFacts {
        DeviceFacts {
            disk_free: self.disk_free(journal),
            disk_reserve: journal.limits().1,
            read_only: self.wear.read_only(&journal_dir(journal)),
            wear: self.wear.wear(),
            clock_synchronised: self.clock.synchronised().ok(),
            rtc_present: self.clock.rtc_present(),
        }
    }

    /// `/metrics`: every metric, the states read from `journal` now; every
    /// enabled destination of `config` has a queue, empty or not.
    pub async fn metrics_text(&self, journal: &Journal, config: &Config) -> String {
        let now = journal.now_ms();
        let mut queues: Vec<(String, u64, f64)> = config
            .endpoints
            .iter()
            .filter(|e| e.enabled)
            .filter(|e| crate::endpoints::of(&e.kind).role(&e.kind) == Role::Destination)
            .map(|e| (e.name.clone(), 0, 0.0))
            .collect();
        match journal.queue_depths().await {
            Ok(depths) => {
                for d in depths {
                    let age = (now - d.oldest_queued_at).max(0) as f64 / 1000.0;
                    match queues.iter_mut().find(|q| q.0 == d.destination) {
                        Some(q) => *q = (d.destination, d.waiting, age),
                        None => queues.push((d.destination, d.waiting, age)),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the queue depths"),
        }
        self.metrics.encode(&metrics::Snapshot {
            queues,
            journal_bytes: journal.file_bytes(),
            wal_bytes: journal.wal_bytes(),
            disk_free_bytes: self.disk_free(journal),
            uptime: self.uptime(),
        })
    }

    fn disk_free(&self, journal: &Journal) -> Option<u64> {
        self.storage.available_bytes(&journal_dir(journal)).ok()
    }
}

/// The directory holding the journal, absolute where it can be made so
/// (mount points are).
fn journal_dir(journal: &Journal) -> PathBuf {
    let dir = journal
        .path()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    std::path::absolute(&dir).unwrap_or(dir)
}
