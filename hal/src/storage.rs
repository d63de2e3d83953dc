//! Free space on the filesystem that holds the journal.
//!
//! The journal refuses new messages before the disk is full, so that SQLite
//! never has to fail half way through a commit and the sender keeps its copy.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What can go wrong when asking the filesystem.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot query free space of {path}: {source}")]
    Query {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Reports the space available to an unprivileged writer at a path.
pub trait Storage: Send + Sync + 'static {
    fn available_bytes(&self, path: &Path) -> Result<u64, StorageError>;
}

/// The real filesystem, through `statvfs(3)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxStorage;

impl Storage for LinuxStorage {
    fn available_bytes(&self, path: &Path) -> Result<u64, StorageError> {
        let stat = nix::sys::statvfs::statvfs(path).map_err(|errno| StorageError::Query {
            path: path.display().to_string(),
            source: std::io::Error::from(errno),
        })?;
        #[allow(clippy::unnecessary_cast)]
        let bytes = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
        Ok(bytes)
    }
}

/// A disk whose free space the test sets by hand.
#[derive(Debug, Clone)]
pub struct SimStorage {
    available: Arc<AtomicU64>,
}

impl SimStorage {
    pub fn new(available: u64) -> Self {
        Self {
            available: Arc::new(AtomicU64::new(available)),
        }
    }

    pub fn set_available(&self, bytes: u64) {
        self.available.store(bytes, Ordering::SeqCst);
    }
}

impl Storage for SimStorage {
    fn available_bytes(&self, _path: &Path) -> Result<u64, StorageError> {
        Ok(self.available.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linux_storage_reports_some_space_for_the_temp_directory() {
        let bytes = LinuxStorage.available_bytes(&std::env::temp_dir()).unwrap();
        assert!(bytes > 0);
    }

    #[test]
    fn the_linux_storage_names_the_path_it_could_not_query() {
        let err = LinuxStorage
            .available_bytes(Path::new("/nonexistent/ecko"))
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ecko"));
    }

    #[test]
    fn the_simulated_storage_reports_what_the_test_set() {
        let sim = SimStorage::new(10);
        sim.set_available(3);
        assert_eq!(sim.available_bytes(Path::new("/")).unwrap(), 3);
    }
}
