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
