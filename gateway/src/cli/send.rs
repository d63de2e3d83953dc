//! `ecko-gateway send`: HL7 v2 messages from files to an MLLP receiver,
//! exactly as the gateway's MLLP sender would deliver them, each answer
//! shown.

use crate::send::{SendError, Target};
use crate::sinks::Outcome;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The receiver, `host:port`.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: String,
    /// Use TLS, verifying the receiver against this CA bundle (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `--key` and `--ca`.
    #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the receiver's certificate must carry (default: the host).
    #[arg(long, requires = "ca")]
    pub server_name: Option<String>,
    /// How long to wait to connect and for each answer, e.g. `10s`.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub timeout: std::time::Duration,
    /// Files of one or more messages (MSH-delimited; MLLP frames and
    /// batch envelopes are tolerated).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no MSH segment, no message")]
    NoMessage(String),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// 0 when every message was accepted, 1 when not, 2 when they could not be
/// sent at all.
pub async fn send(args: &Args) -> ExitCode {
    let target = Target {
        connect: args.to.clone(),
        tls: args.ca.clone().map(|ca| crate::config::TlsSettings {
            cert: args.cert.clone(),
            key: args.key.clone(),
            ca: Some(ca),
            require_client_cert: false,
            server_name: args.server_name.clone(),
        }),
        timeout: args.timeout,
    };
    match send_files(&target, &args.files).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            super::print_failure(&e);
            ExitCode::from(2)
        }
    }
}

/// Sends every message of `files`; `Ok(true)` when all were accepted.
async fn send_files(target: &Target, files: &[PathBuf]) -> Result<bool, Error> {
    let mut messages = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|source| Error::Read {
            path: f.display().to_string(),
            source,
        })?;
        let found = crate::send::split_messages(&bytes);
        if found.is_empty() {
            return Err(Error::NoMessage(f.display().to_string()));
        }
        messages.extend(found);
    }
    let sent = crate::send::send(target, messages).await?;
    let mut accepted = 0;
    for s in &sent {
        let (verdict, text) = match &s.outcome {
            Outcome::Delivered { response } => {
                accepted += 1;
                ("accepted", response.clone().unwrap_or_default())
            }
            Outcome::Retryable { error, .. } => ("not accepted", error.clone()),
            Outcome::Permanent { error } => ("refused", error.clone()),
            Outcome::NotAttempted => ("not sent", String::new()),
        };
        println!(
            "{:<20} {:<12} {:>6} ms  {text}",
            s.control_id,
            verdict,
            s.took.as_millis()
        );
    }
    println!(
        "{accepted} of {} messages accepted by {}",
        sent.len(),
        target.connect
    );
    Ok(accepted == sent.len())
}
