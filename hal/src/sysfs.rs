//! Reading and writing sysfs attributes under a configurable root: `/` on
//! the device, a temporary directory holding a fake tree in tests.

use std::path::{Path, PathBuf};

/// One sysfs tree.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new("/")
    }
}

impl Sysfs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `relative` (e.g. `sys/class/net`) under the root.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }

    /// An attribute's text without its trailing newline.
    pub fn read(&self, relative: impl AsRef<Path>) -> std::io::Result<String> {
        let text = std::fs::read_to_string(self.path(relative))?;
        Ok(text.trim_end().to_string())
    }

    /// Writes an attribute (sysfs takes one write per value).
    pub fn write(&self, relative: impl AsRef<Path>, value: &str) -> std::io::Result<()> {
        std::fs::write(self.path(relative), value)
    }

    /// The entries of a directory, sorted; none when it does not exist.
    pub fn entries(&self, relative: impl AsRef<Path>) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(relative))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}
