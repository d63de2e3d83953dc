//! Running the gateway: open the journal, start delivery workers and
//! sources, purge on schedule, and shut down in order on a signal
//! ([`signals`]).
//!
//! Shutdown order matters for the one rule: sources stop accepting first and
//! finish the commits they started (their senders get their ACKs); delivery
//! workers finish their batches in flight; then the journal drains its queue,
//! checkpoints and closes. The [`Supervisor`] owns the running endpoints and
//! applies an edited configuration to them without a restart.

pub mod reset_button;
pub(crate) mod search_index;
pub mod signals;
mod supervisor;

pub use supervisor::{ApplyError, ApplyReport, Supervisor};

impl crate::control::Gateway for Supervisor {
    fn config(&self) -> Arc<Config> {
        Supervisor::config(self)
    }
    fn apply(
        &self,
        config: Config,
    ) -> futures_util::future::BoxFuture<'_, Result<ApplyReport, crate::control::ApplyFailed>> {
        Box::pin(async move { Ok(Supervisor::apply(self, config).await?) })
    }
    fn running(&self) -> Vec<String> {
        Supervisor::running(self)
    }
    fn journal(&self) -> &Journal {
        Supervisor::journal(self)
    }
    fn health(&self) -> crate::health::Health {
        Supervisor::health(self)
    }
    fn lock_edits(&self) -> futures_util::future::BoxFuture<'_, tokio::sync::MutexGuard<'_, ()>> {
        Box::pin(Supervisor::lock_edits(self))
    }
    fn service(&self) -> Service {
        Supervisor::service(self)
    }
}

use crate::config::Config;
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::service::progress::DEADLINE;
use crate::service::Service;
use crate::sources::{astm, mllp};
use ecko_hal::SerialPorts;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Listen(#[from] mllp::ListenError),
    #[error(transparent)]
    DicomListen(#[from] crate::sources::dicom::ListenError),
    #[error("endpoint `{endpoint}`: {source}")]
    Tls {
        endpoint: String,
        source: crate::tls::TlsError,
    },
    #[error("[site]: unknown time zone `{0}`")]
    TimeZone(String),
    #[error("endpoint `{name}` cannot start: {reason}")]
    Endpoint { name: String, reason: String },
    #[error("factory reset: {0}")]
    FactoryReset(#[from] crate::factory_reset::ResetError),
}

/// The hardware and hooks a gateway runs with; tests swap them.
#[derive(Clone)]
pub struct StartOptions {
    pub serial: Arc<dyn SerialPorts>,
    /// Metrics, progress of the long-lived tasks, disk and clock.
    pub service: Service,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            serial: Arc::new(ecko_hal::LinuxSerial),
            service: Service::default(),
        }
    }
}

/// A started gateway.
pub struct Gateway {
    pub journal: Journal,
    /// Where the admin page listens, when it runs.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The running endpoints; applies edited configurations.
    pub supervisor: Arc<Supervisor>,
    shutdown: CancellationToken,
    housekeeping: JoinSet<()>,
}

/// The connections the configured listeners may hold at once.
pub fn listener_connections(config: &Config) -> u64 {
    use crate::config::{EndpointKind, TcpRole};
    let listeners: usize = config
        .endpoints
        .iter()
        .map(|e| match &e.kind {
            EndpointKind::Mllp(m) if m.listen.is_some() => m.max_connections,
            EndpointKind::AstmTcp(a) if a.role == TcpRole::Server => a.max_connections,
            EndpointKind::Dicom(d) if d.is_listener() => d.max_associations,
            _ => 0,
        })
        .sum();
    let admin = if config.admin.enabled {
        config.admin.max_connections
    } else {
        0
    };
    (listeners + admin) as u64
}

impl Gateway {
    /// Opens the journal and starts every enabled endpoint.
    pub async fn start(config: &Config) -> Result<Gateway, RunError> {
        Self::start_with_options(config, StartOptions::default()).await
    }

    /// Like [`Gateway::start`], with other hardware or hooks.
    pub async fn start_with_options(
        config: &Config,
        start: StartOptions,
    ) -> Result<Gateway, RunError> {
        // Before anything opens a descriptor: every admitted connection is one.
        crate::net::fd_limit::check(listener_connections(config));
        let mut options = JournalOptions::new(crate::config::resolve(&config.journal.path));
        options.max_size = config.journal.max_size;
        options.min_free_disk = config.journal.min_free_disk;
        options.duplicate_window = Some(config.journal.retention);
        options.storage = start.service.storage.clone();
        options.commit_batch_sizes = start.service.metrics.commit_batch_sizes();
        let journal = Journal::open(options)?;
        match Self::start_on(config, journal.clone(), start).await {
            Ok(g) => Ok(g),
            Err(e) => {
                journal.close().await;
                Err(e)
            }
        }
    }

    /// Starts every enabled endpoint on an already open journal.
    pub async fn start_with(config: &Config, journal: Journal) -> Result<Gateway, RunError> {
        Self::start_on(config, journal, StartOptions::default()).await
    }

