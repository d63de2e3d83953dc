//! `ecko-gateway run`: the gateway, until a signal stops it. SIGHUP
//! applies the configuration file as it is now, through the same path as an
//! edit on the admin page; a file that does not load, or an endpoint that
//! cannot start with it, leaves the gateway running as it was.

use crate::app::signals::{Request, Signals};
use crate::app::{Gateway, RunError, StartOptions};
use crate::config::Config;
use crate::control::config::ChangeError;
use crate::sources::astm::live_trace;
use std::path::PathBuf;
use std::process::ExitCode;

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
pub(super) async fn serve(
    config: Config,
    trace: Option<String>,
    mut signals: Signals,
) -> Result<(), RunError> {
    let gateway = Gateway::start_with_options(&config, StartOptions::default()).await?;
    if let Some(endpoint) = trace {
        let socket = live_trace::socket_path(gateway.journal.path());
        tokio::spawn(async move {
            if let Err(e) = live_trace::follow(&socket, &endpoint, &mut tokio::io::stdout()).await {
                tracing::error!(target: "ecko_gateway", error = %e, "cannot show the line trace");
            }
        });
    }
    // The target the binary logged these lines under, which operators'
    // log filters and searches know.
    tracing::info!(
        target: "ecko_gateway",
        version = env!("CARGO_PKG_VERSION"),
        journal = %gateway.journal.path().display(),
        endpoints = config.endpoints.len(),
        "gateway running"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    while signals.next().await == Request::Reload {
        reload(&gateway).await;
    }
    tracing::info!(target: "ecko_gateway", "shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    gateway.shutdown().await;
    tracing::info!(target: "ecko_gateway", "stopped");
    Ok(())
}

/// Applies the configuration file as it is now and logs what came of it.
async fn reload(gateway: &Gateway) {
    // systemd (Type=notify-reload, or ExecReload sending SIGHUP) waits for
    // READY=1 after RELOADING=1 before it calls the reload done.
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
    let _ = sd_notify::notify(false, &reloading);
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
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}
