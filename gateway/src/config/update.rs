//! `[update]`: signed firmware updates through `ecko-image` on this box.
//!
//! Without the section the gateway does not manage updates at all: it never
//! reads a boot state, never marks a slot good, and the pages, health and
//! commands say so. With it, the gateway marks the running pending slot good
//! once its own readiness check passes (`update::readiness`), reports a
//! fallen-back update, and installs bundles through the same function as
//! `ecko-image install`. Like `[hub]`, it is read at start.

use super::units::{Size, Span};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The boot backend, named as `ecko-image --boot` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// `slots/boot-state.json` is the whole record.
    File,
    /// The U-Boot environment (`fw_printenv`/`fw_setenv`).
    Uboot,
    /// RAUC's slot status (`rauc status`).
    Rauc,
}

impl BootKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BootKind::File => "file",
            BootKind::Uboot => "uboot",
            BootKind::Rauc => "rauc",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// `boot-state.json`, and `slots.toml` or the slot image files
    /// (`ecko-image --slots`).
    pub slots: PathBuf,
    #[serde(default = "default_boot")]
    pub boot: BootKind,
    /// A public key file, or a directory of `*.pub` key files.
    #[serde(default = "default_trust")]
    pub trust: PathBuf,
    /// This box's hardware string; a bundle for other hardware is refused.
    pub hardware: String,
    /// After a boot on a pending slot, how long readiness waits for a first
    /// successful upstream contact before it counts as ready without one.
    #[serde(default = "default_grace")]
    pub grace: Span,
    /// Accept bundles signed with a development key (debug builds always do).
    #[serde(default)]
    pub allow_dev_keys: bool,
    /// The largest bundle taken from the page or a URL.
    #[serde(default = "default_max_bundle")]
    pub max_bundle_size: Size,
    #[serde(default = "default_fw_printenv")]
    pub fw_printenv: String,
    #[serde(default = "default_fw_setenv")]
    pub fw_setenv: String,
    /// Whose `rauc.slot=` names the running slot (`uboot`).
    #[serde(default = "default_cmdline")]
    pub cmdline: PathBuf,
    #[serde(default = "default_rauc")]
    pub rauc: String,
    /// Where a USB stick is mounted: a `*.bundle` on it is offered on the
    /// dashboard and the Update page, installed only once an admin confirms.
    pub usb_path: Option<PathBuf>,
}

impl UpdateConfig {
    /// Every problem of the section, with the key it is about.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.hardware.trim().is_empty() {
            out.push(("hardware", "`hardware` must not be empty".into()));
        }
        if self.slots.as_os_str().is_empty() {
            out.push(("slots", "`slots` must name a directory".into()));
        }
        if self.max_bundle_size.0 < 1 << 20 {
            out.push((
                "max_bundle_size",
                "`max_bundle_size` must be at least 1 MiB".into(),
            ));
        }
        if self.grace.0 > Duration::from_secs(24 * 3600) {
            out.push(("grace", "`grace` must be at most 24h".into()));
        }
        out
    }
}

fn default_boot() -> BootKind {
    BootKind::File
}
fn default_trust() -> PathBuf {
    PathBuf::from("/etc/ecko/keys")
}
fn default_grace() -> Span {
    Span(Duration::from_secs(5 * 60))
}
fn default_max_bundle() -> Size {
    Size(2 << 30)
}
fn default_fw_printenv() -> String {
    "fw_printenv".into()
}
fn default_fw_setenv() -> String {
    "fw_setenv".into()
}
fn default_cmdline() -> PathBuf {
    PathBuf::from("/proc/cmdline")
}
fn default_rauc() -> String {
    "rauc".into()
}
