//! `ecko-gateway retry`: dead deliveries back in the queue, beside a
//! running gateway (whose workers pick them up within a second) or not.

use super::Refused;
use crate::config::{Config, ConfigErrors};
use crate::control::messages::{retry_dead, RetryDead};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Only deliveries to this destination endpoint.
    #[arg(long, value_name = "ENDPOINT")]
    pub destination: Option<String>,
    /// Only this message's deliveries (its id in the journal).
    #[arg(long, value_name = "ID")]
    pub message: Option<i64>,
    /// List what would be requeued; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Refused(#[from] Refused),
}

pub fn retry(args: &Args) -> ExitCode {
    super::report(requeue(args))
}

fn requeue(args: &Args) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let input = RetryDead {
        destination: args.destination.clone(),
        message_id: args.message,
        dry_run: args.dry_run,
    };
    let rows = retry_dead(&config, &super::actor(), &input).map_err(Refused)?;
    for r in &rows {
        println!(
            "message {:>8}  delivery {:>8}  to {}",
            r.message_id, r.outbox_id, r.destination
        );
    }
    let verb = if args.dry_run {
        "would be requeued"
    } else {
        "requeued"
    };
    println!("{} dead deliveries {verb}", rows.len());
    Ok(())
}
