//! `ecko-gateway trace ENDPOINT`: one ASTM endpoint's line traffic, with
//! timestamps in the site's time zone and control characters made visible.
//! Attaches to the gateway running on the configured journal, or runs one
//! here when none is running.

use crate::app::signals::{InstallError, Signals};
use crate::app::RunError;
use crate::config::Config;
use crate::sources::astm::live_trace::{self, TraceError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Signals(#[from] InstallError),
    #[error(transparent)]
    Run(#[from] RunError),
}

pub async fn trace(args: &Args) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if !super::is_astm(&config, &args.endpoint) {
        eprintln!(
            "ecko-gateway: `{}` is not an ASTM endpoint of this configuration",
            args.endpoint
        );
        return ExitCode::from(2);
    }
    super::report(follow_or_run(config, &args.endpoint).await)
}

async fn follow_or_run(config: Config, endpoint: &str) -> Result<(), Error> {
    let socket = live_trace::socket_path(&crate::config::resolve(&config.journal.path));
    eprintln!("tracing `{endpoint}` (Ctrl-C to stop)");
    match live_trace::follow(&socket, endpoint, &mut tokio::io::stdout()).await {
        Ok(()) => {
            eprintln!("the gateway stopped");
            Ok(())
        }
        Err(TraceError::NoGateway(_)) => {
            // Only now: while attached, Ctrl-C ends this process at once.
            let signals = Signals::install()?;
            eprintln!("no gateway is running on this journal; starting one to trace `{endpoint}`");
            super::run::serve(config, Some(endpoint.to_string()), signals).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
