//! A bundle taken from outside (an upload on the admin page, a download
//! for the hub's `firmware.install`) is streamed to a file on the data
//! partition through a fixed buffer, never held whole in memory, and cut
//! off at `[update] max_bundle_size`: a bundle may be larger than the
//! box's RAM. It is written as `NAME.part` and renamed once complete, so
//! a half-received one is never verified or installed.
//!
//! The bundle the page verified is kept as [`Staged`] until an admin
//! confirms or discards it.

use super::install::Verified;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the bundle is larger than the {0} bytes allowed (`[update] max_bundle_size`)")]
    TooLarge(u64),
    #[error("the transfer broke off: {0}")]
    Transfer(String),
    #[error("cannot write the bundle to {0}: {1}")]
    Write(String, std::io::Error),
}

/// Streams `body` into `dest` (through `dest.part`); its length.
pub async fn receive<S, E>(dest: &Path, mut body: S, cap: u64) -> Result<u64, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let part = dest.with_extension("part");
    let write_err = |e| ReceiveError::Write(part.display().to_string(), e);
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(write_err)?;
    }
    let mut file = tokio::fs::File::create(&part).await.map_err(write_err)?;
    let mut len = 0u64;
    let outcome = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReceiveError::Transfer(e.to_string()))?;
            len += chunk.len() as u64;
            if len > cap {
                return Err(ReceiveError::TooLarge(cap));
            }
            file.write_all(&chunk).await.map_err(write_err)?;
        }
        file.sync_all().await.map_err(write_err)?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = outcome {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    tokio::fs::rename(&part, dest)
        .await
        .map_err(|e| ReceiveError::Write(dest.display().to_string(), e))?;
    Ok(len)
}

/// A verified bundle waiting for an admin's confirmation.
#[derive(Debug, Clone)]
pub struct Staged {
    pub path: PathBuf,
    pub manifest: Verified,
    pub uploaded_by: String,
    pub uploaded_at: i64,
    /// Received here, so removed once installed or discarded; a bundle on
    /// a USB stick is left where it is.
    pub owned: bool,
}

impl Staged {
    /// Removes the file if it was received here.
    pub async fn remove(&self) {
        if self.owned {
            let _ = tokio::fs::remove_file(&self.path).await;
        }
    }
}

fn slot() -> &'static Mutex<Option<Staged>> {
    static STAGED: Mutex<Option<Staged>> = Mutex::new(None);
    &STAGED
}

/// The bundle waiting now, if any.
pub fn waiting() -> Option<Staged> {
    slot()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// `staged` waits in place of any other (whose file is removed).
pub fn keep(staged: Staged) {
    let old = slot()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(staged.clone());
    if let Some(old) = old.filter(|o| o.owned && o.path != staged.path) {
        let _ = std::fs::remove_file(old.path);
    }
}

/// Takes the waiting bundle away (to install it, or discarded).
pub fn take() -> Option<Staged> {
    slot().lock().unwrap_or_else(PoisonError::into_inner).take()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize, size: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures_util::stream::iter((0..n).map(move |_| Ok(Bytes::from(vec![7u8; size]))))
    }

    #[tokio::test]
    async fn a_bundle_is_streamed_to_its_file_and_one_over_the_cap_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("update/upload.bundle");
        assert_eq!(receive(&dest, chunks(4, 1000), 4000).await.unwrap(), 4000);
        assert_eq!(std::fs::read(&dest).unwrap().len(), 4000);
        let big = d.path().join("update/big.bundle");
        let e = receive(&big, chunks(5, 1000), 4000).await.unwrap_err();
        assert!(matches!(e, ReceiveError::TooLarge(4000)), "{e}");
        assert!(!big.exists());
        assert!(!big.with_extension("part").exists());
    }

    #[tokio::test]
    async fn a_transfer_that_breaks_off_leaves_no_bundle() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("b.bundle");
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("connection reset".to_string()),
        ]);
        let e = receive(&dest, broken, 100).await.unwrap_err();
        assert!(matches!(e, ReceiveError::Transfer(_)), "{e}");
        assert!(!dest.exists());
    }
}
