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
//! the `rejected/` subdirectory.

use super::SourceContext;
use crate::config::{Endpoint, FileDropConfig};
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
            // Trying again cannot help: set it aside where a person will look.
            let rejected = path.parent().unwrap_or(Path::new(".")).join("rejected");
            let moved = tokio::fs::create_dir_all(&rejected).await.is_ok()
                && tokio::fs::rename(path, rejected.join(&name)).await.is_ok();
            tracing::error!(endpoint = source, file = %path.display(), error = %e, moved_to_rejected = moved, "file refused");
        }
    }
}