    /// Starts every enabled endpoint on an already open journal, with other
    /// hardware or hooks.
    pub async fn start_on(
        config: &Config,
        journal: Journal,
        start: StartOptions,
    ) -> Result<Gateway, RunError> {
        let shutdown = CancellationToken::new();
        let progress = start.service.progress.clone();
        let supervisor = Supervisor::start(config, journal.clone(), start, &shutdown).await?;
        let mut housekeeping = JoinSet::new();
        housekeeping.spawn(crate::service::watchdog::probe_journal_writer(
            journal.clone(),
            progress.register("journal writer", DEADLINE),
            shutdown.child_token(),
        ));
        // The admin page is a window on the journal: if it cannot start (a
        // busy port, an unreadable certificate) the gateway keeps moving
        // messages and says so loudly.
        let mut admin_addr = None;
        if config.admin.enabled {
            // Before the page listens: the first-run setup code is in the
            // log and on the console by the time anyone can be asked for it.
            if let Err(e) = crate::control::setup_code::at_start(&journal, config).await {
                tracing::error!(error = %e, "the first-run setup code is not available");
            }
            let heartbeat = progress.register("admin page", DEADLINE);
            match crate::admin::start_supervised(
                supervisor.clone(),
                heartbeat,
                shutdown.child_token(),
            ) {
                Ok(server) => {
                    admin_addr = Some(server.addr);
                    housekeeping.spawn(async move {
                        let _ = server.task.await;
                    });
                }
                Err(e) => tracing::error!(error = %e, "the admin page is not available"),
            }
        }
        let leds = config.service.leds.clone();
        if leds.any() {
            let service = supervisor.service();
            let watched = supervisor.clone();
            let readiness: crate::service::leds::ReadinessNow = Box::new(move || {
                let watched = watched.clone();
                Box::pin(async move {
                    let config = watched.config();
                    watched
                        .service()
                        .readiness(watched.journal(), &config, &watched.health())
                        .await
                })
            });
            housekeeping.spawn(crate::service::leds::follow(
                service.leds.clone(),
                leds,
                readiness,
                shutdown.child_token(),
            ));
        }
        // Like the admin page, the hub uplink is a window: the gateway runs
        // on without it, its events wait in the journal.
        if config.hub.enabled {
            let task = crate::hub::start(supervisor.clone(), shutdown.child_token());
            housekeeping.spawn(async move {
                let _ = task.await;
            });
        }
        // Alerts watch the running gateway and send on their own tasks;
        // a channel that cannot send never holds anything else up.
        if config.alerts.enabled && !config.alerts.rules.is_empty() {
            let task = crate::alerts::start(supervisor.clone(), shutdown.child_token());
            housekeeping.spawn(async move {
                let _ = task.await;
            });
        }
        // The update check writes nothing until the gateway is ready: a
        // start that never gets there leaves the slot to the bootloader.
        if let Some(update) = config.update.clone() {
            housekeeping.spawn(crate::update::after_boot::run(
                supervisor.clone(),
                update,
                shutdown.child_token(),
            ));
        }
        if let Some(button) = config.service.reset_button.clone() {
            housekeeping.spawn(reset_button::watch(
                supervisor.clone(),
                button,
                shutdown.child_token(),
            ));
        }
        if !supervisor.astm_endpoints().is_empty() {
            // A window for `ecko-gateway trace`; the gateway runs without it.
            let path = astm::live_trace::socket_path(journal.path());
            match astm::live_trace::bind(&path).await {
                Ok(listener) => {
                    let endpoints = supervisor.clone();
                    housekeeping.spawn(astm::live_trace::serve(
                        listener,
                        path,
                        supervisor.astm_trace(),
                        supervisor.site_time_zone(),
                        Arc::new(move || endpoints.astm_endpoints()),
                        shutdown.child_token(),
                    ));
                }
                Err(e) => tracing::warn!(error = %e, "ASTM line traces are not available"),
            }
        }
        Ok(Gateway {
            journal,
            admin_addr,
            supervisor,
            shutdown,
            housekeeping,
        })
    }

    /// Stops accepting, lets in-flight work finish, closes the journal.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.supervisor.shutdown().await;
        while self.housekeeping.join_next().await.is_some() {}
        self.journal.close().await;
    }
}

/// How often each destination's queue is sampled for the statistics: the
/// minute's row keeps the peak, so a short outage's backlog is not missed
/// between two samples. A sample is one read of the outbox's counts, and a
/// write only while something waits.
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How often the statistics are folded from the rows (`stats_fold.rs`):
/// what a read of them adds up from the rows themselves is at most this
/// much traffic.
const STATS_FOLD_EVERY: Duration = Duration::from_secs(2);

/// The retention purge every `every`, and between purges the queue depths
/// sampled every [`QUEUE_SAMPLE_EVERY`] and the statistics folded every
/// [`STATS_FOLD_EVERY`].
async fn purge_on_schedule(
    journal: Journal,
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut next_purge = tokio::time::Instant::now();
    let mut next_sample = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_purge {
            let cutoff = journal.now_ms() - retention.as_millis() as i64;
            match journal.purge_delivered_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "retention: delivered messages purged"),
                Err(JournalError::Closed) => return,
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
            next_purge = tokio::time::Instant::now() + every;
        }
        if tokio::time::Instant::now() >= next_sample {
            match journal.record_queue_depths().await {
                Ok(_) => {}
                Err(JournalError::Closed) => return,
                Err(e) => tracing::debug!(error = %e, "queue depths not recorded"),
            }
            next_sample = tokio::time::Instant::now() + QUEUE_SAMPLE_EVERY;
        }
        match journal.fold_stats().await {
            Ok(()) => {}
            Err(JournalError::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, "statistics not folded; reads add up the rows meanwhile")
            }
        }
        let wait = STATS_FOLD_EVERY
            .min(next_sample.saturating_duration_since(tokio::time::Instant::now()))
            .min(next_purge.saturating_duration_since(tokio::time::Instant::now()));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests;
