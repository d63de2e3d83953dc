//! Running the gateway: open the journal, start delivery workers and
//! sources, purge on schedule, and shut down in order on a signal.
//!
//! Shutdown order matters for the one rule: sources stop accepting first and
//! finish the commits they started (their senders get their ACKs); delivery
//! workers finish their batches in flight; then the journal drains its queue,
//! checkpoints and closes.

use crate::config::{Config, EndpointKind};
use crate::journal::{Journal, JournalError, JournalOptions};
use crate::router::Router;
use crate::sinks::fhir::FhirSink;
use crate::sinks::file::FileSink;
use crate::sinks::mllp::MllpSink;
use crate::sources::astm::LineTracer;
use crate::sources::{astm, file_drop, mllp, SourceContext};
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
    #[error("endpoint `{endpoint}`: {source}")]
    Tls {
        endpoint: String,
        source: crate::tls::TlsError,
    },
    #[error("[site]: unknown time zone `{0}`")]
    TimeZone(String),
    #[error("endpoint `{name}` cannot start: {reason}")]
    Endpoint { name: String, reason: String },
}

/// The hardware and hooks a gateway runs with; tests swap them.
#[derive(Clone)]
pub struct StartOptions {
    pub serial: Arc<dyn SerialPorts>,
    /// Receives ASTM line traffic (`ecko-gateway trace`).
    pub astm_tracer: Option<LineTracer>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            serial: Arc::new(ecko_hal::LinuxSerial),
            astm_tracer: None,
        }
    }
}

/// A started gateway.
pub struct Gateway {
    pub journal: Journal,
    /// Where the admin page listens, when it runs.
    pub admin_addr: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    sources: JoinSet<()>,
    /// Cancelled only after every source has finished, so ingests completing
    /// during shutdown are not left waiting on a stopped engine.
    worker_stop: CancellationToken,
    workers: JoinSet<()>,
    housekeeping: JoinSet<()>,
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
        let mut options = JournalOptions::new(crate::config::resolve(&config.journal.path));
        options.max_size = config.journal.max_size;
        options.min_free_disk = config.journal.min_free_disk;
        options.duplicate_window = Some(config.journal.retention);
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
        crate::transforms::configure(&config.site.time_zone);
        let shutdown = CancellationToken::new();
        let router = Arc::new(Router::new(config));
        let time_zone = jiff::tz::TimeZone::get(&config.site.time_zone)
            .map_err(|_| RunError::TimeZone(config.site.time_zone.clone()))?;
        let cx = SourceContext {
            journal: journal.clone(),
            router,
            shutdown: shutdown.child_token(),
            time_zone,
        };
        let mut sources = JoinSet::new();
        let mut workers = JoinSet::new();
        let worker_stop = CancellationToken::new();
        for endpoint in
            (config.endpoints.iter()).filter(|e| e.enabled || mllp::answers_while_disabled(e))
        {
            match &endpoint.kind {
                EndpointKind::File(c) => {
                    let handle = crate::delivery::spawn(
                        journal.clone(),
                        endpoint,
                        FileSink::new(c),
                        worker_stop.clone(),
                    );
                    workers.spawn(async move {
                        let _ = handle.await;
                    });
                }
                EndpointKind::Fhir(c) => {
                    let sink = FhirSink::new(endpoint, c).map_err(|e| RunError::Endpoint {
                        name: endpoint.name.clone(),
                        reason: e.to_string(),
                    })?;
                    let handle = crate::delivery::spawn(
                        journal.clone(),
                        endpoint,
                        sink,
                        worker_stop.clone(),
                    );
                    workers.spawn(async move {
                        let _ = handle.await;
                    });
                }
                EndpointKind::FileDrop(c) => {
                    sources.spawn(file_drop::run(endpoint.clone(), c.clone(), cx.clone()));
                }
                EndpointKind::Mllp(c) if c.listen.is_some() => {
                    let listener = mllp::Listener::bind(endpoint, c, cx.clone()).await?;
                    sources.spawn(listener.serve());
                }
                EndpointKind::Mllp(c) => {
                    let sink =
                        MllpSink::new(&endpoint.name, c).map_err(|source| RunError::Tls {
                            endpoint: endpoint.name.clone(),
                            source,
                        })?;
                    let handle = crate::delivery::spawn(
                        journal.clone(),
                        endpoint,
                        sink,
                        worker_stop.clone(),
                    );
                    workers.spawn(async move {
                        let _ = handle.await;
                    });
                }
                EndpointKind::AstmTcp(c) => {
                    sources.spawn(astm::run_tcp(
                        endpoint.clone(),
                        c.clone(),
                        cx.clone(),
                        start.astm_tracer.clone(),
                    ));
                }
                EndpointKind::AstmSerial(c) => {
                    sources.spawn(astm::run_serial(
                        endpoint.clone(),
                        c.clone(),
                        start.serial.clone(),
                        cx.clone(),
                        start.astm_tracer.clone(),
                    ));
                }
            }
        }
        let mut housekeeping = JoinSet::new();
        // The admin page is a window on the journal: if it cannot start (a
        // busy port, an unreadable certificate) the gateway keeps moving
        // messages and says so loudly.
        let mut admin_addr = None;
        if config.admin.enabled {
            match crate::admin::start(
                Arc::new(config.clone()),
                journal.clone(),
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
        housekeeping.spawn(purge_on_schedule(
            journal.clone(),
            config.journal.retention,
            config.journal.purge_interval,
            shutdown.child_token(),
        ));
        Ok(Gateway {
            journal,
            admin_addr,
            shutdown,
            sources,
            worker_stop,
            workers,
            housekeeping,
        })
    }

    /// Stops accepting, lets in-flight work finish, closes the journal.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.sources.join_next().await.is_some() {}
        self.worker_stop.cancel();
        while self.workers.join_next().await.is_some() {}
        while self.housekeeping.join_next().await.is_some() {}
        self.journal.close().await;
    }
}

async fn purge_on_schedule(
    journal: Journal,
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        let cutoff = journal.now_ms() - retention.as_millis() as i64;
        match journal.purge_delivered_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "retention: delivered messages purged"),
            Err(JournalError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "retention purge failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
