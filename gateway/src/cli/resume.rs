//! `ecko-gateway resume`: a destination its circuit breaker paused delivers
//! again, beside a running gateway (whose worker notices within a second)
//! or not. Audited as `endpoint.resume`, like the admin page's button.

use super::Refused;
use crate::config::{Config, ConfigErrors};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The destination endpoint to resume.
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: String,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Refused(#[from] Refused),
}

pub fn resume(args: &Args) -> ExitCode {
    super::report(run(args))
}

fn run(args: &Args) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let resumed =
        crate::control::endpoints::resume_offline(&config, &super::actor(), &args.endpoint)
            .map_err(Refused)?;
    if resumed {
        println!("{}: resumed; its queue is delivered again", args.endpoint);
    } else {
        println!("{}: not paused; nothing to do", args.endpoint);
    }
    Ok(())
}
