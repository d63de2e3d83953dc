//! A loop device over a scratch file, for slots that are partitions:
//! detached on drop, so a failing test leaves no device behind. Without
//! `losetup` (or without the rights to use it) the test fails saying so,
//! rather than passing over the device it did not have.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopDevice {
    pub path: PathBuf,
    pub len: u64,
}

/// The byte a fresh device holds at `offset`: a pattern with a period no
/// payload length lines up with, so a shifted or stray write shows.
pub fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(7).wrapping_add(offset / 4093) % 251) as u8
}

impl LoopDevice {
    /// A device of `len` bytes over `dir/name`, filled with [`pattern`].
    pub fn new(dir: &Path, name: &str, len: u64) -> LoopDevice {
        let backing = dir.join(name);
        let mut f = std::fs::File::create(&backing).unwrap();
        let mut at = 0u64;
        while at < len {
            let n = (1 << 20).min(len - at);
            let bytes: Vec<u8> = (at..at + n).map(pattern).collect();
            f.write_all(&bytes).unwrap();
            at += n;
        }
        f.sync_all().unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&backing)
            .output()
            .unwrap_or_else(|e| {
                panic!("these tests need a loop device: could not run `losetup`: {e}")
            });
        assert!(
            out.status.success(),
            "these tests need a loop device (root, /dev/loop-control): `losetup -f --show {}` failed: {}",
            backing.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDevice { path, len }
    }

    pub fn p(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Every byte of the device, read through the device itself.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.len as usize);
        std::fs::File::open(&self.path)
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        b
    }

    /// `len` bytes of the device from `offset`.
    pub fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        std::os::unix::fs::FileExt::read_exact_at(
            &std::fs::File::open(&self.path).unwrap(),
            &mut b,
            offset,
        )
        .unwrap();
        b
    }

    /// Whether `bytes` (the device's) still hold the pattern from `from` on.
    pub fn untouched_from(bytes: &[u8], from: usize) -> bool {
        bytes[from..]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern((from + i) as u64))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}
