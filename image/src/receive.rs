//! A bundle taken from outside (a download, an upload) is streamed to
//! `DEST.part` through the caller's fixed buffer, never held whole in
//! memory (a bundle may be larger than the box's RAM), and cut off at a
//! size cap: a declared length above it is refused before a byte is read,
//! a body growing past it as soon as it does. Only a complete transfer is
//! fsynced and renamed to `DEST`, so a half-received bundle is never
//! verified or installed; dropped unfinished, the part file is removed.
//!
//! Synchronous on purpose: `ecko-image install URL` reads a blocking
//! response, and the gateway's async front ends hand each chunk to a
//! blocking thread.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the bundle is larger than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("the transfer broke off: {0}")]
    Transfer(String),
    #[error("cannot write the bundle to {0}: {1}")]
    Write(String, io::Error),
}

/// A bundle being received into `DEST.part`.
#[derive(Debug)]
pub struct Receiving {
    part: PathBuf,
    dest: PathBuf,
    file: Option<File>,
    len: u64,
    cap: u64,
}

/// Refuses a transfer whose declared length (`Content-Length`) is over `cap`.
pub fn check_declared(declared: Option<u64>, cap: u64) -> Result<(), ReceiveError> {
    match declared {
        Some(n) if n > cap => Err(ReceiveError::TooLarge(cap)),
        _ => Ok(()),
    }
}

impl Receiving {
    /// Creates `DEST.part` (and `DEST`'s directory).
    pub fn create(dest: &Path, cap: u64) -> Result<Receiving, ReceiveError> {
        let part = dest.with_extension("part");
        let write_err = |e| ReceiveError::Write(part.display().to_string(), e);
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_err)?;
        }
        let file = File::create(&part).map_err(write_err)?;
        Ok(Receiving {
            part,
            dest: dest.to_path_buf(),
            file: Some(file),
            len: 0,
            cap,
        })
    }

    /// Appends `chunk`, unless it takes the bundle over the cap.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ReceiveError> {
        self.len += chunk.len() as u64;
        if self.len > self.cap {
            return Err(ReceiveError::TooLarge(self.cap));
        }
        let Some(f) = self.file.as_mut() else {
            return Err(ReceiveError::Transfer("already finished".into()));
        };
        f.write_all(chunk)
            .map_err(|e| ReceiveError::Write(self.part.display().to_string(), e))
    }

    /// Reads `body` to its end through a fixed buffer, telling `progress`
    /// each chunk's length; a read error is a broken transfer.
    pub fn read_from<R: Read>(
        &mut self,
        mut body: R,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ReceiveError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReceiveError::Transfer(with_causes(&e))),
            };
            self.write(&buf[..n])?;
            progress(n as u64);
        }
    }

    /// The bytes taken so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Syncs the part file and renames it to `DEST`; the bundle's length.
    pub fn finish(mut self) -> Result<u64, ReceiveError> {
        let part = self.part.display().to_string();
        if let Some(f) = self.file.take() {
            f.sync_all()
                .map_err(|e| ReceiveError::Write(part.clone(), e))?;
        }
        fs::rename(&self.part, &self.dest)
            .map_err(|e| ReceiveError::Write(self.dest.display().to_string(), e))?;
        Ok(self.len)
    }
}

impl Drop for Receiving {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.part);
        }
    }
}

/// An error with its sources, as a broken transfer is best explained
/// ("connection reset", "end of file before message length reached").
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_received_whole_and_one_over_the_cap_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("in/ok.bundle");
        let mut r = Receiving::create(&dest, 4000).unwrap();
        r.read_from(&[7u8; 4000][..], &mut |_| {}).unwrap();
        assert_eq!(r.finish().unwrap(), 4000);
        assert_eq!(fs::read(&dest).unwrap().len(), 4000);

        let big = d.path().join("in/big.bundle");
        let mut r = Receiving::create(&big, 4000).unwrap();
        let e = r.read_from(&[7u8; 4001][..], &mut |_| {}).unwrap_err();
        assert!(matches!(e, ReceiveError::TooLarge(4000)), "{e}");
        drop(r);
        assert!(!big.exists() && !big.with_extension("part").exists());
        assert!(check_declared(Some(4001), 4000).is_err());
        assert!(check_declared(Some(4000), 4000).is_ok() && check_declared(None, 1).is_ok());
    }

    #[test]
    fn a_transfer_that_breaks_off_leaves_no_part_file() {
        struct Broken(bool);
        impl Read for Broken {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
                }
                b[..3].copy_from_slice(b"abc");
                Ok(3)
            }
        }
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("b.bundle");
        let mut r = Receiving::create(&dest, 100).unwrap();
        let e = r.read_from(Broken(false), &mut |_| {}).unwrap_err();
        assert!(
            matches!(e, ReceiveError::Transfer(ref m) if m.contains("reset")),
            "{e}"
        );
        drop(r);
        assert!(!dest.exists() && !dest.with_extension("part").exists());
    }
}
