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
use crate::sinks::file::FileSink;
use crate::sources::{file_drop, SourceContext};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A started gateway.
pub struct Gateway {
    pub journal: Journal,
    /// Where the admin page listens, when it runs.
    pub admin_addr: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    sources: JoinSet<()>,
    workers: JoinSet<()>,
    housekeeping: JoinSet<()>,
}

impl Gateway {
    /// Opens the journal and starts every enabled endpoint.
    pub async fn start(config: &Config) -> Result<Gateway, RunError> {
        let mut options = JournalOptions::new(crate::config::resolve(&config.journal.path));
        options.max_size = config.journal.max_size;
        options.min_free_disk = config.journal.min_free_disk;
        let journal = Journal::open(options)?;
        Self::start_with(config, journal)
    }

    /// Starts every enabled endpoint on an already open journal.
    pub fn start_with(config: &Config, journal: Journal) -> Result<Gateway, RunError> {
        let shutdown = CancellationToken::new();
        let router = Arc::new(Router::new(config));
        let cx = SourceContext {
            journal: journal.clone(),
            router,
            shutdown: shutdown.child_token(),
        };
        let mut sources = JoinSet::new();
        let mut workers = JoinSet::new();
        let worker_stop = CancellationToken::new();
        for endpoint in config.endpoints.iter().filter(|e| e.enabled) {
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
                EndpointKind::FileDrop(c) => {
                    sources.spawn(file_drop::run(endpoint.clone(), c.clone(), cx.clone()));
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
        // Workers stop only after the sources, so ingests finishing during
        // shutdown are not left waiting on a stopped engine.
        let stop_workers = shutdown.clone();
        housekeeping.spawn(async move {
            stop_workers.cancelled().await;
            worker_stop.cancel();
        });
        Ok(Gateway {
            journal,
            admin_addr,
            shutdown,
            sources,
            workers,
            housekeeping,
        })
    }

    /// Stops accepting, lets in-flight work finish, closes the journal.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.sources.join_next().await.is_some() {}
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
