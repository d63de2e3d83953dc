//! `ecko-gateway run`: the gateway, until a signal stops it. SIGHUP
//! applies the configuration file as it is now, through the same path as an
//! edit on the admin page; a file that does not load, or an endpoint that
//! cannot start with it, leaves the gateway running as it was.

use crate::app::signals::{Request, Signals};
use crate::app::{Gateway, RunError, StartOptions};
use crate::config::{Config, ServiceConfig, WatchdogKind};
use crate::control::config::ChangeError;
use crate::endpoints::Role;
use crate::service::watchdog;
use crate::sources::astm::live_trace;
use ecko_hal::Watchdog;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

/// 2 when the configuration does not load, 1 when the gateway cannot
/// start, 0 after a graceful stop.
pub async fn run(args: &Args) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            super::print_failure(&e);
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    super::report(serve(config, None, signals).await)
}

/// Runs the gateway until `signals` ask it to stop; with `trace`, that
/// endpoint's line trace is printed on standard output.
///
/// The service manager hears `EXTEND_TIMEOUT_USEC` while a start migrates
/// the journal's schema, `READY=1` once the journal is open and every
/// enabled source has started (listeners bound), the watchdog's keepalives
/// while every long-lived task makes progress ([`crate::service::watchdog`]),
/// and `STOPPING=1` before the orderly shutdown.
pub(super) async fn serve(
    config: Config,
    trace: Option<String>,
    mut signals: Signals,
) -> Result<(), RunError> {
    let watchdog = watchdog_for(&config.service);
    let options = StartOptions::default();
    let progress = options.service.progress.clone();
    let journal = crate::config::resolve(&config.journal.path);
    let gateway = match crate::journal::external::migrations_pending(&journal) {
        Ok(n) if n > 0 => {
            tracing::info!(target: "ecko_gateway", migrations = n, "the journal's schema is migrated before start");
            let start = Gateway::start_with_options(&config, options);
            watchdog::extend_start_during(watchdog.as_ref(), MIGRATION_LIMIT, start).await?
        }
        _ => Gateway::start_with_options(&config, options).await?,
    };
    if let Some(endpoint) = trace {
        let socket = live_trace::socket_path(gateway.journal.path());
        tokio::spawn(async move {
            if let Err(e) = live_trace::follow(&socket, &endpoint, &mut tokio::io::stdout()).await {
                tracing::error!(target: "ecko_gateway", error = %e, "cannot show the line trace");
            }
        });
    }
    let sources: Vec<String> = config
        .endpoints
        .iter()
        .filter(|e| e.enabled)
        .filter(|e| crate::endpoints::of(&e.kind).role(&e.kind) == Role::Source)
        .map(|e| e.name.clone())
        .collect();
    let silent =
        watchdog::sources_reported(&gateway.supervisor.health(), &sources, SOURCES_START).await;
    if !silent.is_empty() {
        tracing::warn!(sources = ?silent, "sources still starting; ready anyway");
    }
    // The target the binary logged these lines under, which operators'
    // log filters and searches know.
    tracing::info!(
        target: "ecko_gateway",
        version = crate::service::BUILD.version,
        commit = crate::service::BUILD.commit,
        journal = %gateway.journal.path().display(),
        endpoints = config.endpoints.len(),
        "gateway running"
    );
    notify("READY=1", watchdog.ready());
    let keeper_stop = CancellationToken::new();
    let keeper = tokio::spawn(watchdog::keep(
        watchdog.clone(),
        progress,
        watchdog::queue_status(gateway.journal.clone()),
        keeper_stop.clone(),
    ));
    while signals.next().await == Request::Reload {
        reload(&gateway, watchdog.as_ref()).await;
    }
    tracing::info!(target: "ecko_gateway", "shutting down");
    notify("STOPPING=1", watchdog.stopping());
    keeper_stop.cancel();
    let _ = keeper.await;
    gateway.shutdown().await;
    tracing::info!(target: "ecko_gateway", "stopped");
    Ok(())
}

/// The watcher `[service] watchdog` names. A device that cannot be opened
/// leaves the gateway running unwatched, and says so: the watchdog is
/// there to restart a stuck gateway, not to keep a working one from
/// starting.
fn watchdog_for(service: &ServiceConfig) -> Arc<dyn Watchdog> {
    match service.watchdog {
        WatchdogKind::Systemd => Arc::new(ecko_hal::SystemdNotify::from_env()),
        WatchdogKind::Device => {
            match ecko_hal::DevWatchdog::open(&service.watchdog_device, service.watchdog_timeout.0)
            {
                Ok(device) => {
                    tracing::info!(device = %service.watchdog_device.display(), timeout = ?device.timeout(), "hardware watchdog armed");
                    Arc::new(device)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot arm the hardware watchdog; running without it");
                    // Outside systemd this says nothing to anyone.
                    Arc::new(ecko_hal::SystemdNotify::from_env())
                }
            }
        }
    }
}

/// The longest the service manager is asked to wait for a start that
/// migrates the journal (a large journal's index rebuild takes minutes on
/// eMMC).
const MIGRATION_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The longest start-up waits for every source's first report before it
/// says ready anyway (and logs the silent ones).
const SOURCES_START: Duration = Duration::from_secs(30);

fn notify(what: &str, sent: Result<(), ecko_hal::WatchdogError>) {
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot tell the service manager {what}");
    }
}

/// Applies the configuration file as it is now and logs what came of it.
async fn reload(gateway: &Gateway, watchdog: &dyn Watchdog) {
    // systemd (Type=notify-reload, or ExecReload sending SIGHUP) waits for
    // READY=1 after RELOADING=1 before it calls the reload done.
    notify("RELOADING=1", watchdog.reloading());
    let file = gateway
        .supervisor
        .config()
        .source
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    tracing::info!(file, "SIGHUP: reloading the configuration file");
    match crate::control::config::reload(&gateway.supervisor, "SIGHUP").await {
        // The change itself is logged (and audited) where it is applied.
        Ok(_) => {}
        Err(ChangeError::Invalid(errors)) => {
            for e in &errors {
                tracing::error!("{file}:{}: {}", e.line, e.message);
            }
            tracing::error!(
                file,
                "configuration not reloaded: the file has errors; running on as before"
            );
        }
        Err(e) => {
            tracing::error!(file, error = %e, "configuration not reloaded; running on as before")
        }
    }
    notify("READY=1", watchdog.ready());
}
