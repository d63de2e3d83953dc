//! RAUC as boot control, for images that already use it: the bundle is
//! still verified and written by ecko-image (no `rauc install`), and RAUC
//! is only asked what it knows and told what changed:
//!
//! - `rauc status --output-format=json`: the running slot (`booted`, a
//!   bootname), the slot booted first (`boot_primary`, a slot name whose
//!   `bootname` is looked up in `slots`), and each slot's `boot_status`;
//! - `rauc status mark-good`, `mark-bad other|booted`,
//!   `mark-active other|booted`.
//!
//! Bootnames `A` and `B` are slots a and b. RAUC does not report tries
//! left, so a pending slot shows the tries it was given; a pending slot
//! that RAUC reports bad and that is not running is a failed update. As
//! for U-Boot, versions and the last result stay in `DIR/boot-state.json`
//! and the images in `DIR/slot-a` and `DIR/slot-b` or the partitions
//! `DIR/slots.toml` names (`layout`).

use std::fs::File;
use std::io;
use std::path::Path;

use crate::command;
use crate::slots::{BootControl, BootState, Change, FileBoot, Slot, SlotError, SlotState};
use crate::uboot::parse_bootname;

pub struct Rauc {
    files: FileBoot,
    program: String,
}

/// What `rauc status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaucStatus {
    pub booted: Option<Slot>,
    pub primary: Option<Slot>,
    /// Slots whose `boot_status` is `bad`.
    pub bad: Vec<Slot>,
}

/// Parses `rauc status --output-format=json`.
pub fn parse_status(json: &str) -> Result<RaucStatus, SlotError> {
    let bad_json = |why: &str| SlotError::Command(format!("rauc status: {why}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad_json(&format!("not JSON: {e}")))?;
    let booted = match v.get("booted").and_then(|b| b.as_str()) {
        None => None,
        Some(b) => Some(
            parse_bootname(b).ok_or_else(|| bad_json(&format!("booted {b:?} is not A or B")))?,
        ),
    };
    let primary_name = v.get("boot_primary").and_then(|p| p.as_str());
    let slots = v
        .get("slots")
        .and_then(|s| s.as_array())
        .ok_or_else(|| bad_json("no slots list"))?;
    let mut status = RaucStatus {
        booted,
        primary: None,
        bad: Vec::new(),
    };
    // Each entry is `{ "rootfs.0": { "bootname": "A", ... } }`.
    for (name, info) in slots.iter().filter_map(|e| e.as_object()).flatten() {
        let Some(slot) = info
            .get("bootname")
            .and_then(|b| b.as_str())
            .and_then(parse_bootname)
        else {
            continue;
        };
        if Some(name.as_str()) == primary_name {
            status.primary = Some(slot);
        }
        if info.get("boot_status").and_then(|b| b.as_str()) == Some("bad") {
            status.bad.push(slot);
        }
    }
    Ok(status)
}

/// The state file overlaid with RAUC's status (module notes).
pub fn overlay(mut s: BootState, r: &RaucStatus) -> BootState {
    if let Some(b) = r.booted {
        s.active = b;
    }
    if let Some(p) = r.primary {
        s.next = p;
    }
    for &slot in &r.bad {
        let active = s.active;
        let info = s.slot_mut(slot);
        if info.state == SlotState::Pending && slot != active {
            info.state = SlotState::Bad;
            info.tries_left = 0;
            s.last_result = Some(format!(
                "update to {} in slot {} failed: RAUC reports it bad",
                info.version.as_deref().unwrap_or("?"),
                slot.as_str()
            ));
        }
    }
    s
}

impl Rauc {
    pub fn new(dir: &Path, program: &str) -> Rauc {
        Rauc {
            files: FileBoot::new(dir),
            program: program.into(),
        }
    }

    pub fn status(&self) -> Result<RaucStatus, SlotError> {
        parse_status(&command::run(
            &self.program,
            &["status", "--output-format=json"],
        )?)
    }

    /// `rauc status VERB booted|other` for `slot`.
    fn mark(&self, verb: &str, slot: Slot) -> Result<(), SlotError> {
        let booted = self
            .status()?
            .booted
            .ok_or_else(|| SlotError::Command("rauc status names no booted slot".into()))?;
        let which = if slot == booted { "booted" } else { "other" };
        command::run(&self.program, &["status", verb, which]).map(|_| ())
    }
}

impl BootControl for Rauc {
    type Writer = File;
    type Reader = File;

    fn tell(&self, change: Change) -> Result<(), SlotError> {
        match change {
            Change::Bad(s) => self.mark("mark-bad", s),
            Change::Activate(s) | Change::Rollback { to: s, .. } => self.mark("mark-active", s),
            Change::Good(s) => self.mark("mark-good", s),
        }
    }
    fn load(&self) -> Result<BootState, SlotError> {
        Ok(overlay(self.files.load()?, &self.status()?))
    }
    fn store(&self, s: &BootState) -> Result<(), SlotError> {
        self.files.store(s)
    }
    fn check_writable(&self, slot: Slot, len: u64) -> Result<(), SlotError> {
        self.files.check_writable(slot, len)
    }
    fn write_slot(&self, slot: Slot, len: u64) -> Result<File, SlotError> {
        self.files.write_slot(slot, len)
    }
    fn finish_slot(&self, w: File) -> io::Result<()> {
        self.files.finish_slot(w)
    }
    fn read_slot(&self, slot: Slot) -> Result<File, SlotError> {
        self.files.read_slot(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape RAUC prints (trimmed to what is read).
    const STATUS: &str = r#"{"compatible":"ecko-box-v2","variant":"","booted":"B",
      "boot_primary":"rootfs.1",
      "slots":[
        {"rootfs.0":{"class":"rootfs","device":"/dev/mmcblk0p2","type":"ext4",
                     "bootname":"A","state":"inactive","boot_status":"bad"}},
        {"rootfs.1":{"class":"rootfs","device":"/dev/mmcblk0p3","type":"ext4",
                     "bootname":"B","state":"booted","boot_status":"good"}},
        {"appfs.0":{"class":"appfs","device":"/dev/mmcblk0p5","type":"ext4",
                    "bootname":null,"state":"inactive","boot_status":null}}]}"#;

    #[test]
    fn rauc_status_json_gives_the_booted_and_primary_slots_and_the_bad_ones() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!(s.booted, Some(Slot::B));
        assert_eq!(s.primary, Some(Slot::B));
        assert_eq!(s.bad, vec![Slot::A]);
    }

    #[test]
    fn rauc_status_that_is_not_json_or_names_an_unknown_slot_is_a_command_error() {
        for bad in [
            "rauc: not running",
            r#"{"booted":"C","slots":[]}"#,
            r#"{"booted":"A"}"#,
        ] {
            let e = parse_status(bad).unwrap_err();
            assert_eq!(e.exit_code(), 25, "{bad}: {e}");
        }
    }
}
