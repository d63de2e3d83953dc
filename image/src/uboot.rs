//! The U-Boot environment as boot control, with the variables of RAUC's
//! U-Boot integration: `BOOT_ORDER` ("A B": the slots tried in turn) and
//! `BOOT_A_LEFT`/`BOOT_B_LEFT` (tries left; the boot script counts one
//! down before booting a slot and skips a slot at 0). Read with
//! `fw_printenv`, written with `fw_setenv`, both configurable.
//!
//! The environment knows only order and tries. Versions, which slot is
//! pending rather than good, and the last result stay in the state file
//! (`DIR/boot-state.json`, as for [`FileBoot`]), and the slot images in
//! `DIR/slot-a` and `DIR/slot-b` or the partitions `DIR/slots.toml` names
//! (`layout`). Reading the state overlays the file with
//! what U-Boot did since: the running slot (`rauc.slot=` on the kernel
//! command line), the slot it tries first, the tries a pending slot has
//! left, and a pending slot it gave up on (0 tries, not running) as a
//! failed update. A good slot's counter is refilled by each mark-good, as
//! RAUC does, since the boot script counts down every boot.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::command;
use crate::slots::{
    BootControl, BootState, Change, FileBoot, Slot, SlotError, SlotState, NEW_SLOT_TRIES,
};

/// The slot's name in the environment and on the kernel command line.
pub fn bootname(s: Slot) -> &'static str {
    match s {
        Slot::A => "A",
        Slot::B => "B",
    }
}

pub fn parse_bootname(s: &str) -> Option<Slot> {
    match s {
        "A" => Some(Slot::A),
        "B" => Some(Slot::B),
        _ => None,
    }
}

pub struct UbootEnv {
    files: FileBoot,
    printenv: String,
    setenv: String,
    cmdline: PathBuf,
}

impl UbootEnv {
    /// `cmdline` is where the running slot is read from (`/proc/cmdline`).
    pub fn new(dir: &Path, printenv: &str, setenv: &str, cmdline: &Path) -> UbootEnv {
        UbootEnv {
            files: FileBoot::new(dir),
            printenv: printenv.into(),
            setenv: setenv.into(),
            cmdline: cmdline.into(),
        }
    }

    /// The whole environment (`fw_printenv` without names prints every
    /// variable, so an unset one is no error).
    fn env(&self) -> Result<HashMap<String, String>, SlotError> {
        let out = command::run(&self.printenv, &[])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    fn set(&self, name: &str, value: &str) -> Result<(), SlotError> {
        command::run(&self.setenv, &[name, value]).map(|_| ())
    }

    fn set_left(&self, s: Slot, left: u8) -> Result<(), SlotError> {
        self.set(&format!("BOOT_{}_LEFT", bootname(s)), &left.to_string())
    }

    fn set_first(&self, s: Slot) -> Result<(), SlotError> {
        let order = format!("{} {}", bootname(s), bootname(s.other()));
        self.set("BOOT_ORDER", &order)
    }

    fn booted(&self) -> Result<Option<Slot>, SlotError> {
        let line = std::fs::read_to_string(&self.cmdline)?;
        Ok(booted_from_cmdline(&line))
    }
}

/// `rauc.slot=A` on the kernel command line.
pub fn booted_from_cmdline(line: &str) -> Option<Slot> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .and_then(parse_bootname)
}

