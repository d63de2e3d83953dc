//! A remote directory polled over SFTP: each file is one message.
//!
//! The remote file is the sender's copy, as a dropped file is for
//! `file-drop`: it is deleted (or moved to `done_dir`) only after its
//! message committed. A crash between the commit and the delete leaves it
//! in place; the next poll downloads it again and the journal knows it by
//! its duplicate key (name and content digest, as `file-drop` sets it), so
//! it is removed without being queued twice.
//!
//! A file still being written is left alone: one whose name starts with
//! `.` or ends with `partial_suffix`, and one not yet seen at the same size
//! and modification time by the previous listing, `interval` earlier. A new
//! file therefore waits one interval before it is taken. A file whose
//! download does not come to the size listed is left for the next poll.
//!
//! A file that cannot be taken (no route accepts it, bytes invalid in its
//! HL7 character set, over `max_file_size`) is moved to `error_dir` with a
//! `<name>.reason` file beside it; without `error_dir` it stays where it is
//! and is logged once, not downloaded again until it changes. A file the
//! journal cannot take now (full) stays for the next poll.

use super::SourceContext;
use crate::config::{Endpoint, InvalidText, SftpConfig};
use crate::journal::IngestError;
use crate::ssh::{remote_path, Session, SshError, Target};
use ecko_message::Envelope;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use tokio::io::AsyncWriteExt;

/// What a listing showed of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seen {
    pub size: u64,
    pub mtime: Option<u32>,
}

/// The files of `now` that the previous listing saw exactly so: they
/// stopped changing for at least one interval.
pub fn stable(previous: &HashMap<String, Seen>, now: &HashMap<String, Seen>) -> Vec<String> {
    let mut out: Vec<String> = now
        .iter()
        .filter(|(name, seen)| previous.get(*name) == Some(seen))
        .map(|(name, _)| name.clone())
        .collect();
    out.sort();
    out
}

/// Whether a listed name is one of the endpoint's files, and complete.
pub fn wanted(name: &str, pattern: &str, partial_suffix: &str) -> bool {
    !name.starts_with('.')
        && (partial_suffix.is_empty() || !name.ends_with(partial_suffix))
        && ecko_protocol::dicom::worklist::wildcard(pattern, name)
}

struct Poller {
    endpoint: Endpoint,
    config: SftpConfig,
    target: Target,
    previous: HashMap<String, Seen>,
    /// Files refused and left in place (no `error_dir`), as they were.
    refused: HashSet<(String, Seen)>,
}

pub async fn run(endpoint: Endpoint, config: SftpConfig, cx: SourceContext) {
    let target = match Target::from_config(&config, endpoint.timeout) {
        Ok(t) => t,
        Err((key, reason)) => {
            tracing::error!(endpoint = %endpoint.name, key, %reason, "sftp source cannot start");
            cx.health.down(
                &endpoint.name,
                cx.journal.now_ms(),
                format!("`{key}`: {reason}"),
            );
            return;
        }
    };
    let place = format!("{}:{}{}", config.host, config.port, config.path);
    tracing::info!(endpoint = %endpoint.name, %place, "polling the remote directory");
    let interval = config.interval.0;
    let mut poller = Poller {
        endpoint,
        config,
        target,
        previous: HashMap::new(),
        refused: HashSet::new(),
    };
    loop {
        match poller.poll(&cx).await {
            Ok(()) => cx.health.up(
                &poller.endpoint.name,
                cx.journal.now_ms(),
                format!("polling {place}"),
            ),
            Err(e) => {
                cx.health
                    .down(&poller.endpoint.name, cx.journal.now_ms(), e.to_string());
                if e.is_permanent() {
                    // A host key or login refused: nothing is read until
                    // a person fixes it, and the log says so each poll.
                    tracing::error!(endpoint = %poller.endpoint.name, error = %e, "cannot poll the remote directory");
                } else {
                    tracing::warn!(endpoint = %poller.endpoint.name, error = %e, "cannot poll the remote directory");
                }
            }
        }
        tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            _ = cx.heartbeat.sleep(interval) => {}
        }
    }
    cx.health
        .down(&poller.endpoint.name, cx.journal.now_ms(), "stopped");
}

