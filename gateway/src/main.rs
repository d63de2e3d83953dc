//! `ecko-gateway`: the command line. Parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ecko_gateway::app::{shutdown_signal, Gateway};
use ecko_gateway::config::Config;
use ecko_gateway::journal::JournalReader;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ecko-gateway", version, about = "Ecko Edge hospital gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file; print every problem with its location.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show queue depth and totals per destination from the journal.
    Status {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Manage the admin page's users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (asked for,
    /// without echo, on a terminal).
    Add {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value = "viewer", value_parser = ["admin", "operator", "viewer"])]
        role: String,
        name: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECKO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} endpoints, {} routes)",
                    file.display(),
                    c.endpoints.len(),
                    c.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ecko-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::User {
            command: UserCommand::Add { config, role, name },
        } => match user_add(&config, &role, &name) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ecko-gateway: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Status { config } => match status(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ecko-gateway: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::start(&config).await?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            journal = %gateway.journal.path().display(),
            endpoints = config.endpoints.len(),
            "gateway running"
        );
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        gateway.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn status(config: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = ecko_gateway::config::resolve(&config.journal.path);
    let reader =
        JournalReader::open(&path).with_context(|| format!("opening {}", path.display()))?;
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

fn user_add(config: &std::path::Path, role: &str, name: &str) -> anyhow::Result<()> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = read_password()?;
    ecko_gateway::admin::add_user(&config, name, role, &password)?;
    println!("user {name} added with role {role}");
    Ok(())
}

/// One line from stdin; on a terminal, asked for without echo.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        eprint!("password: ");
        let saved = tcgetattr(&stdin).context("reading terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
        let read = stdin.lock().read_line(&mut line);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        read.context("reading the password")?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
