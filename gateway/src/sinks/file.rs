//! Writes each delivered payload as a file into a directory.
//!
//! The file name is derived from the outbox row, so a redelivery after a
//! crash rewrites the same file instead of adding a copy. A file appears
//! under its final name only once its bytes are on disk (write, fsync,
//! rename, fsync the directory), so a reader never sees half a message.

use super::{Delivery, Outcome, Sink};
use crate::config::FileSinkConfig;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct FileSink {
    dir: PathBuf,
    extension: String,
}

impl FileSink {
    pub fn new(config: &FileSinkConfig) -> Self {
        Self {
            dir: crate::config::resolve(&config.path),
            extension: config.extension.clone(),
        }
    }

    /// The file a delivery is written to.
    pub fn file_name(&self, d: &Delivery) -> PathBuf {
        self.dir.join(format!(
            "{:012}-{}.{}",
            d.message.id, d.outbox_id, self.extension
        ))
    }

    fn write(&self, d: &Delivery) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let target = self.file_name(d);
        let tmp = self.dir.join(format!(".{}.tmp", d.outbox_id));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&d.payload.to_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        sync_dir(&self.dir)?;
        Ok(target)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Sink for FileSink {
    fn max_batch(&self) -> usize {
        64
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        // File writes and fsyncs block: they run on the blocking pool, not
        // on the threads that serve connections.
        let sink = self.clone();
        let batch = batch.to_vec();
        let count = batch.len();
        tokio::task::spawn_blocking(move || sink.write_all(&batch))
            .await
            .unwrap_or_else(|e| {
                vec![
                    Outcome::Retryable {
                        error: format!("file writer failed: {e}"),
                        retry_after: None,
                    };
                    count
                ]
            })
    }
}

impl FileSink {
    fn write_all(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for d in batch {
            if matches!(outcomes.last(), Some(o) if !matches!(o, Outcome::Delivered { .. })) {
                outcomes.push(Outcome::NotAttempted);
                continue;
            }
            let outcome = match self.write(d) {
                Ok(path) => Outcome::Delivered {
                    response: Some(format!("written to {}", path.display())),
                },
                Err(e) => Outcome::Retryable {
                    error: format!("cannot write into {}: {e}", self.dir.display()),
                    retry_after: None,
                },
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::StoredMessage;
    use std::sync::Arc;

    fn delivery(id: i64, payload: &[u8]) -> Delivery {
        Delivery {
            outbox_id: id * 10,
            attempt: 1,
            lane: String::new(),
            message: Arc::new(StoredMessage {
                id,
                received_at: 0,
                envelope: ecko_message::Envelope {
                    source: "s".into(),
                    dedup_key: None,
                    message_type: "t".into(),
                    content_type: "c".into(),
                    control_id: None,
                    patient_id: None,
                    payload: payload.to_vec(),
                    ack: None,
                    hints: Default::default(),
                },
            }),
            payload: ecko_fhir::Payload::Bytes(payload.to_vec()),
        }
    }

    #[tokio::test]
    async fn each_payload_becomes_one_file_and_a_redelivery_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(&FileSinkConfig {
            path: dir.path().join("out"),
            extension: "hl7".into(),
        });
        let out = sink
            .deliver(&[delivery(1, b"one"), delivery(2, b"two")])
            .await;
        assert!(out.iter().all(|o| matches!(o, Outcome::Delivered { .. })));
        sink.deliver(&[delivery(1, b"one")]).await;
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["000000000001-10.hl7", "000000000002-20.hl7"]);
        assert_eq!(
            std::fs::read(dir.path().join("out/000000000002-20.hl7")).unwrap(),
            b"two"
        );
    }

    #[tokio::test]
    async fn an_unwritable_directory_is_a_retryable_failure_and_stops_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let sink = FileSink::new(&FileSinkConfig {
            path: blocker.join("sub"),
            extension: "msg".into(),
        });
        let out = sink.deliver(&[delivery(1, b"a"), delivery(2, b"b")]).await;
        assert!(matches!(out[0], Outcome::Retryable { .. }));
        assert_eq!(out[1], Outcome::NotAttempted);
    }
}
