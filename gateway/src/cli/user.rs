//! `ecko-gateway user add`: a user of the admin page made without the page,
//! e.g. the first administrator of a device nobody has opened it on yet.

use super::Refused;
use crate::config::{Config, ConfigErrors};
use crate::control::users::{add_offline, NewUser};
use ecko_hal::{Terminal, TerminalError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a user; the password is read from standard input (asked for,
    /// without echo, on a terminal).
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    #[arg(long, default_value = "viewer", value_parser = ["admin", "operator", "viewer"])]
    pub role: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Password(#[from] TerminalError),
    #[error(transparent)]
    Add(#[from] Refused),
}

pub async fn user(command: &Command, terminal: &dyn Terminal) -> ExitCode {
    match command {
        Command::Add(args) => super::report(add(args, terminal).await),
    }
}

async fn add(args: &AddArgs, terminal: &dyn Terminal) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let password = terminal.read_secret("password: ")?;
    let user = NewUser {
        name: args.name.clone(),
        role: args.role.clone(),
        password,
        confirm: None,
    };
    add_offline(&config, &super::actor(), &user)
        .await
        .map_err(Refused)?;
    println!("user {} added with role {}", args.name, args.role);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, name: &str) -> AddArgs {
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            format!("[journal]\npath = \"{}/journal.db\"\n", dir.display()),
        )
        .unwrap();
        AddArgs {
            config,
            role: "admin".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn the_password_read_from_the_terminal_is_the_one_the_user_gets() {
        let dir = tempfile::tempdir().unwrap();
        let terminal = ecko_hal::SimTerminal {
            secret: "a long enough pass".into(),
        };
        add(&args(dir.path(), "alice"), &terminal).await.unwrap();
        let journal = crate::journal::Journal::open(crate::journal::JournalOptions::new(
            dir.path().join("journal.db"),
        ))
        .unwrap();
        let user = journal.admin_user("alice").await.unwrap().unwrap();
        journal.close().await;
        assert_eq!(user.role, "admin");
        use argon2::PasswordVerifier;
        let hash = argon2::PasswordHash::new(&user.password_hash).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"a long enough pass", &hash)
            .is_ok());
    }

    #[tokio::test]
    async fn a_short_password_from_the_terminal_is_refused_before_the_journal_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let terminal = ecko_hal::SimTerminal {
            secret: "short".into(),
        };
        let e = add(&args(dir.path(), "bob"), &terminal).await.unwrap_err();
        assert!(super::super::with_causes(&e).contains("password"), "{e}");
        assert!(!dir.path().join("journal.db").exists());
    }
}
