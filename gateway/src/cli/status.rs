//! `ecko-gateway status`: queue depth and totals per destination, read from
//! the journal beside a running gateway or not.

use crate::config::{Config, ConfigErrors};
use crate::journal::{JournalError, JournalReader};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: JournalError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub fn status(args: &Args) -> ExitCode {
    super::report(print(args))
}

fn print(args: &Args) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let path = crate::config::resolve(&config.journal.path);
    let reader = JournalReader::open(&path).map_err(|source| Error::Open {
        path: path.display().to_string(),
        source,
    })?;
    println!(
        "{:<24} {:>9} {:>9} {:>11} {:>7}",
        "destination", "queued", "in flight", "delivered", "dead"
    );
    for c in reader.counts()? {
        println!(
            "{:<24} {:>9} {:>9} {:>11} {:>7}",
            c.destination, c.queued, c.leased, c.delivered, c.dead
        );
    }
    Ok(())
}