impl Poller {
    async fn poll(&mut self, cx: &SourceContext) -> Result<(), SshError> {
        let session = Session::open(&self.target).await?;
        let result = self.poll_in(&session, cx).await;
        session.close().await;
        result
    }

    async fn poll_in(&mut self, s: &Session, cx: &SourceContext) -> Result<(), SshError> {
        let dir = &self.config.path;
        let pattern = self.config.pattern.as_deref().unwrap_or("*");
        let entries = s
            .sftp
            .read_dir(dir.as_str())
            .await
            .map_err(|e| SshError::sftp(dir, e))?;
        let now: HashMap<String, Seen> = entries
            .filter(|e| e.file_type().is_file())
            .filter(|e| wanted(&e.file_name(), pattern, &self.config.partial_suffix))
            .map(|e| {
                let m = e.metadata();
                (
                    e.file_name(),
                    Seen {
                        size: m.size.unwrap_or(0),
                        mtime: m.mtime,
                    },
                )
            })
            .collect();
        let ready = stable(&self.previous, &now);
        self.refused
            .retain(|(name, seen)| now.get(name) == Some(seen));
        for name in ready {
            if cx.shutdown.is_cancelled() {
                break;
            }
            let seen = now[&name];
            if !self.refused.contains(&(name.clone(), seen)) {
                self.take(s, &name, seen, cx).await;
            }
            cx.heartbeat.beat();
        }
        self.previous = now;
        Ok(())
    }

    async fn take(&mut self, s: &Session, name: &str, seen: Seen, cx: &SourceContext) {
        let source = self.endpoint.name.as_str();
        let path = remote_path(&self.config.path, name);
        if seen.size > self.config.max_file_size.0 {
            let reason = format!(
                "{} bytes, over `max_file_size` ({} bytes)",
                seen.size, self.config.max_file_size.0
            );
            tracing::error!(endpoint = source, file = %path, %reason, "remote file too large; not downloaded");
            self.set_aside(s, name, seen, &reason).await;
            return;
        }
        let payload = match s.sftp.read(path.as_str()).await {
            Ok(p) => p,
            Err(e) if SshError::is_no_such_file(&e) => {
                tracing::debug!(endpoint = source, file = %path, "remote file gone before it was read");
                return;
            }
            Err(e) => {
                tracing::warn!(endpoint = source, file = %path, error = %e, "cannot download the remote file; tried again next poll");
                return;
            }
        };
        if payload.len() as u64 != seen.size {
            tracing::info!(endpoint = source, file = %path, listed = seen.size, read = payload.len(), "remote file changed while read; taken once it is stable");
            return;
        }
        if self.config.on_invalid_text == InvalidText::Refuse {
            if let Some(reason) =
                super::file_drop::invalid_hl7_text(&self.config.content_type, &payload)
            {
                tracing::error!(endpoint = source, file = %path, %reason, "remote file holds bytes invalid in its character set; nothing stored");
                self.set_aside(s, name, seen, &reason).await;
                return;
            }
        }
        let digest = hex::encode(Sha256::digest(&payload));
        let message = Envelope {
            source: source.to_string(),
            dedup_key: Some(format!("{name}:{digest}")),
            message_type: self.config.message_type.clone(),
            content_type: self.config.content_type.clone(),
            control_id: Some(name.to_string()),
            payload,
            ..Default::default()
        };
        match cx.ingest(message).await {
            Ok(receipt) => {
                tracing::debug!(
                    endpoint = source,
                    message_id = receipt.message_id,
                    duplicate = receipt.duplicate,
                    "remote file journalled"
                );
                if let Err(e) = self.finish(s, name).await {
                    tracing::warn!(endpoint = source, file = %path, error = %e, "journalled, but cannot remove the remote file; it will be seen as a duplicate");
                }
            }
            Err(e)
                if e.is_temporary()
                    || matches!(
                        e,
                        IngestError::JournalFull { .. } | IngestError::DiskFull { .. }
                    ) =>
            {
                tracing::warn!(endpoint = source, file = %path, error = %e, "remote file left in place until the journal can take it");
            }
            Err(e) => {
                tracing::error!(endpoint = source, file = %path, error = %e, "remote file refused");
                self.set_aside(s, name, seen, &e.to_string()).await;
            }
        }
    }