/// The state file overlaid with the environment (module notes).
pub fn overlay(
    mut s: BootState,
    env: &HashMap<String, String>,
    booted: Option<Slot>,
) -> Result<BootState, SlotError> {
    if let Some(b) = booted {
        s.active = b;
    }
    let Some(order) = env.get("BOOT_ORDER") else {
        // An environment never set up by an install: the file is all.
        return Ok(s);
    };
    let order = order
        .split_whitespace()
        .map(|n| {
            parse_bootname(n)
                .ok_or_else(|| SlotError::Command(format!("BOOT_ORDER names unknown slot {n:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let left = |slot: Slot| -> Result<u8, SlotError> {
        let name = format!("BOOT_{}_LEFT", bootname(slot));
        match env.get(&name) {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| SlotError::Command(format!("{name}={v:?} is not a count"))),
        }
    };
    let mut first = None;
    for &slot in &order {
        if left(slot)? > 0 {
            first = Some(slot);
            break;
        }
    }
    if let Some(f) = first {
        s.next = f;
    }
    for slot in [Slot::A, Slot::B] {
        let n = left(slot)?;
        let active = s.active;
        let info = s.slot_mut(slot);
        if info.state != SlotState::Pending {
            continue;
        }
        info.tries_left = n.min(NEW_SLOT_TRIES);
        if n == 0 && slot != active {
            info.state = SlotState::Bad;
            s.last_result = Some(format!(
                "update to {} in slot {} failed: not marked good after {NEW_SLOT_TRIES} boots",
                info.version.as_deref().unwrap_or("?"),
                slot.as_str()
            ));
        }
    }
    Ok(s)
}

impl BootControl for UbootEnv {
    type Writer = File;
    type Reader = File;

    fn tell(&self, change: Change) -> Result<(), SlotError> {
        match change {
            Change::Bad(s) => self.set_left(s, 0),
            // Tries before order: a power loss between the two leaves the
            // old order, which boots the old slot.
            Change::Activate(s) => {
                self.set_left(s, NEW_SLOT_TRIES)?;
                self.set_first(s)
            }
            Change::Good(s) => self.set_left(s, NEW_SLOT_TRIES),
            Change::Rollback { to, .. } => {
                self.set_left(to, NEW_SLOT_TRIES)?;
                self.set_first(to)
            }
        }
    }
    fn load(&self) -> Result<BootState, SlotError> {
        overlay(self.files.load()?, &self.env()?, self.booted()?)
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
    use crate::slots::SlotInfo;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn installed() -> BootState {
        BootState {
            a: SlotInfo {
                state: SlotState::Good,
                version: Some("1.0".into()),
                security_version: Some(1),
                tries_left: 0,
            },
            b: SlotInfo {
                state: SlotState::Pending,
                version: Some("2.0".into()),
                security_version: Some(1),
                tries_left: NEW_SLOT_TRIES,
            },
            next: Slot::B,
            ..BootState::default()
        }
    }

    #[test]
    fn the_tries_u_boot_counted_down_show_on_the_pending_slot() {
        let e = env(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "3"),
            ("BOOT_B_LEFT", "1"),
        ]);
        let s = overlay(installed(), &e, Some(Slot::B)).unwrap();
        assert_eq!(s.active, Slot::B);
        assert_eq!(s.next, Slot::B);
        assert_eq!(s.b.tries_left, 1);
        assert_eq!(s.b.state, SlotState::Pending);
    }

    #[test]
    fn a_pending_slot_u_boot_gave_up_on_is_a_failed_update() {
        let e = env(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_A_LEFT", "2"),
            ("BOOT_B_LEFT", "0"),
        ]);
        let s = overlay(installed(), &e, Some(Slot::A)).unwrap();
        assert_eq!(s.active, Slot::A);
        assert_eq!(s.next, Slot::A);
        assert_eq!(s.b.state, SlotState::Bad);
        assert!(s.last_result.unwrap().contains("2.0 in slot b failed"));
    }

    #[test]
    fn an_unknown_slot_or_a_count_that_is_not_one_is_an_error_not_a_guess() {
        let e = env(&[("BOOT_ORDER", "B C")]);
        assert!(matches!(
            overlay(installed(), &e, None),
            Err(SlotError::Command(_))
        ));
        let e = env(&[("BOOT_ORDER", "B A"), ("BOOT_B_LEFT", "lots")]);
        assert_eq!(overlay(installed(), &e, None).unwrap_err().exit_code(), 25);
    }

    #[test]
    fn the_running_slot_is_read_from_the_kernel_command_line() {
        let line = "console=ttyS0 root=/dev/mmcblk0p3 rauc.slot=B rootwait\n";
        assert_eq!(booted_from_cmdline(line), Some(Slot::B));
        assert_eq!(booted_from_cmdline("root=/dev/sda1"), None);
    }
}
