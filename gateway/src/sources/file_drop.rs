//! A directory watched for files: each file is one message.
//!
//! The file is the sender's copy. It is removed only after the message is
//! committed, so a crash between the commit and the removal leaves the file
//! in place; on the next pass it is recognised by its name and content
//! digest as a duplicate of the stored message and removed without being
//! queued twice. A file that cannot be taken now (journal full, disk full)
//! stays where it is and is tried again on the next pass. Files whose name
//! starts with `.` are ignored, so writers can create them under a temporary
//! name and rename them into place. A file no route accepts is moved into
//! the `rejected/` subdirectory, with a `<name>.reason` file beside it
//! saying why.
//!
//! An HL7 v2 file (by its content type, or because it starts with `MSH`)
//! is read before it is stored: bytes invalid in its character set (MSH-18)
//! would reach the hub as replacement characters, so unless the endpoint
//! says `on_invalid_text = "replace"` such a file is set aside in
//! `rejected/` and nothing is stored, as the MLLP listener answers `AE`.

use super::SourceContext;
use crate::config::{Endpoint, FileDropConfig, InvalidText};
use crate::journal::IngestError;
use ecko_message::Envelope;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub async fn run(endpoint: Endpoint, config: FileDropConfig, cx: SourceContext) {
    let dir = crate::config::resolve(&config.path);
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        tracing::error!(endpoint = %endpoint.name, dir = %dir.display(), error = %e, "cannot create the drop directory");
    }
    tracing::info!(endpoint = %endpoint.name, dir = %dir.display(), "watching for dropped files");
    loop {
        match sweep(&endpoint, &config, &dir, &cx).await {
            Ok(()) => cx.health.up(
                &endpoint.name,
                cx.journal.now_ms(),
                format!("watching {}", dir.display()),
            ),
            Err(e) => {
                cx.health.down(
                    &endpoint.name,
                    cx.journal.now_ms(),
                    format!("cannot read {}: {e}", dir.display()),
                );
                tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot read the drop directory");
            }
        }
        tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            _ = cx.heartbeat.sleep(config.poll_interval.0) => {}
        }
    }
    cx.health
        .down(&endpoint.name, cx.journal.now_ms(), "stopped");
}

