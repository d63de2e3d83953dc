//! `ecko-gateway run`: the gateway, until a signal stops it. SIGHUP
//! applies the configuration file as it is now, through the same path as an
//! edit on the admin page; a file that does not load, or an endpoint that
//! cannot start with it, leaves the gateway running as it was.
//!
//! A factory reset asked for while it runs (the admin page, the reset
//! button) is carried out here: the hub hears of it first when it can, the
//! gateway stops in order, the plan is carried out, and the process exits
//! with [`factory_reset::RESTART_EXIT_CODE`] for the service manager to
//! start it again as on first boot. A reset a power cut interrupted is
//! finished before the configuration is read.

use crate::app::signals::{Request, Signals};
use crate::app::{Gateway, RunError, StartOptions};
use crate::config::{Config, ServiceConfig, WatchdogKind};
use crate::control::config::ChangeError;
use crate::endpoints::Role;
use crate::factory_reset::{self, Plan};
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
/// start, 0 after a graceful stop, 75 after a factory reset (start it
/// again).
pub async fn run(args: &Args) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            super::print_failure(&e);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = factory_reset::finish_pending(&args.config) {
        super::print_failure(&e);
        return ExitCode::FAILURE;
    }
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    match serve(config, None, signals).await {
        Ok(Stopped::Asked) => ExitCode::SUCCESS,
        Ok(Stopped::FactoryReset) => ExitCode::from(factory_reset::RESTART_EXIT_CODE),
        Err(e) => super::report(Err(e)),
    }
}

/// Why a gateway that ran stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// A signal asked it to.
    Asked,
    /// It was reset; it should be started again.
    FactoryReset,
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
) -> Result<Stopped, RunError> {
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
    let resets = gateway.supervisor.service().factory_reset.clone();
    let reset = loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Reload => reload(&gateway, watchdog.as_ref()).await,
                Request::Stop => break None,
            },
            asked = resets.requested() => break Some(asked.plan),
        }
    };
    if let Some(plan) = &reset {
        tell_the_hub(&gateway, plan).await;
    }
    tracing::info!(target: "ecko_gateway", "shutting down");
    notify("STOPPING=1", watchdog.stopping());
    keeper_stop.cancel();
    let _ = keeper.await;
    gateway.shutdown().await;
    tracing::info!(target: "ecko_gateway", "stopped");
    let Some(plan) = reset else {
        return Ok(Stopped::Asked);
    };
    factory_reset::perform(&plan)?;
    tracing::warn!(
        target: "ecko_gateway",
        requested_by = plan.requested_by,
        wiped = plan.wipe.len(),
        "factory reset done: the journal and the configuration are the defaults; exiting to be started again"
    );
    Ok(Stopped::FactoryReset)
}

/// How long a reset waits for the hub to take its event: the journal that
/// would keep it for later is about to be wiped.
const HUB_EVENT_WAIT: Duration = Duration::from_secs(10);

/// Journals the reset's hub event and waits, up to [`HUB_EVENT_WAIT`], for
/// the broker's acknowledgement (the uplink deletes the row then).
async fn tell_the_hub(gateway: &crate::app::Gateway, plan: &Plan) {
    if !gateway.supervisor.config().hub.enabled {
        return;
    }
    let detail = serde_json::json!({ "wiped": plan.wipe.len() }).to_string();
    let journal = &gateway.journal;
    let id = match journal
        .record_hub_event(
            factory_reset::HUB_EVENT,
            Some(&plan.requested_by),
            Some(&detail),
        )
        .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "the hub is not told of the factory reset");
            return;
        }
    };
    let taken = tokio::time::timeout(HUB_EVENT_WAIT, async {
        loop {
            match journal.hub_events_after(id - 1, 1).await {
                Ok(events) if events.first().is_some_and(|e| e.id == id) => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match taken {
        Ok(()) => tracing::info!(target: "ecko_gateway", "the hub took the factory reset's event"),
        Err(_) => tracing::warn!(
            "the hub did not take the factory reset's event within 10 s; resetting without it"
        ),
    }
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
