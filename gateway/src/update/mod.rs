//! Firmware updates as the running gateway sees them (`[update]`), over
//! `ecko-image`'s boot state and boot backends:
//!
//! - `readiness`: whether the gateway, just booted on a pending slot, does
//!   its job well enough to keep it (pure);
//! - `after_boot`: the task that marks the slot good once it does — and
//!   never otherwise, so the bootloader falls back on its own — and that
//!   records, once, an update the bootloader fell back from;
//! - [`status`]: both slots and the last result, for the dashboard, the
//!   hub's health and the `update_failed` alert.
//!
//! The boot state is read through the backend each time it is shown: the
//! bootloader and `ecko-image` change it behind the gateway's back.

pub mod after_boot;
pub mod install;
pub mod readiness;
pub mod staged;
pub mod usb;

use crate::config::{BootKind, UpdateConfig};
use ecko_image::backend::Backend;
use ecko_image::rauc::Rauc;
use ecko_image::slots::{BootControl, BootState, FileBoot, Slot, SlotError, SlotState};
use ecko_image::uboot::UbootEnv;
use serde::Serialize;

/// The backend `[update] boot` names, over `[update] slots`.
pub fn backend(c: &UpdateConfig) -> Backend {
    let dir = crate::config::resolve(&c.slots);
    match c.boot {
        BootKind::File => Backend::File(FileBoot::new(&dir)),
        BootKind::Uboot => Backend::Uboot(UbootEnv::new(
            &dir,
            &c.fw_printenv,
            &c.fw_setenv,
            &crate::config::resolve(&c.cmdline),
        )),
        BootKind::Rauc => Backend::Rauc(Rauc::new(&dir, &c.rauc)),
    }
}

/// The boot state as the backend reports it, read off the async threads
/// (the U-Boot and RAUC backends run programs).
pub async fn load(c: &UpdateConfig) -> Result<BootState, SlotError> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || backend(&c).load())
        .await
        .map_err(|e| SlotError::Io(std::io::Error::other(e.to_string())))?
}

/// One slot as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    pub slot: &'static str,
    /// `empty`, `pending`, `good`, `bad`.
    pub state: &'static str,
    pub version: Option<String>,
    pub security_version: Option<u64>,
    pub tries_left: u8,
    /// Running now.
    pub active: bool,
    /// Tried first at the next boot.
    pub boots_next: bool,
}

/// Both slots, the last result, and the update the bootloader fell back
/// from, if the state shows one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    pub slots: Vec<SlotView>,
    pub last_result: Option<String>,
    pub failed: Option<Failed>,
}

/// An update given up on: the slot that is not running is bad and still
/// carries the version it was installed with (a slot being written has
/// none), and the running one is good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failed {
    pub slot: &'static str,
    pub version: String,
}

pub fn state_name(s: SlotState) -> &'static str {
    match s {
        SlotState::Empty => "empty",
        SlotState::Pending => "pending",
        SlotState::Good => "good",
        SlotState::Bad => "bad",
    }
}

impl UpdateStatus {
    pub fn of(s: &BootState) -> UpdateStatus {
        let slots = [Slot::A, Slot::B]
            .into_iter()
            .map(|slot| {
                let i = s.slot(slot);
                SlotView {
                    slot: slot.as_str(),
                    state: state_name(i.state),
                    version: i.version.clone(),
                    security_version: i.security_version,
                    tries_left: i.tries_left,
                    active: s.active == slot,
                    boots_next: s.next == slot,
                }
            })
            .collect();
        UpdateStatus {
            slots,
            last_result: s.last_result.clone(),
            failed: failed(s),
        }
    }
}

/// See [`Failed`].
pub fn failed(s: &BootState) -> Option<Failed> {
    let other = s.active.other();
    let info = s.slot(other);
    (info.state == SlotState::Bad && s.slot(s.active).state == SlotState::Good)
        .then(|| info.version.clone())
        .flatten()
        .map(|version| Failed {
            slot: other.as_str(),
            version,
        })
}

/// Both slots now; `None` without `[update]`, or with the reason the state
/// could not be read.
pub async fn status(c: Option<&UpdateConfig>) -> Option<Result<UpdateStatus, String>> {
    let c = c?;
    Some(
        load(c)
            .await
            .map(|s| UpdateStatus::of(&s))
            .map_err(|e| e.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_image::slots::SlotInfo;

    fn info(state: SlotState, version: Option<&str>) -> SlotInfo {
        SlotInfo {
            state,
            version: version.map(str::to_string),
            security_version: Some(1),
            tries_left: 0,
        }
    }

    #[test]
    fn a_bad_slot_with_a_version_beside_the_running_good_one_is_a_failed_update() {
        let mut s = BootState {
            a: info(SlotState::Good, Some("1.0")),
            b: info(SlotState::Bad, Some("2.0")),
            ..BootState::default()
        };
        let f = failed(&s).unwrap();
        assert_eq!((f.slot, f.version.as_str()), ("b", "2.0"));
        // Being written: no version yet, nothing failed.
        s.b.version = None;
        assert_eq!(failed(&s), None);
        // Pending again after a new install: nothing failed either.
        s.b = info(SlotState::Pending, Some("2.1"));
        assert_eq!(failed(&s), None);
        let v = UpdateStatus::of(&s);
        assert_eq!(v.slots[0].state, "good");
        assert!(v.slots[0].active);
        assert_eq!(v.slots[1].version.as_deref(), Some("2.1"));
    }
}
