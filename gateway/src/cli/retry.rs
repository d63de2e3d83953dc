//! `ecko-gateway retry`: dead deliveries back in the queue, beside a
//! running gateway (whose workers pick them up within a second) or not.

use crate::config::{Config, ConfigErrors};
use crate::journal::external::{retry_dead_at, DeadSelection};
use crate::journal::JournalError;
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
    #[error("`{0}` is not a destination endpoint of this configuration")]
    NotADestination(String),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub fn retry(args: &Args) -> ExitCode {
    super::report(requeue(args))
}

fn requeue(args: &Args) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    if let Some(d) = &args.destination {
        if !config.endpoint(d).is_some_and(|e| e.direction.sends()) {
            return Err(Error::NotADestination(d.clone()));
        }
    }
    // Recorded on each delivery: who put it back, as the audit of a
    // command run with sudo should show the person, not root.
    let actor = format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let selection = DeadSelection {
        destination: args.destination.clone(),
        message_id: args.message,
    };
    let path = crate::config::resolve(&config.journal.path);
    let rows = retry_dead_at(&path, &selection, &actor, args.dry_run)?;
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
