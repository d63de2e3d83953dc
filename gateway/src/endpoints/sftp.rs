//! `sftp`: a remote directory polled for files (`pattern`), or uploaded
//! into, one file per delivered message (`file_name`).
//!
//! One type, like `rest`: the server, its pinned host key and the login
//! are the same keys for both roles, and the role follows from which of
//! `pattern` and `file_name` is given.

use super::form::{f, join, Field, Kind, DELIVERY, TIMEOUT};
use super::{built, EndpointType, PreparedWorker, Role, SourceStart, WorkerStart};
use crate::app::RunError;
use crate::config::{Endpoint, EndpointKind, SettingsInput, SftpConfig};
use crate::probe::{ProbeOptions, Steps};
use crate::sinks::sftp::SftpSink;
use crate::ssh::{Session, SshError, Target};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

pub struct Sftp;

fn settings(kind: &EndpointKind) -> &SftpConfig {
    match kind {
        EndpointKind::Sftp(c) => c,
        _ => unreachable!("an sftp endpoint has sftp settings"),
    }
}

const SFTP: &[Field] = &[
    f("host", "Server (name or address)", Kind::Text, ""),
    f("port", "Port", Kind::Integer, "22"),
    f("user", "User", Kind::Text, ""),
    f(
        "host_key_sha256",
        "Host key fingerprint (SHA256:..., as ssh-keygen -lf prints it)",
        Kind::Text,
        "",
    ),
    f(
        "host_key",
        "Host key as a known_hosts line (instead of the fingerprint)",
        Kind::Text,
        "",
    ),
    f("password", "Password", Kind::Secret, ""),
    f(
        "private_key",
        "Private key file (instead of a password)",
        Kind::Text,
        "",
    ),
    f("passphrase", "Private key passphrase", Kind::Secret, ""),
    f("path", "Remote directory", Kind::Text, ""),
    f(
        "pattern",
        "File names taken, e.g. *.hl7 (polling source)",
        Kind::Text,
        "",
    ),
    f("interval", "Poll interval (source)", Kind::Duration, "10s"),
    f(
        "partial_suffix",
        "Suffix of files still being written (source)",
        Kind::Text,
        ".part",
    ),
    f(
        "done_dir",
        "Move taken files to (source; empty: delete)",
        Kind::Text,
        "",
    ),
    f(
        "error_dir",
        "Move refused files to (source; empty: leave)",
        Kind::Text,
        "",
    ),
    f(
        "max_file_size",
        "Largest file (source)",
        Kind::Size,
        "64 MiB",
    ),
    f(
        "message_type",
        "Message type recorded (source)",
        Kind::Text,
        "file",
    ),
    f(
        "content_type",
        "Content type recorded (source)",
        Kind::Text,
        "application/octet-stream",
    ),
    f(
        "on_invalid_text",
        "HL7 text invalid in its charset (source)",
        Kind::Choice(&["refuse", "replace"]),
        "refuse",
    ),
    f(
        "file_name",
        "File name template, e.g. {{ msg.id }}.hl7 (uploading destination)",
        Kind::Text,
        "",
    ),
];

impl EndpointType for Sftp {
    fn name(&self) -> &'static str {
        "sftp"
    }

    fn parse(&self, input: &mut SettingsInput<'_, '_>) -> Option<EndpointKind> {
        input.read().map(EndpointKind::Sftp)
    }

    fn problems(&self, kind: &EndpointKind) -> Vec<(&'static str, String)> {
        let c = settings(kind);
        let mut out = c.problems();
        if out.is_empty() {
            // The host key's syntax, and the name template's.
            if let Err(problem) = Target::from_config(c, crate::config::DEFAULT_TIMEOUT) {
                out.push(problem);
            }
            if let Some(name) = &c.file_name {
                let mut t = crate::sinks::template::Templates::new();
                if let Err(e) = t.add("file_name", name.clone()) {
                    out.push(("file_name", e.to_string()));
                }
            }
        }
        out
    }

    fn form(&self) -> Vec<Field> {
        join(&[SFTP, &[TIMEOUT], DELIVERY])
    }

    fn role(&self, kind: &EndpointKind) -> Role {
        if settings(kind).is_source() {
            Role::Source
        } else {
            Role::Destination
        }
    }

    fn preflight(&self, endpoint: &Endpoint) -> Option<String> {
        let c = settings(&endpoint.kind);
        let path = c.private_key.as_ref()?;
        crate::ssh::check_key(&crate::config::resolve(path), c.passphrase.as_deref())
            .err()
            .map(|e| e.to_string())
    }

    fn probe<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        steps: &'a mut Steps,
        _options: ProbeOptions,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let c = settings(&endpoint.kind);
            let target = match Target::from_config(c, endpoint.timeout) {
                Ok(t) => t,
                Err((key, reason)) => return Some(format!("`{key}`: {reason}")),
            };
            let session = steps
                .run("SSH login (host key pinned) and SFTP", async {
                    let s = Session::open(&target).await.map_err(|e| e.to_string())?;
                    let detail = format!("logged in to {}:{} as {}", c.host, c.port, c.user);
                    Ok((s, detail))
                })
                .await?;
            steps
                .run("List the remote directory", async {
                    let n = session
                        .sftp
                        .read_dir(c.path.as_str())
                        .await
                        .map_err(|e| SshError::sftp(&c.path, e).to_string())?
                        .count();
                    Ok(((), format!("{} holds {n} entries", c.path)))
                })
                .await;
            session.close().await;
            Some("Nothing is downloaded, moved or uploaded by the check.".into())
        })
    }

    fn destination(
        &self,
        endpoint: &Endpoint,
        start: WorkerStart,
    ) -> Result<PreparedWorker, RunError> {
        built(
            endpoint,
            SftpSink::new(endpoint, settings(&endpoint.kind)),
            start,
        )
    }

    fn source<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        start: SourceStart,
    ) -> BoxFuture<'a, Result<JoinHandle<()>, RunError>> {
        let config = settings(&endpoint.kind).clone();
        Box::pin(async move {
            Ok(tokio::spawn(crate::sources::sftp::run(
                endpoint.clone(),
                config,
                start.cx,
            )))
        })
    }
}
