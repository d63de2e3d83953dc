//! A/B slots and the boot state (`docs/image-format.md`, "Boot state").
//!
//! Boot control sits behind [`BootControl`]; [`FileBoot`] keeps
//! `boot-state.json` in one directory (tests, and boards without a
//! bootloader API), with each slot's image a file beside it or the
//! partition `slots.toml` names (`layout`, `device`). The U-Boot (`uboot`)
//! and RAUC (`rauc`) backends keep the same files for what their bootloader
//! does not record (versions, the last result) and are told each
//! [`Change`] for the part it does. The state file is only ever replaced
//! whole: temp file, fsync, rename, directory fsync, so a power loss leaves
//! either the old or the new state, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device;
use crate::layout::{Layout, SlotImage};

pub const STATE_FILE: &str = "boot-state.json";
pub const STATE_FORMAT: u32 = 1;
/// Boot tries a newly installed slot gets before the bootloader gives up on it.
pub const NEW_SLOT_TRIES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Never written.
    Empty,
    /// Installed, booting on its remaining tries until marked good.
    Pending,
    /// Booted and passed the readiness check.
    Good,
    /// Being written, or gave up on: never booted.
    Bad,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    pub state: SlotState,
    pub version: Option<String>,
    pub security_version: Option<u64>,
    pub tries_left: u8,
}

