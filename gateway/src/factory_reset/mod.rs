//! Factory reset: the journal and the configuration back to the defaults,
//! the device's identity kept.
//!
//! **Wiped**, everything a site put on the box and everything it took in:
//! - the journal (`journal.db` and its `-wal`, `-shm` and `-journal`
//!   files): messages, deliveries, orders, statistics, the audit log, the
//!   admin page's users, their sessions and API tokens;
//! - the configuration: the file the gateway runs on is replaced by the
//!   embedded default (`config/gateway.toml`) plus the kept sections below;
//!   its versions (`config-history/`) go with it;
//! - uploaded certificates and keys (`certificates/`) except the files the
//!   kept `[hub]` section names (`cert`, `key`, `ca_file`);
//! - the first-run setup code (`setup-code`): with no user left, the next
//!   start makes a new one, so the setup needs the device's code again;
//! - staged firmware bundles (`update/`), the DICOM objects the store SCPs
//!   kept (`dicom/`, or an endpoint's own `store`), the ASTM trace socket.
//!
//! **Kept**, what makes this box this device:
//! - `[hub]` (broker, site and device names, client id, the client
//!   certificate, key and CA it names, the hub's config key) without
//!   `[hub.commands]`, which returns to its default policy;
//! - `[update]` (hardware string, trusted keys, slot directory) and the
//!   A/B slots and boot state under it, untouched;
//! - `[service]` (watchdog, LEDs, reset button: the board's wiring);
//! - the journal's `path` (where the data partition is), so the device's
//!   own admin certificate in `admin-tls/` beside it is found again; an
//!   `[admin]` certificate uploaded in its place is wiped;
//! - the trusted update keys (`/etc/ecko/keys`, read-only).
//!
//! Not touched: the folders endpoints exchange files through (drop
//! folders, file destinations, SFTP): they belong to the systems on the
//! other side.
//!
//! **Crash-safe.** The reset is a [`Plan`] computed and validated while
//! nothing is touched, then written whole as a marker beside the
//! configuration file (`gateway.toml.factory-reset`, atomically: temporary
//! file, fsync, rename, directory fsync). Only then are the paths wiped,
//! the new configuration written atomically and the marker removed. A
//! power cut before the marker's rename leaves the old state; after it,
//! every start (`run`, `factory-reset`) finds the marker and finishes the
//! same plan before reading the configuration: each step can be done
//! twice. So a box is either as it was or reset, never half of each.
//!
//! **Restart.** The running gateway stops in order (senders get their
//! ACKs, batches settle, the journal closes), wipes, and exits with
//! [`RESTART_EXIT_CODE`] (75); the systemd unit restarts on it
//! (`RestartForceExitStatus=75`) without counting it as a failure
//! (`SuccessExitStatus=75`), and the new process comes up as on first boot.
//! A fresh process rather than a re-exec: nothing of the old one (threads,
//! descriptors, a replaced binary) carries over.

mod perform;
mod plan;
mod request;

pub use perform::{finish_pending, perform, perform_with_hook, Step};
pub use plan::Plan;
pub use request::{Requested, Requests};

use std::path::{Path, PathBuf};

/// The configuration a reset starts from (the file `/etc/ecko/gateway.toml`
/// ships as).
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/gateway.toml");

/// The exit code of a gateway that stopped for a factory reset and wants
/// to be started again (`EX_TEMPFAIL`).
pub const RESTART_EXIT_CODE: u8 = 75;

/// The hub event journalled (and sent, when the hub takes it in time)
/// before the journal is wiped.
pub const HUB_EVENT: &str = "device.factory_reset";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("the gateway runs without a configuration file; there is nothing to reset")]
    NoFile,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration file cannot be read for the reset: {0}")]
    Unreadable(String),
    #[error("the reset configuration would not load: {0}")]
    Invalid(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the reset marker {path} does not read as a reset plan: {reason}")]
    Marker { path: String, reason: String },
}

impl ResetError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResetError {
        let path = path.display().to_string();
        move |source| ResetError::Io { what, path, source }
    }
}

/// The marker of an unfinished reset of the gateway running on `config`.
pub fn marker_path(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".factory-reset");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests;
