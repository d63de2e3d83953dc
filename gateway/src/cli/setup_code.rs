//! `ecko-gateway setup-code`: the first run's one-time setup code, for the
//! person at the device who missed it in the log. Only the code goes to
//! standard output, so a script may take it; when there is none (setup done,
//! not started yet, loopback-only setup) the reason goes to standard error
//! and the exit code is 1.

use crate::config::{Config, ConfigErrors};
use crate::control::{config::data_dir, setup_code};
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
    #[error("reading the journal")]
    Journal(#[from] JournalError),
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("setup is done: the admin page has its first administrator; log in there")]
    Done,
    #[error("no setup code: `setup_from_loopback_only` is set, so setup needs none from the device itself (https://127.0.0.1:<port>/setup)")]
    LoopbackOnly,
    #[error("no setup code yet: the gateway makes one when it first starts with the admin page on and no user")]
    NotYet,
}

pub fn setup_code(args: &Args) -> ExitCode {
    match find(args) {
        Ok(code) => {
            println!("{code}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            super::print_failure(&e);
            ExitCode::FAILURE
        }
    }
}

fn find(args: &Args) -> Result<String, Error> {
    let config = Config::load(&args.config)?;
    let journal = crate::config::resolve(&config.journal.path);
    // No journal yet: no user either.
    if journal.exists() && JournalReader::open(&journal)?.admin_user_count()? > 0 {
        return Err(Error::Done);
    }
    if config.admin.setup_from_loopback_only {
        return Err(Error::LoopbackOnly);
    }
    let dir = data_dir(&config);
    setup_code::read(&dir)
        .map_err(|source| Error::Read {
            path: setup_code::path(&dir).display().to_string(),
            source,
        })?
        .ok_or(Error::NotYet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, admin: &str) -> Args {
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                "[journal]\npath = \"{}/journal.db\"\n[admin]\n{admin}\n",
                dir.display()
            ),
        )
        .unwrap();
        Args { config }
    }

    #[test]
    fn the_code_in_the_data_directory_is_the_one_shown() {
        let dir = tempfile::tempdir().unwrap();
        let args = config(dir.path(), "");
        assert!(matches!(find(&args), Err(Error::NotYet)));
        let (code, _) = setup_code::issue(dir.path()).unwrap();
        assert_eq!(find(&args).unwrap(), code);
    }

    #[test]
    fn with_loopback_only_setup_there_is_no_code_to_show() {
        let dir = tempfile::tempdir().unwrap();
        let args = config(dir.path(), "setup_from_loopback_only = true");
        setup_code::issue(dir.path()).unwrap();
        assert!(matches!(find(&args), Err(Error::LoopbackOnly)));
    }
}