    /// After the commit: the file moved to `done_dir`, or deleted.
    async fn finish(&self, s: &Session, name: &str) -> Result<(), SshError> {
        let path = remote_path(&self.config.path, name);
        match &self.config.done_dir {
            Some(done) => move_replacing(s, &path, &remote_path(done, name)).await,
            None => s
                .sftp
                .remove_file(path.as_str())
                .await
                .map_err(|e| SshError::sftp(&path, e)),
        }
    }

    /// A file trying again cannot help: into `error_dir` with its reason,
    /// or left alone until it changes.
    async fn set_aside(&mut self, s: &Session, name: &str, seen: Seen, reason: &str) {
        let source = self.endpoint.name.as_str();
        let path = remote_path(&self.config.path, name);
        let Some(error_dir) = &self.config.error_dir else {
            tracing::error!(endpoint = source, file = %path, "no `error_dir`: the refused file stays in place and is not read again until it changes");
            self.refused.insert((name.to_string(), seen));
            return;
        };
        if let Err(e) = move_replacing(s, &path, &remote_path(error_dir, name)).await {
            tracing::error!(endpoint = source, file = %path, error = %e, "cannot move the refused file to `error_dir`; it stays in place");
            self.refused.insert((name.to_string(), seen));
            return;
        }
        let note = remote_path(error_dir, &format!("{name}.reason"));
        let written = async {
            let mut f = s
                .sftp
                .create(note.as_str())
                .await
                .map_err(|e| e.to_string())?;
            f.write_all(format!("{reason}\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            f.close().await.map_err(|e| e.to_string())
        };
        if let Err(e) = written.await {
            tracing::warn!(endpoint = source, file = %note, error = %e, "cannot write why the file was refused");
        }
    }
}

/// Renames `from` to `to`, replacing a file already at `to` (SFTP v3
/// renames refuse an existing target).
async fn move_replacing(s: &Session, from: &str, to: &str) -> Result<(), SshError> {
    if s.sftp.rename(from, to).await.is_ok() {
        return Ok(());
    }
    if s.sftp.try_exists(to).await.unwrap_or(false) {
        s.sftp
            .remove_file(to)
            .await
            .map_err(|e| SshError::sftp(to, e))?;
    }
    s.sftp
        .rename(from, to)
        .await
        .map_err(|e| SshError::sftp(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[(&str, u64, u32)]) -> HashMap<String, Seen> {
        files
            .iter()
            .map(|&(n, size, t)| {
                (
                    n.to_string(),
                    Seen {
                        size,
                        mtime: Some(t),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_file_is_taken_only_once_two_listings_saw_it_unchanged() {
        let first = listing(&[("a.hl7", 10, 1), ("b.hl7", 5, 1)]);
        // Seen for the first time: nothing is ready.
        assert!(stable(&HashMap::new(), &first).is_empty());
        // `a` grew, `b` did not, `c` is new.
        let second = listing(&[("a.hl7", 20, 2), ("b.hl7", 5, 1), ("c.hl7", 1, 2)]);
        assert_eq!(stable(&first, &second), ["b.hl7"]);
        // `a` stopped growing; `c` was rewritten at the same size.
        let third = listing(&[("a.hl7", 20, 2), ("c.hl7", 1, 3)]);
        assert_eq!(stable(&second, &third), ["a.hl7"]);
    }

    #[test]
    fn hidden_and_partial_names_and_other_patterns_are_left_alone() {
        assert!(wanted("r1.hl7", "*.hl7", ".part"));
        assert!(!wanted("r1.hl7.part", "*", ".part"));
        assert!(!wanted(".r1.hl7.part", "*", ""));
        assert!(!wanted(".r1.hl7", "*.hl7", ".part"));
        assert!(!wanted("r1.csv", "*.hl7", ".part"));
        assert!(wanted("r1.hl7.part", "*", ""));
        assert!(wanted("LAB_07.txt", "LAB_??.txt", ".part"));
    }
}