async fn sweep(
    endpoint: &Endpoint,
    config: &FileDropConfig,
    dir: &Path,
    cx: &SourceContext,
) -> std::io::Result<()> {
    let mut files = pending_files(dir).await?;
    files.sort();
    // Ingest concurrently so that a burst of files shares commits.
    let mut tasks = tokio::task::JoinSet::new();
    for path in files {
        if cx.shutdown.is_cancelled() {
            break;
        }
        let name = endpoint.name.clone();
        let config = config.clone();
        let task_cx = cx.clone();
        tasks.spawn(async move { take(&name, &config, &path, &task_cx).await });
        while tasks.len() >= 256 {
            tasks.join_next().await;
            cx.heartbeat.beat();
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn pending_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type().await?.is_file() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

async fn take(source: &str, config: &FileDropConfig, path: &Path, cx: &SourceContext) {
    let payload = match tokio::fs::read(path).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(endpoint = source, file = %path.display(), error = %e, "cannot read dropped file");
            return;
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if config.on_invalid_text == InvalidText::Refuse {
        if let Some(reason) = invalid_hl7_text(&config.content_type, &payload) {
            tracing::error!(endpoint = source, file = %path.display(), %reason, "file holds bytes invalid in its character set; nothing stored");
            reject(source, path, &name, &reason).await;
            return;
        }
    }
    let digest = hex::encode(Sha256::digest(&payload));
    let message = Envelope {
        source: source.to_string(),
        dedup_key: Some(format!("{name}:{digest}")),
        message_type: config.message_type.clone(),
        content_type: config.content_type.clone(),
        control_id: Some(name.clone()),
        patient_id: None,
        payload,
        ack: None,
        ..Default::default()
    };
    match cx.ingest(message).await {
        Ok(receipt) => {
            if let Err(e) = tokio::fs::remove_file(path).await {
                tracing::warn!(endpoint = source, file = %path.display(), error = %e, "journalled, but cannot remove the file; it will be seen as a duplicate");
            }
            tracing::debug!(
                endpoint = source,
                message_id = receipt.message_id,
                duplicate = receipt.duplicate,
                "file journalled"
            );
        }
        Err(e @ (IngestError::JournalFull { .. } | IngestError::DiskFull { .. })) => {
            tracing::warn!(endpoint = source, file = %path.display(), error = %e, "file left in place until the journal can take it");
        }
        Err(e) if e.is_temporary() => {
            tracing::warn!(endpoint = source, file = %path.display(), error = %e, "file not taken now; it stays in place");
        }
        Err(e) => {
            tracing::error!(endpoint = source, file = %path.display(), error = %e, "file refused");
            reject(source, path, &name, &e.to_string()).await;
        }
    }
}

/// Where an HL7 v2 file holds bytes its character set does not allow, in
/// words (segment, field, charset; never the bytes, which may be patient
/// data). `None` for anything that is not a readable HL7 message: what
/// else is wrong with it is the transform's to report.
pub(super) fn invalid_hl7_text(content_type: &str, payload: &[u8]) -> Option<String> {
    use ecko_protocol::hl7::{Message, ParseOptions};
    let ct = content_type.to_ascii_lowercase();
    let start = payload
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(payload)
        .trim_ascii_start();
    if !(ct.contains("hl7") || ct.contains("er7") || start.starts_with(b"MSH")) {
        return None;
    }
    let message = Message::parse(start, &ParseOptions::default()).ok()?;
    let location = message.invalid_text()?;
    Some(format!(
        "{location}: bytes not valid in the character set {}",
        message.charset().hl7_name()
    ))
}

/// Trying again cannot help: the file is set aside where a person will
/// look, with the reason beside it.
async fn reject(source: &str, path: &Path, name: &str, reason: &str) {
    let rejected = path.parent().unwrap_or(Path::new(".")).join("rejected");
    let moved = tokio::fs::create_dir_all(&rejected).await.is_ok()
        && tokio::fs::rename(path, rejected.join(name)).await.is_ok();
    if moved {
        let note = rejected.join(format!("{name}.reason"));
        if let Err(e) = tokio::fs::write(&note, format!("{reason}\n")).await {
            tracing::warn!(endpoint = source, file = %note.display(), error = %e, "cannot write why the file was refused");
        }
    } else {
        tracing::error!(endpoint = source, file = %path.display(), "cannot move the refused file to rejected/; it stays in place");
    }
}

#[cfg(test)]
mod tests {
    use super::invalid_hl7_text;

    fn oru(charset: &str, name: &[u8]) -> Vec<u8> {
        let mut m = format!(
            "MSH|^~\\&|LAB|HOSP|HIS|HOSP|20260312101500||ORU^R01|C1|P|2.5.1||||||{charset}\rPID|1||P1||"
        )
        .into_bytes();
        m.extend_from_slice(name);
        m.extend_from_slice(b"\rOBX|1|NM|GLU||5.4\r");
        m
    }

    #[test]
    fn a_lone_byte_invalid_in_utf_8_is_named_by_segment_and_field() {
        let reason = invalid_hl7_text(
            "application/octet-stream",
            &oru("UNICODE UTF-8", b"M\xFCller"),
        );
        assert_eq!(
            reason.as_deref(),
            Some("PID-5 (segment 2): bytes not valid in the character set UNICODE UTF-8")
        );
        // Behind a byte order mark and a blank line, by content type too.
        let mut text = b"\xEF\xBB\xBF\n".to_vec();
        text.extend(oru("UNICODE UTF-8", b"M\xFCller"));
        assert!(invalid_hl7_text("x-application/hl7-v2+er7", &text).is_some());
    }

    #[test]
    fn valid_text_other_charsets_and_files_that_are_not_hl7_pass() {
        let utf8 = oru("UNICODE UTF-8", "Müller".as_bytes());
        assert_eq!(invalid_hl7_text("application/octet-stream", &utf8), None);
        // 0xFC is ü in ISO 8859-1.
        let latin1 = oru("8859/1", b"M\xFCller");
        assert_eq!(invalid_hl7_text("application/octet-stream", &latin1), None);
        assert_eq!(
            invalid_hl7_text("application/octet-stream", b"\xFF\xFE binary"),
            None
        );
        assert_eq!(
            invalid_hl7_text("text/csv", b"id;name\n1;M\xFCller\n"),
            None
        );
    }
}