impl SlotInfo {
    fn empty() -> SlotInfo {
        SlotInfo {
            state: SlotState::Empty,
            version: None,
            security_version: None,
            tries_left: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// [`STATE_FORMAT`]; a newer format is refused rather than misread.
    pub format: u32,
    /// The slot running now (last booted).
    pub active: Slot,
    /// The slot the bootloader tries first.
    pub next: Slot,
    pub a: SlotInfo,
    pub b: SlotInfo,
    /// What the last install or boot came to, for the dashboard and the hub.
    pub last_result: Option<String>,
}

impl Default for BootState {
    /// A device that has never been installed by ecko-image.
    fn default() -> BootState {
        BootState {
            format: STATE_FORMAT,
            active: Slot::A,
            next: Slot::A,
            a: SlotInfo::empty(),
            b: SlotInfo::empty(),
            last_result: None,
        }
    }
}

impl BootState {
    pub fn slot(&self, s: Slot) -> &SlotInfo {
        match s {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
    pub fn slot_mut(&mut self, s: Slot) -> &mut SlotInfo {
        match s {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }
    /// The security version anti-rollback checks against: the highest of
    /// the good slots. A pending slot does not count until marked good, but
    /// running one does not lift the floor the good slot sets; and a
    /// rollback to an older good slot does not lower it (the newer slot
    /// may still be good, and was trusted once).
    pub fn installed_security_version(&self) -> Option<u64> {
        [&self.a, &self.b]
            .into_iter()
            .filter(|s| s.state == SlotState::Good)
            .filter_map(|s| s.security_version)
            .max()
    }

    /// The good slot a new bundle's version is compared with: the active
    /// one when good, else the other when good.
    pub fn installed(&self) -> Option<&SlotInfo> {
        [self.active, self.active.other()]
            .into_iter()
            .map(|s| self.slot(s))
            .find(|s| s.state == SlotState::Good)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot I/O: {0}")]
    Io(#[from] io::Error),
    #[error("boot state does not parse: {0}")]
    Parse(serde_json::Error),
    #[error("boot state format {0} is newer than this tool's {STATE_FORMAT}")]
    NewerFormat(u32),
    #[error("no slot can boot")]
    NothingBootable,
    #[error("{0}")]
    Refused(String),
    /// A boot control command (fw_setenv, rauc, ...) could not be run,
    /// failed, or printed what it should not.
    #[error("boot control: {0}")]
    Command(String),
    /// `slots.toml` does not parse or names slots that cannot be.
    #[error("slot layout: {0}")]
    Layout(String),
    #[error("payload of {payload} bytes does not fit slot device {} of {size} bytes", device.display())]
    TooLarge {
        device: PathBuf,
        payload: u64,
        size: u64,
    },
    #[error("slot device {} {what}: a slot on a device must be a block device", path.display())]
    NotABlockDevice { path: PathBuf, what: String },
    #[error("slot device {} is in use: {why}", device.display())]
    DeviceInUse { device: PathBuf, why: String },
}

impl SlotError {
    /// `Io`/`Parse`/`NewerFormat`/`Layout` are slot I/O failures (23); a
    /// refused state change is 24; a failed boot control command 25; a slot
    /// device refused before anything was written: 29 the payload does not
    /// fit, 30 not a block device, 31 mounted or held (README, "Firmware
    /// updates").
    pub fn exit_code(&self) -> i32 {
        match self {
            SlotError::Io(_)
            | SlotError::Parse(_)
            | SlotError::NewerFormat(_)
            | SlotError::Layout(_) => 23,
            SlotError::NothingBootable | SlotError::Refused(_) => 24,
            SlotError::Command(_) => 25,
            SlotError::TooLarge { .. } => 29,
            SlotError::NotABlockDevice { .. } => 30,
            SlotError::DeviceInUse { .. } => 31,
        }
    }
}

/// What the bootloader is told, when its own record (the U-Boot
/// environment, RAUC's slot status) must follow the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Never boot this slot: it is about to be written.
    Bad(Slot),
    /// Boot this (newly written, pending) slot first, with
    /// [`NEW_SLOT_TRIES`] tries.
    Activate(Slot),
    /// The running slot passed its readiness check (again: a bootloader
    /// that counts every boot is refilled each time).
    Good(Slot),
    /// Give up on `from`, boot the good `to` first.
    Rollback { from: Slot, to: Slot },
}

/// Where the slots and their state live. The install and boot logic only
/// goes through this.
pub trait BootControl {
    /// Tells the bootloader of a change. The file backend has nothing to
    /// tell: its state file is the whole record.
    fn tell(&self, change: Change) -> Result<(), SlotError> {
        let _ = change;
        Ok(())
    }
    type Writer: Write;
    type Reader: Read;
    fn load(&self) -> Result<BootState, SlotError>;
    /// Replaces the state atomically.
    fn store(&self, s: &BootState) -> Result<(), SlotError>;
    /// Refuses, without writing anything, a slot `len` bytes could not be
    /// written to (a device that is missing, mounted or too small).
    fn check_writable(&self, slot: Slot, len: u64) -> Result<(), SlotError>;
    /// Returns a writer from the start of `slot`, for `len` bytes (a file
    /// is truncated first, a device is not).
    fn write_slot(&self, slot: Slot, len: u64) -> Result<Self::Writer, SlotError>;
    /// Makes what was written durable, and the read-back read the medium.
    fn finish_slot(&self, w: Self::Writer) -> io::Result<()>;
    /// A reader from the start of `slot`; what follows the payload's length
    /// is not part of the image.
    fn read_slot(&self, slot: Slot) -> Result<Self::Reader, SlotError>;
}

/// `DIR/boot-state.json`, and the slot images `DIR/slots.toml` places
/// (`DIR/slot-a`, `DIR/slot-b` without it).
pub struct FileBoot {
    dir: PathBuf,
}

impl FileBoot {
    pub fn new(dir: &Path) -> FileBoot {
        FileBoot { dir: dir.into() }
    }
    /// Where `s`'s image lives, read from the layout each time: it is the
    /// administrator's file, changed behind a running gateway's back.
    pub fn image(&self, s: Slot) -> Result<SlotImage, SlotError> {
        Ok(Layout::read(&self.dir)?.image(s).clone())
    }
}

impl BootControl for FileBoot {
    type Writer = File;
    type Reader = File;

    fn load(&self) -> Result<BootState, SlotError> {
        let bytes = match fs::read(self.dir.join(STATE_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BootState::default()),
            Err(e) => return Err(e.into()),
        };
        // The format is checked before the rest so that a newer layout is
        // reported as such, not as a parse error.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let f: Format = serde_json::from_slice(&bytes).map_err(SlotError::Parse)?;
        if f.format > STATE_FORMAT {
            return Err(SlotError::NewerFormat(f.format));
        }
        serde_json::from_slice(&bytes).map_err(SlotError::Parse)
    }

    fn store(&self, s: &BootState) -> Result<(), SlotError> {
        let mut bytes = serde_json::to_vec_pretty(s).map_err(SlotError::Parse)?;
        bytes.push(b'\n');
        write_atomic(&self.dir, STATE_FILE, &bytes)?;
        Ok(())
    }

    fn check_writable(&self, slot: Slot, len: u64) -> Result<(), SlotError> {
        match self.image(slot)? {
            SlotImage::File(_) => Ok(()),
            SlotImage::Device(d) => device::open_for_write(&d, len).map(drop),
        }
    }

    fn write_slot(&self, slot: Slot, len: u64) -> Result<File, SlotError> {
        match self.image(slot)? {
            SlotImage::File(p) => Ok(OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)?),
            SlotImage::Device(d) => device::open_for_write(&d, len),
        }
    }

    fn finish_slot(&self, w: File) -> io::Result<()> {
        w.sync_all()?;
        // Advice only: where it is not taken, the read-back still checks
        // what the kernel holds, if not the medium itself.
        let _ = device::drop_cached(&w);
        File::open(&self.dir)?.sync_all()
    }

    fn read_slot(&self, slot: Slot) -> Result<File, SlotError> {
        match self.image(slot)? {
            SlotImage::File(p) => Ok(File::open(p)?),
            SlotImage::Device(d) => device::open_for_read(&d),
        }
    }
}

/// Temp file, fsync, rename over `name`, fsync of the directory (so the
/// rename itself survives a power loss).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The bootloader's choice, without writing anything: the next slot when
/// good or pending with tries left (a try is used up), otherwise the other
/// slot if it is good (a pending slot out of tries becomes bad).
pub fn next_boot(s: &BootState) -> Result<(BootState, Slot), SlotError> {
    let mut n = s.clone();
    let first = s.next;
    let info = n.slot_mut(first);
    match info.state {
        SlotState::Good => {
            n.active = first;
            return Ok((n, first));
        }
        SlotState::Pending if info.tries_left > 0 => {
            info.tries_left -= 1;
            n.active = first;
            return Ok((n, first));
        }
        SlotState::Pending => {
            info.state = SlotState::Bad;
            n.last_result = Some(format!(
                "update to {} in slot {} failed: not marked good after {NEW_SLOT_TRIES} boots",
                info.version.as_deref().unwrap_or("?"),
                first.as_str()
            ));
        }
        _ => {}
    }
    let other = first.other();
    if n.slot(other).state != SlotState::Good {
        return Err(SlotError::NothingBootable);
    }
    n.active = other;
    n.next = other;
    Ok((n, other))
}

/// One boot as the bootloader does it: picks the slot and records the try.
pub fn boot<B: BootControl>(b: &B) -> Result<Slot, SlotError> {
    Ok(boot_recorded(b)?.slot)
}

/// What one boot came to, for the `boot` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booted {
    pub slot: Slot,
    /// The slot tried first could not boot (out of tries, bad or empty).
    pub fell_back: bool,
    /// The state as stored after the boot.
    pub state: BootState,
}

/// As [`boot`], with the state it left.
pub fn boot_recorded<B: BootControl>(b: &B) -> Result<Booted, SlotError> {
    let before = b.load()?;
    let (state, slot) = next_boot(&before)?;
    b.store(&state)?;
    Ok(Booted {
        slot,
        fell_back: slot != before.next,
        state,
    })
}

/// Called by the running system once its readiness check passed: the
/// active pending slot becomes good and keeps booting.
pub fn mark_good<B: BootControl>(b: &B) -> Result<Slot, SlotError> {
    let mut s = b.load()?;
    let active = s.active;
    let info = s.slot_mut(active);
    match info.state {
        SlotState::Good => {
            b.tell(Change::Good(active))?;
            return Ok(active);
        }
        SlotState::Pending => {}
        other => {
            return Err(SlotError::Refused(format!(
                "active slot {} is {other:?}, not pending",
                active.as_str()
            )))
        }
    }
    info.state = SlotState::Good;
    info.tries_left = 0;
    s.last_result = Some(format!(
        "updated to {} in slot {}",
        info.version.as_deref().unwrap_or("?"),
        active.as_str()
    ));
    s.next = active;
    // The bootloader first: until it knows, it would fall back anyway, and
    // telling it again is harmless.
    b.tell(Change::Good(active))?;
    b.store(&s)?;
    Ok(active)
}

/// Boots the other slot next, which must be good; a pending active slot is
/// given up on (bad).
pub fn rollback<B: BootControl>(b: &B) -> Result<Slot, SlotError> {
    let mut s = b.load()?;
    let other = s.active.other();
    if s.slot(other).state != SlotState::Good {
        return Err(SlotError::Refused(format!(
            "slot {} is not good, nothing to roll back to",
            other.as_str()
        )));
    }
    let active = s.active;
    if s.slot(active).state == SlotState::Pending {
        s.slot_mut(active).state = SlotState::Bad;
    }
    s.next = other;
    s.last_result = Some(format!(
        "rolled back from slot {} to slot {}",
        active.as_str(),
        other.as_str()
    ));
    if s.slot(active).state == SlotState::Bad {
        b.tell(Change::Bad(active))?;
    }
    b.tell(Change::Rollback {
        from: active,
        to: other,
    })?;
    b.store(&s)?;
    Ok(other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(v: &str, sv: u64) -> SlotInfo {
        SlotInfo {
            state: SlotState::Good,
            version: Some(v.into()),
            security_version: Some(sv),
            tries_left: 0,
        }
    }

    #[test]
    fn a_missing_state_file_reads_as_a_fresh_device_and_a_stored_state_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let b = FileBoot::new(d.path());
        assert_eq!(b.load().unwrap(), BootState::default());
        let s = BootState {
            b: good("1.0", 2),
            active: Slot::B,
            ..BootState::default()
        };
        b.store(&s).unwrap();
        assert_eq!(b.load().unwrap(), s);
        assert!(!d.path().join(".boot-state.json.tmp").exists());
    }

    #[test]
    fn a_state_file_of_a_newer_format_is_refused() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join(STATE_FILE), br#"{"format": 2}"#).unwrap();
        let e = FileBoot::new(d.path()).load().unwrap_err();
        assert!(matches!(e, SlotError::NewerFormat(2)), "{e}");
    }

    #[test]
    fn a_pending_slot_uses_a_try_per_boot_then_the_good_slot_boots_again() {
        let mut s = BootState {
            a: good("1.0", 1),
            b: pending("2.0", 1),
            next: Slot::B,
            ..BootState::default()
        };
        for left in (0..NEW_SLOT_TRIES).rev() {
            let (n, slot) = next_boot(&s).unwrap();
            assert_eq!(slot, Slot::B);
            assert_eq!(n.b.tries_left, left);
            s = n;
        }
        let (n, slot) = next_boot(&s).unwrap();
        assert_eq!(slot, Slot::A);
        assert_eq!(n.b.state, SlotState::Bad);
        assert_eq!(n.next, Slot::A);
        assert!(n.last_result.unwrap().contains("2.0"));
    }

    fn pending(v: &str, sv: u64) -> SlotInfo {
        SlotInfo {
            state: SlotState::Pending,
            version: Some(v.into()),
            security_version: Some(sv),
            tries_left: NEW_SLOT_TRIES,
        }
    }

    #[test]
    fn the_booted_pending_slot_marked_good_keeps_booting_and_sets_the_installed_security_version() {
        let d = tempfile::tempdir().unwrap();
        let b = FileBoot::new(d.path());
        let s = BootState {
            a: good("1.0", 1),
            b: pending("2.0", 5),
            next: Slot::B,
            ..BootState::default()
        };
        b.store(&s).unwrap();
        assert_eq!(boot(&b).unwrap(), Slot::B);
        assert_eq!(mark_good(&b).unwrap(), Slot::B);
        let s = b.load().unwrap();
        assert_eq!(s.b.state, SlotState::Good);
        assert_eq!(s.installed_security_version(), Some(5));
        assert_eq!(boot(&b).unwrap(), Slot::B);
    }

    #[test]
    fn mark_good_is_refused_when_the_active_slot_is_bad_or_empty() {
        let d = tempfile::tempdir().unwrap();
        let b = FileBoot::new(d.path());
        let e = mark_good(&b).unwrap_err();
        assert_eq!(e.exit_code(), 24, "{e}");
        assert!(!d.path().join(STATE_FILE).exists());
    }

    #[test]
    fn rollback_gives_up_on_the_pending_slot_and_boots_the_other_good_one() {
        let d = tempfile::tempdir().unwrap();
        let b = FileBoot::new(d.path());
        let s = BootState {
            a: good("1.0", 1),
            b: pending("2.0", 1),
            next: Slot::B,
            ..BootState::default()
        };
        b.store(&s).unwrap();
        assert_eq!(boot(&b).unwrap(), Slot::B);
        assert_eq!(rollback(&b).unwrap(), Slot::A);
        let s = b.load().unwrap();
        assert_eq!(s.b.state, SlotState::Bad);
        assert_eq!(boot(&b).unwrap(), Slot::A);
        // Nothing good to go back to from there.
        assert_eq!(rollback(&b).unwrap_err().exit_code(), 24);
    }

    #[test]
    fn the_installed_security_version_while_the_new_slot_is_pending_is_the_good_slots() {
        // Running the new slot before its readiness check: the floor is
        // still what the good slot holds, not none at all.
        let s = BootState {
            a: good("1.0", 4),
            b: pending("2.0", 5),
            active: Slot::B,
            next: Slot::B,
            ..BootState::default()
        };
        assert_eq!(s.installed_security_version(), Some(4));
        assert_eq!(s.installed().unwrap().version.as_deref(), Some("1.0"));
    }

    #[test]
    fn the_installed_security_version_after_a_rollback_is_the_highest_ever_marked_good() {
        let s = BootState {
            a: good("1.0", 4),
            b: good("2.0", 5),
            active: Slot::A,
            next: Slot::A,
            ..BootState::default()
        };
        assert_eq!(s.installed_security_version(), Some(5));
        assert_eq!(BootState::default().installed_security_version(), None);
    }

    #[test]
    fn nothing_boots_when_no_slot_is_good_or_pending() {
        assert!(matches!(
            next_boot(&BootState::default()),
            Err(SlotError::NothingBootable)
        ));
    }
}
