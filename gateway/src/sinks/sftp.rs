//! Uploads each delivered message as a file into a remote directory over
//! SFTP.
//!
//! A file appears under its final name only complete: it is written as
//! `.<name>.part`, flushed (`fsync@openssh.com` where the server offers
//! it), closed, and only then renamed, so a reader polling the directory
//! never takes half a message. The name is a minijinja template of the
//! message (`sinks::template`, as the `rest` sender's URL), so a
//! redelivery after a crash writes the same name; SFTP's rename does not
//! replace, so an existing file of that name is removed just before the
//! rename (the reader may miss it for that instant, never see it partial).
//!
//! One SSH session carries a batch. A refused host key, a refused login,
//! an unreadable key file and a denied permission need a person, and the
//! error says so, but they say nothing about the messages: those wait,
//! retried under the endpoint's policy with that error, until the pin, the
//! credentials or the permission are fixed (as the FHIR and REST senders
//! treat 401 and 403), never dead-lettered one per batch. A refused
//! connection, a timeout and a dropped session are retried the same way.
//! A name template that fails for a message makes that message dead with
//! the template's error: that one is about the message.

use super::template::{self, TemplateError, Templates};
use super::{Delivery, Outcome, Sink};
use crate::config::{Endpoint, SftpConfig};
use crate::ssh::{remote_path, Session, SshError, Target};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum SftpSinkError {
    #[error("`{key}`: {reason}")]
    Settings { key: &'static str, reason: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
}

pub struct SftpSink {
    target: Target,
    dir: String,
    templates: Templates,
}

impl SftpSink {
    pub fn new(endpoint: &Endpoint, config: &SftpConfig) -> Result<Self, SftpSinkError> {
        let target = Target::from_config(config, endpoint.timeout)
            .map_err(|(key, reason)| SftpSinkError::Settings { key, reason })?;
        let mut templates = Templates::new();
        templates.add("file_name", config.file_name.clone().unwrap_or_default())?;
        Ok(SftpSink {
            target,
            dir: config.path.clone(),
            templates,
        })
    }

    /// The remote file name for `d`, or why there is none.
    fn file_name(&self, d: &Delivery) -> Result<String, String> {
        let rendered = self.templates.render("file_name", &template::context(d))?;
        checked_name(&rendered)
    }

    async fn upload(&self, s: &Session, name: &str, bytes: &[u8]) -> Result<String, SshError> {
        let target = remote_path(&self.dir, name);
        let part = remote_path(&self.dir, &format!(".{name}.part"));
        let mut file = s
            .sftp
            .create(part.as_str())
            .await
            .map_err(|e| SshError::sftp(&part, e))?;
        let io = |e: std::io::Error| SshError::Sftp {
            path: part.clone(),
            reason: e.to_string(),
            permission_denied: e.kind() == std::io::ErrorKind::PermissionDenied,
        };
        file.write_all(bytes).await.map_err(io)?;
        file.sync_all()
            .await
            .map_err(|e| SshError::sftp(&part, e))?;
        file.close().await.map_err(io)?;
        match s.sftp.rename(part.as_str(), target.as_str()).await {
            Ok(()) => Ok(target),
            Err(first) => {
                // SFTP v3 renames refuse an existing target: a redelivery.
                let exists = s.sftp.try_exists(target.as_str()).await.unwrap_or(false);
                if !exists {
                    return Err(SshError::sftp(&target, first));
                }
                s.sftp
                    .remove_file(target.as_str())
                    .await
                    .map_err(|e| SshError::sftp(&target, e))?;
                s.sftp
                    .rename(part.as_str(), target.as_str())
                    .await
                    .map_err(|e| SshError::sftp(&target, e))?;
                Ok(target)
            }
        }
    }
}

/// A file name as the template rendered it, if it is one: no directory
/// part, not hidden (the uploads in progress are), no control characters.
fn checked_name(rendered: &str) -> Result<String, String> {
    let name = rendered.trim();
    if name.is_empty() {
        return Err("the file name template rendered an empty name".into());
    }
    if name.contains('/')
        || name == ".."
        || name.starts_with('.')
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "the file name template rendered {name:?}: a file name has no `/`, control characters or leading `.`"
        ));
    }
    Ok(name.to_string())
}

