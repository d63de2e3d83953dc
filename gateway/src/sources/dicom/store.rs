//! Objects as files: written under a temporary name while they arrive,
//! then made durable and given their final name before the journal hears
//! of them.
//!
//! `<store>/.incoming/<n>.part` while the PDVs arrive (hashed as they are
//! written), then fsync, then renamed to
//! `<store>/<study uid>/<sop instance uid>.<sha256 prefix>.dcm` and both
//! directories fsynced. The name carries the content's hash, so the same
//! object sent again lands on the same name (and the second copy is thrown
//! away), while the same SOP instance with other content gets a name of
//! its own beside the first: nothing is overwritten. A crash leaves at most
//! `.part` files, removed when the endpoint starts, and final files the
//! journal may not know (the sender got no success for them and sends
//! again).
//!
//! # Giving space back
//!
//! A file lives as long as a message of its endpoint carries its SOP
//! instance UID: once retention has purged the last one (delivered
//! everywhere and older than the retention period), [`ObjectStore::sweep`]
//! deletes the file; it also takes files a crash left without a message.
//! Only files older than a grace period are looked at, and the sweep and
//! the storing of an object exclude each other ([`ObjectStore::hold`]): a
//! resend that finds its file already there and is journalled against it
//! can never have that file deleted under it.

use ecko_protocol::dicom::{part10, uids, InstanceSummary, SummaryError};
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::AsyncWriteExt;

pub struct ObjectStore {
    root: PathBuf,
    next: AtomicU64,
    /// Held shared while an object is placed and journalled, exclusively
    /// while the sweep decides and deletes.
    placing: tokio::sync::RwLock<()>,
}

/// One object being received.
pub struct Incoming {
    tmp: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
}

