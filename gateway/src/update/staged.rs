//! A bundle taken from outside (an upload on the admin page, a download
//! for the hub's `firmware.install`) is received into a file on the data
//! partition under `[update] max_bundle_size` by `ecko_image::receive`,
//! the code `ecko-image install URL` receives with: through a fixed
//! buffer, never held whole in memory, written as `NAME.part` and renamed
//! once complete, so a half-received one is never verified or installed.
//! Each chunk is written on a blocking thread.
//!
//! The bundle the page verified is kept as [`Staged`] until an admin
//! confirms or discards it.

use super::install::Verified;
use bytes::Bytes;
pub use ecko_image::receive::ReceiveError;
use ecko_image::receive::Receiving;
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Streams `body` into `dest` (through `dest.part`); its length.
pub async fn receive<S, E>(dest: &Path, mut body: S, cap: u64) -> Result<u64, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let dest = dest.to_path_buf();
    let mut into = blocking(move || Receiving::create(&dest, cap)).await?;
    while let Some(chunk) = body.next().await {
        // Dropped on an error, `into` removes its part file.
        let chunk = chunk.map_err(|e| ReceiveError::Transfer(e.to_string()))?;
        into = blocking(move || into.write(&chunk).map(|()| into)).await?;
    }
    blocking(move || into.finish()).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReceiveError> + Send + 'static,
) -> Result<T, ReceiveError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReceiveError::Transfer(e.to_string()))?
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