fn failed(e: &SshError) -> Outcome {
    let error = if e.is_permanent() {
        format!("{e}; the messages wait until this is fixed")
    } else {
        e.to_string()
    };
    Outcome::Retryable {
        error,
        retry_after: None,
    }
}

impl Sink for SftpSink {
    fn max_batch(&self) -> usize {
        32
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let session = match Session::open(&self.target).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(host = %self.target.host, error = %e, "sftp upload: no session");
                let mut out = vec![Outcome::NotAttempted; batch.len()];
                if let Some(first) = out.first_mut() {
                    *first = failed(&e);
                }
                return out;
            }
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for d in batch {
            if matches!(outcomes.last(), Some(o) if !matches!(o, Outcome::Delivered { .. })) {
                outcomes.push(Outcome::NotAttempted);
                continue;
            }
            let outcome = match self.file_name(d) {
                Err(error) => Outcome::Permanent { error },
                Ok(name) => match self.upload(&session, &name, &d.payload.to_bytes()).await {
                    Ok(path) => Outcome::Delivered {
                        response: Some(format!("uploaded to {path}")),
                    },
                    Err(e) => failed(&e),
                },
            };
            outcomes.push(outcome);
        }
        session.close().await;
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::{Envelope, StoredMessage};
    use std::sync::Arc;

    fn sink(file_name: &str) -> SftpSink {
        let text = format!(
            "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"up\"\ntype = \"sftp\"\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword = \"pw\"\npath = \"/out\"\nhost_key_sha256 = \"SHA256:PFot+v/UF30LdRkZ8FGu4cP36uaux3z1sdqyowoHo9c\"\nfile_name = {file_name:?}\n"
        );
        let config = crate::config::Config::parse(&text, "t.toml", |_| None).unwrap();
        let e = &config.endpoints[0];
        let crate::config::EndpointKind::Sftp(c) = &e.kind else {
            unreachable!()
        };
        SftpSink::new(e, c).unwrap()
    }

    fn delivery(id: i64, control_id: Option<&str>, payload: &[u8]) -> Delivery {
        Delivery {
            outbox_id: id * 10,
            attempt: 1,
            lane: String::new(),
            message: Arc::new(StoredMessage {
                id,
                received_at: 0,
                envelope: Envelope {
                    source: "lab".into(),
                    message_type: "ORU^R01".into(),
                    control_id: control_id.map(str::to_string),
                    payload: payload.to_vec(),
                    ..Default::default()
                },
            }),
            payload: ecko_fhir::Payload::Bytes(payload.to_vec()),
        }
    }

    #[test]
    fn the_file_name_is_rendered_from_the_message() {
        let s = sink("{{ msg.source }}-{{ msg.control_id }}-{{ msg.id }}.hl7");
        assert_eq!(
            s.file_name(&delivery(7, Some("C42"), b"x")).unwrap(),
            "lab-C42-7.hl7"
        );
        let s = sink("{{ json.id }}.json");
        assert_eq!(
            s.file_name(&delivery(1, None, br#"{"id":"abc"}"#)).unwrap(),
            "abc.json"
        );
    }

    #[test]
    fn a_name_with_a_directory_part_a_leading_dot_or_nothing_is_refused() {
        let s = sink("{{ msg.control_id }}");
        for bad in ["../etc/passwd", "a/b", ".hidden", "", "..", "a\nb"] {
            let e = s.file_name(&delivery(1, Some(bad), b"x")).unwrap_err();
            assert!(e.contains("file name template rendered"), "{bad:?}: {e}");
        }
        assert_eq!(checked_name("  a.hl7 \n").unwrap(), "a.hl7");
    }
}
