//! `ecko-gateway run`: the gateway, until a signal stops it.

use crate::app::signals::{Request, Signals};
use crate::app::{Gateway, RunError, StartOptions};
use crate::config::Config;
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
    match signals.next().await {
        Request::Stop => {}
    }
    tracing::info!(target: "ecko_gateway", "shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    gateway.shutdown().await;
    tracing::info!(target: "ecko_gateway", "stopped");
    Ok(())
}
