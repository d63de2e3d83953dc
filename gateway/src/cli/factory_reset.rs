//! `ecko-gateway factory-reset --config FILE [--yes]`: the factory reset of
//! a stopped gateway (see [`crate::factory_reset`] for what is wiped and
//! kept). It says what it will wipe and keep and, on a terminal, asks for
//! `reset` to be typed; without a terminal it needs `--yes`. A running
//! gateway holds its journal's lock: reset that one from its admin page,
//! or stop it first. Exit 0 when reset, 1 when refused or failed (nothing
//! wiped unless it says so), 2 when the configuration does not load.

use crate::config::Config;
use crate::factory_reset::{self, Plan, ResetError};
use ecko_hal::Terminal;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Reset without asking (for scripts).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Reset(#[from] ResetError),
    #[error("{0}: stop it first (systemctl stop ecko-gateway), or reset it from its admin page")]
    Running(String),
    #[error("not on a terminal, so nobody can confirm: pass --yes to reset without asking")]
    NotConfirmed,
    #[error("not confirmed: nothing was changed")]
    Declined,
    #[error("cannot read the answer")]
    Ask(#[source] std::io::Error),
}

pub fn factory_reset(args: &Args, terminal: &dyn Terminal) -> ExitCode {
    match factory_reset::finish_pending(&args.config) {
        Ok(Some(plan)) => {
            println!(
                "an interrupted factory reset (asked by {}) is finished: {} is reset",
                plan.requested_by,
                plan.config_file.display()
            );
            return ExitCode::SUCCESS;
        }
        Ok(None) => {}
        Err(e) => return super::report(Err(e)),
    }
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    super::report(reset(&config, args.yes, terminal))
}

fn reset(config: &Config, yes: bool, terminal: &dyn Terminal) -> Result<(), Error> {
    let journal = crate::config::resolve(&config.journal.path);
    // Held until the reset is done: no gateway starts on a half-wiped box.
    let _lock = crate::journal::lock_exclusively(&journal).map_err(Error::Running)?;
    let plan = Plan::for_config(config, &super::actor().name)?;
    describe(&plan);
    if !yes {
        confirm(terminal)?;
    }
    factory_reset::perform(&plan)?;
    println!(
        "reset: {} is the default configuration; the next start makes a new setup code",
        plan.config_file.display()
    );
    Ok(())
}

fn describe(plan: &Plan) {
    eprintln!("factory reset of {}", plan.config_file.display());
    eprintln!("wiped (where present):");
    for p in &plan.wipe {
        eprintln!("  {}", p.display());
    }
    eprintln!("kept:");
    for p in &plan.kept {
        eprintln!("  {}", p.display());
    }
    eprintln!("  the [hub] (without [hub.commands]), [update] and [service] sections");
}

fn confirm(terminal: &dyn Terminal) -> Result<(), Error> {
    if !terminal.stderr_is_terminal() {
        return Err(Error::NotConfirmed);
    }
    eprint!("type `reset` to wipe the journal and the configuration: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(Error::Ask)?;
    if line.trim() == "reset" {
        Ok(())
    } else {
        Err(Error::Declined)
    }
}
