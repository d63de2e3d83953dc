//! How worn the flash is, and whether the kernel remounted the journal's
//! filesystem read-only (what it does after I/O errors on a failing card).
//!
//! - eMMC wear: `<root>/sys/block/mmcblk*/device/life_time` holds two
//!   estimates (type A and type B cells), each `0x01` (0–10 % of the rated
//!   erase cycles used) to `0x0A` (90–100 %) and `0x0B` (exceeded);
//!   `pre_eol_info` is `0x01` normal, `0x02` warning (80 % of the reserved
//!   blocks consumed), `0x03` urgent.
//! - read-only: the mount holding a path, from `<root>/proc/self/mounts`,
//!   has the `ro` option.

use crate::sysfs::Sysfs;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// What the card says about its wear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wear {
    /// `mmcblk0`, …
    pub device: String,
    /// Estimated share of the rated life used, in tens of percent (1 =
    /// up to 10 %, 11 = exceeded), type A and type B; `None` when absent.
    pub life_time: Option<(u8, u8)>,
    pub pre_eol: PreEol,
}

/// `pre_eol_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreEol {
    Normal,
    Warning,
    Urgent,
    Unknown,
}

/// The flash under the journal.
pub trait StorageWear: Send + Sync + 'static {
    /// Every eMMC device's wear.
    fn wear(&self) -> Vec<Wear>;
    /// Whether the filesystem holding `path` is mounted read-only now.
    fn read_only(&self, path: &Path) -> bool;
}

/// The kernel's view under a root.
#[derive(Debug, Clone, Default)]
pub struct LinuxStorageWear {
    sysfs: Sysfs,
}

impl LinuxStorageWear {
    pub fn new(sysfs: Sysfs) -> Self {
        Self { sysfs }
    }
}

fn hex(text: &str) -> Option<u8> {
    u8::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

impl StorageWear for LinuxStorageWear {
    fn wear(&self) -> Vec<Wear> {
        self.sysfs
            .entries("sys/block")
            .into_iter()
            .filter(|d| d.starts_with("mmcblk") && !d.contains("boot") && !d.contains("rpmb"))
            .map(|device| {
                let attr = |name: &str| {
                    self.sysfs
                        .read(format!("sys/block/{device}/device/{name}"))
                        .ok()
                };
                let life_time = attr("life_time").and_then(|t| {
                    let mut parts = t.split_whitespace().map(hex);
                    Some((parts.next()??, parts.next()??))
                });
                let pre_eol = match attr("pre_eol_info").as_deref().and_then(hex) {
                    Some(1) => PreEol::Normal,
                    Some(2) => PreEol::Warning,
                    Some(3) => PreEol::Urgent,
                    _ => PreEol::Unknown,
                };
                Wear {
                    device,
                    life_time,
                    pre_eol,
                }
            })
            .collect()
    }

    fn read_only(&self, path: &Path) -> bool {
        let Ok(mounts) = self.sysfs.read("proc/self/mounts") else {
            return false;
        };
        // The longest mount point that holds `path`.
        mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (_, point, _, options) = (
                    fields.next()?,
                    fields.next()?,
                    fields.next()?,
                    fields.next()?,
                );
                path.starts_with(point).then_some((point.len(), options))
            })
            .max_by_key(|(len, _)| *len)
            .is_some_and(|(_, options)| options.split(',').any(|o| o == "ro"))
    }
}

/// Wear and a read-only flag the test sets.
#[derive(Debug, Clone, Default)]
pub struct SimStorageWear {
    state: Arc<Mutex<(Vec<Wear>, bool)>>,
}

impl SimStorageWear {
    pub fn set_wear(&self, wear: Vec<Wear>) {
        self.lock().0 = wear;
    }
    pub fn set_read_only(&self, yes: bool) {
        self.lock().1 = yes;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Wear>, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StorageWear for SimStorageWear {
    fn wear(&self) -> Vec<Wear> {
        self.lock().0.clone()
    }
    fn read_only(&self, _path: &Path) -> bool {
        self.lock().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn emmc_wear_is_read_from_life_time_and_pre_eol_info() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "sys/block/mmcblk0/device/life_time",
            "0x02 0x0b\n",
        );
        write(
            root.path(),
            "sys/block/mmcblk0/device/pre_eol_info",
            "0x02\n",
        );
        std::fs::create_dir_all(root.path().join("sys/block/mmcblk0boot0")).unwrap();
        std::fs::create_dir_all(root.path().join("sys/block/sda")).unwrap();
        let wear = LinuxStorageWear::new(Sysfs::new(root.path())).wear();
        assert_eq!(
            wear,
            [Wear {
                device: "mmcblk0".into(),
                life_time: Some((2, 11)),
                pre_eol: PreEol::Warning,
            }]
        );
    }

    #[test]
    fn a_card_without_wear_reports_says_unknown() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("sys/block/mmcblk1/device")).unwrap();
        let wear = LinuxStorageWear::new(Sysfs::new(root.path())).wear();
        assert_eq!(wear[0].life_time, None);
        assert_eq!(wear[0].pre_eol, PreEol::Unknown);
    }

    #[test]
    fn the_mount_holding_a_path_decides_whether_it_is_read_only() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "proc/self/mounts",
            "/dev/mmcblk0p2 / ext4 ro,relatime 0 0\n/dev/mmcblk0p3 /var/lib/ecko ext4 rw,relatime 0 0\n/dev/mmcblk0p4 /data ext4 ro,noatime 0 0\n",
        );
        let storage = LinuxStorageWear::new(Sysfs::new(root.path()));
        assert!(!storage.read_only(Path::new("/var/lib/ecko/journal.db")));
        assert!(storage.read_only(Path::new("/data/journal.db")));
        assert!(storage.read_only(Path::new("/etc/ecko")));
    }

    #[test]
    fn the_simulated_storage_wear_is_what_the_test_set() {
        let sim = SimStorageWear::default();
        assert!(!sim.read_only(Path::new("/")));
        sim.set_read_only(true);
        assert!(sim.read_only(Path::new("/")));
        assert!(sim.wear().is_empty());
    }
}
