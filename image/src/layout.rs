//! Where each slot's image lives: the file `DIR/slot-a` / `DIR/slot-b`
//! beside the boot state (the default), or a block device named in
//! `DIR/slots.toml`:
//!
//! ```toml
//! [a]
//! device = "/dev/mmcblk0p2"
//! [b]
//! device = "/dev/mmcblk0p3"
//! ```
//!
//! The layout sits in the boot state directory rather than in each
//! caller's arguments so that `ecko-image` and the gateway's `[update]`,
//! which share the directory, can never disagree about which partition a
//! slot is: an install writing `DIR/slot-b` while the bootloader boots
//! `/dev/mmcblk0p3` would activate what was never written.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::slots::{Slot, SlotError};

pub const LAYOUT_FILE: &str = "slots.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum SlotImage {
    /// A regular file, truncated and rewritten by each install.
    File(PathBuf),
    /// A partition, written from its start; what follows the payload is
    /// left as it was.
    Device(PathBuf),
}

impl SlotImage {
    pub fn path(&self) -> &Path {
        match self {
            SlotImage::File(p) | SlotImage::Device(p) => p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    a: SlotImage,
    b: SlotImage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    a: Option<Entry>,
    b: Option<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    device: PathBuf,
}

impl Layout {
    /// Both slots as files in `dir`.
    pub fn files(dir: &Path) -> Layout {
        Layout {
            a: SlotImage::File(file_of(dir, Slot::A)),
            b: SlotImage::File(file_of(dir, Slot::B)),
        }
    }

    /// `dir/slots.toml` when there is one, otherwise [`Layout::files`].
    pub fn read(dir: &Path) -> Result<Layout, SlotError> {
        let path = dir.join(LAYOUT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Layout::parse(dir, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Layout::files(dir)),
            Err(e) => Err(SlotError::Layout(format!("{}: {e}", path.display()))),
        }
    }

    /// The layout `text` (a `slots.toml`) gives, slots it does not name
    /// kept as files in `dir`.
    pub fn parse(dir: &Path, text: &str) -> Result<Layout, SlotError> {
        let bad =
            |why: String| SlotError::Layout(format!("{}: {why}", dir.join(LAYOUT_FILE).display()));
        let f: LayoutFile = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        let image = |slot: Slot, e: Option<Entry>| match e {
            None => Ok(SlotImage::File(file_of(dir, slot))),
            Some(Entry { device }) if device.is_absolute() => Ok(SlotImage::Device(device)),
            Some(Entry { device }) => Err(bad(format!(
                "slot {}: device {} is not an absolute path",
                slot.as_str(),
                device.display()
            ))),
        };
        let layout = Layout {
            a: image(Slot::A, f.a)?,
            b: image(Slot::B, f.b)?,
        };
        if layout.a.path() == layout.b.path() {
            return Err(bad(format!(
                "slots a and b are both {}: an install would overwrite the running slot",
                layout.a.path().display()
            )));
        }
        Ok(layout)
    }

    pub fn image(&self, slot: Slot) -> &SlotImage {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
}

fn file_of(dir: &Path, slot: Slot) -> PathBuf {
    dir.join(format!("slot-{}", slot.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_layout_file_both_slots_are_files_beside_the_boot_state() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::read(d.path()).unwrap();
        assert_eq!(l, Layout::files(d.path()));
        assert_eq!(l.image(Slot::B), &SlotImage::File(d.path().join("slot-b")));
    }

    #[test]
    fn a_slot_named_with_a_device_is_that_device_and_the_other_stays_a_file() {
        let d = Path::new("/data/slots");
        let l = Layout::parse(d, "[b]\ndevice = \"/dev/mmcblk0p3\"\n").unwrap();
        assert_eq!(l.image(Slot::A), &SlotImage::File(d.join("slot-a")));
        assert_eq!(
            l.image(Slot::B),
            &SlotImage::Device("/dev/mmcblk0p3".into())
        );
    }

    #[test]
    fn a_relative_device_a_shared_device_or_an_unknown_key_is_refused_with_the_file_named() {
        let d = Path::new("/data/slots");
        for (text, says) in [
            ("[a]\ndevice = \"mmcblk0p2\"\n", "not an absolute path"),
            (
                "[a]\ndevice = \"/dev/sda2\"\n[b]\ndevice = \"/dev/sda2\"\n",
                "both /dev/sda2",
            ),
            ("[b]\npath = \"/dev/sda3\"\n", "unknown field"),
            ("[c]\ndevice = \"/dev/sda3\"\n", "unknown field"),
            ("[b\n", ""),
        ] {
            let e = Layout::parse(d, text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("/data/slots/slots.toml") && msg.contains(says),
                "{text}: {msg}"
            );
            assert_eq!(e.exit_code(), 23, "{msg}");
        }
    }
}