/// An object durable under its final name.
pub struct Stored {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub summary: InstanceSummary,
    /// The file was already there (the same object received before).
    pub existed: bool,
    /// Another file holds the same SOP instance with other content.
    pub other_version: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot write the object: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Header(#[from] part10::HeaderError),
    #[error("the data set cannot be read: {0}")]
    Unreadable(#[from] SummaryError),
}

impl StoreError {
    /// A full disk clears by itself; an object that cannot be read does not.
    pub fn is_resources(&self) -> bool {
        matches!(self, StoreError::Io(_) | StoreError::Header(_))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A UID usable as a file name: digits and dots only; anything else is
/// replaced by its hash.
fn file_part(uid: &str) -> String {
    if uids::is_valid_uid(uid) && !uid.starts_with('.') {
        uid.to_string()
    } else {
        format!("x{}", &hex::encode(Sha256::digest(uid.as_bytes()))[..32])
    }
}

impl ObjectStore {
    /// Opens the store at `root`, removing what a crash left half written.
    pub fn open(root: PathBuf) -> std::io::Result<ObjectStore> {
        let incoming = root.join(".incoming");
        std::fs::create_dir_all(&incoming)?;
        for entry in std::fs::read_dir(&incoming)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(ObjectStore {
            root,
            next: AtomicU64::new(0),
            placing: tokio::sync::RwLock::new(()),
        })
    }

    /// Keeps the sweep away while an object is placed and journalled.
    pub async fn hold(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.placing.read().await
    }

    /// Deletes the files older than `grace` whose SOP instance no message
    /// of `source` carries any more; returns how many.
    pub async fn sweep(
        &self,
        journal: &crate::journal::Journal,
        source: &str,
        grace: std::time::Duration,
    ) -> Result<usize, crate::journal::JournalError> {
        let root = self.root.clone();
        let candidates = tokio::task::spawn_blocking(move || old_files(&root, grace))
            .await
            .unwrap_or_default();
        let mut deleted = 0;
        for chunk in candidates.chunks(500) {
            let _exclusive = self.placing.write().await;
            let uids: Vec<String> = chunk.iter().map(|(uid, _)| uid.clone()).collect();
            let kept = journal.control_ids_kept(source, uids).await?;
            for (uid, path) in chunk {
                if !kept.contains(uid) && std::fs::remove_file(path).is_ok() {
                    deleted += 1;
                    if let Some(dir) = path.parent() {
                        // Only succeeds once the study's directory is empty.
                        let _ = std::fs::remove_dir(dir);
                    }
                }
            }
        }
        Ok(deleted)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts an object: the Part 10 header is written at once.
    pub async fn begin(
        &self,
        sop_class: &str,
        sop_instance: &str,
        transfer_syntax: &str,
        calling_ae: &str,
    ) -> Result<Incoming, StoreError> {
        let header = part10::file_header(sop_class, sop_instance, transfer_syntax, calling_ae)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(".incoming")
            .join(format!("{}-{n}.part", std::process::id()));
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(&header).await?;
        let mut hasher = Sha256::new();
        hasher.update(&header);
        Ok(Incoming {
            tmp,
            file,
            hasher,
            size: header.len() as u64,
        })
    }
}

impl Incoming {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(data).await?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Throws the object away.
    pub async fn discard(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }

    /// Makes the object durable under its final name, after checking its
    /// data set is the one the request announced.
    pub async fn finish(
        mut self,
        store: &ObjectStore,
        sop_class: &str,
        sop_instance: &str,
    ) -> Result<Stored, StoreError> {
        let done = async {
            self.file.flush().await?;
            self.file.sync_all().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = done {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(e);
        }
        drop(self.file);
        let sha256 = hex::encode(self.hasher.finalize());
        let tmp = self.tmp.clone();
        let root = store.root.clone();
        let (class, instance, size) = (sop_class.to_string(), sop_instance.to_string(), self.size);
        let placed = tokio::task::spawn_blocking(move || {
            place(&root, &tmp, &class, &instance, size, sha256)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))));
        if placed.is_err() {
            let _ = tokio::fs::remove_file(&self.tmp).await;
        }
        placed
    }
}

/// `(SOP instance UID, path)` of the stored files not modified for `grace`.
fn old_files(root: &Path, grace: std::time::Duration) -> Vec<(String, PathBuf)> {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut out = Vec::new();
    let Ok(studies) = std::fs::read_dir(root) else {
        return out;
    };
    for study in studies.flatten() {
        if study.file_name() == ".incoming" || !study.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(study.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            // <uid>.<16 hex>.dcm; names made from a hash are never swept.
            let Some(stem) = name.strip_suffix(".dcm") else {
                continue;
            };
            let Some((uid, _hash)) = stem.rsplit_once('.') else {
                continue;
            };
            if !uids::is_valid_uid(uid) {
                continue;
            }
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t <= cutoff);
            if old {
                out.push((uid.to_string(), file.path()));
            }
        }
    }
    out
}

fn place(
    root: &Path,
    tmp: &Path,
    sop_class: &str,
    sop_instance: &str,
    size: u64,
    sha256: String,
) -> Result<Stored, StoreError> {
    let mut f = std::fs::File::open(tmp)?;
    f.seek(SeekFrom::Start(part10::PREAMBLE_LEN as u64))?;
    let summary = InstanceSummary::read(std::io::BufReader::new(f))?;
    summary.matches_request(sop_class, sop_instance)?;
    let dir = root.join(file_part(&summary.study_uid));
    let created_dir = !dir.exists();
    std::fs::create_dir_all(&dir)?;
    let stem = file_part(&summary.sop_instance);
    let path = dir.join(format!("{stem}.{}.dcm", &sha256[..16]));
    let other_version = std::fs::read_dir(&dir)?.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with(&format!("{stem}.")) && e.path() != path
    });
    let existed = path.exists();
    if existed {
        std::fs::remove_file(tmp)?;
    } else {
        std::fs::rename(tmp, &path)?;
        sync_dir(&dir)?;
        if created_dir {
            sync_dir(root)?;
        }
    }
    Ok(Stored {
        path,
        size,
        sha256,
        summary,
        existed,
        other_version,
    })
}

impl Stored {
    /// Removes the file again when the journal would not take it, unless
    /// it was there before (an earlier copy the journal holds).
    pub async fn withdraw(&self) {
        if !self.existed {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    use dicom_object::InMemDicomObject;

    const SC: &str = "1.2.840.10008.5.1.4.1.1.7";

    /// An Explicit VR Little Endian data set of a secondary capture.
    fn data_set(sop: &str, name: &str) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0008, 0x0016), VR::UI, PrimitiveValue::from(SC)),
            DataElement::new(Tag(0x0008, 0x0018), VR::UI, PrimitiveValue::from(sop)),
            DataElement::new(Tag(0x0010, 0x0010), VR::PN, PrimitiveValue::from(name)),
            DataElement::new(Tag(0x0020, 0x000D), VR::UI, PrimitiveValue::from("1.2.9")),
            DataElement::new(Tag(0x0020, 0x000E), VR::UI, PrimitiveValue::from("1.2.9.1")),
        ]);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(
            &mut out,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        out
    }

    async fn receive(store: &ObjectStore, sop: &str, bytes: &[u8]) -> Result<Stored, StoreError> {
        let mut f = store.begin(SC, sop, uids::EXPLICIT_VR_LE, "MOD").await?;
        // In fragments, as PDVs arrive.
        for part in bytes.chunks(7) {
            f.write(part).await?;
        }
        f.finish(store, SC, sop).await
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = walk(dir);
        out.sort();
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    vec![e.path()]
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn the_same_object_twice_is_one_file_and_other_content_a_second_one_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().to_path_buf()).unwrap();
        let first = receive(&store, "1.2.9.1.1", &data_set("1.2.9.1.1", "Doe^Jane"))
            .await
            .unwrap();
        assert!(!first.existed && !first.other_version);
        assert_eq!(first.summary.patient_name.as_deref(), Some("Doe^Jane"));
        let bytes = std::fs::read(&first.path).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), first.sha256);
        assert_eq!(bytes.len() as u64, first.size);

        let again = receive(&store, "1.2.9.1.1", &data_set("1.2.9.1.1", "Doe^Jane"))
            .await
            .unwrap();
        assert!(again.existed);
        assert_eq!(again.path, first.path);

        let other = receive(&store, "1.2.9.1.1", &data_set("1.2.9.1.1", "Roe^Jane"))
            .await
            .unwrap();
        assert!(other.other_version && !other.existed);
        assert_ne!(other.path, first.path);
        let kept: Vec<_> = files(dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(files(&dir.path().join(".incoming")).is_empty());
    }

    #[tokio::test]
    async fn a_data_set_that_does_not_read_or_names_another_instance_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectStore::open(dir.path().to_path_buf()).unwrap();
        let e = receive(&store, "1.2.9.1.2", b"\x08\x00\x16\x00garbage")
            .await
            .err()
            .unwrap();
        assert!(!e.is_resources(), "{e}");
        let e = receive(&store, "1.2.9.1.3", &data_set("1.2.9.1.4", "Doe^Jane"))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("SOP instance UID"), "{e}");
        assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
    }

    #[tokio::test]
    async fn a_file_goes_once_retention_purged_its_message_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let journal = crate::journal::Journal::open(crate::journal::JournalOptions::new(
            dir.path().join("j.db"),
        ))
        .unwrap();
        let store = ObjectStore::open(dir.path().join("dicom")).unwrap();
        let kept = receive(&store, "1.2.9.1.5", &data_set("1.2.9.1.5", "Doe^Jane"))
            .await
            .unwrap();
        let orphan = receive(&store, "1.2.9.1.6", &data_set("1.2.9.1.6", "Roe^Jim"))
            .await
            .unwrap();
        let envelope = ecko_message::Envelope {
            source: "modalities".into(),
            // As the store SCP keys an object: its SOP instance UID is both.
            dedup_key: Some("1.2.9.1.5".into()),
            control_id: Some("1.2.9.1.5".into()),
            message_type: "DICOM".into(),
            payload: b"{}".to_vec(),
            ..Default::default()
        };
        let pacs = crate::journal::Destination {
            endpoint: "pacs".into(),
            transform: "none".into(),
            lane: String::new(),
            reply_to: None,
        };
        journal.ingest(envelope, vec![pacs]).await.unwrap();
        let grace = std::time::Duration::ZERO;
        // The orphan (a crash between file and commit) goes; the other stays.
        assert_eq!(store.sweep(&journal, "modalities", grace).await.unwrap(), 1);
        assert!(kept.path.exists() && !orphan.path.exists());
        // Another endpoint's message of the same UID does not keep it.
        assert_eq!(
            store
                .sweep(&journal, "elsewhere", std::time::Duration::from_secs(3600))
                .await
                .unwrap(),
            0,
            "within the grace period"
        );
        // Queued: retention keeps it, so the file stays.
        journal.purge_delivered_before(i64::MAX).await.unwrap();
        assert_eq!(store.sweep(&journal, "modalities", grace).await.unwrap(), 0);
        let lease = journal.lease("pacs", 1, 10).await.unwrap();
        let settled = lease
            .lanes
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l,
                    crate::journal::Settlement::Delivered {
                        response: None,
                        duration_ms: 1,
                    },
                )
            })
            .collect();
        journal.settle(settled).await.unwrap();
        journal.purge_delivered_before(i64::MAX).await.unwrap();
        assert_eq!(store.sweep(&journal, "modalities", grace).await.unwrap(), 1);
        assert!(!kept.path.exists());
        assert!(
            !kept.path.parent().unwrap().exists(),
            "the empty study directory is gone"
        );
    }

    #[test]
    fn opening_the_store_removes_what_a_crash_left_half_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".incoming")).unwrap();
        std::fs::write(dir.path().join(".incoming/7-0.part"), b"half").unwrap();
        ObjectStore::open(dir.path().to_path_buf()).unwrap();
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn a_uid_that_is_no_file_name_is_replaced_by_its_hash() {
        assert_eq!(file_part("1.2.840.1"), "1.2.840.1");
        let odd = file_part("../../etc/passwd");
        assert!(odd.starts_with('x') && !odd.contains('/'), "{odd}");
    }
}
