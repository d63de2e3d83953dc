//! Carrying a [`Plan`] out: the marker first, then the wipe, the new
//! configuration, and the marker removed; and, at a start, a marker left
//! by a power cut finished before anything reads the configuration.

use super::{marker_path, Plan, ResetError};
use crate::config::history::write_atomically;
use crate::config::resolve;
use std::io;
use std::path::{Path, PathBuf};

/// The points after each write of a reset, where a test's hook can cut it
/// short as a power cut would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    MarkerWritten,
    Wiped,
    ConfigWritten,
    MarkerRemoved,
}

/// Resets the box as `plan` says. The gateway must not be running on it.
pub fn perform(plan: &Plan) -> Result<(), ResetError> {
    perform_with_hook(plan, &mut |_| Ok(()))
}

/// As [`perform`]; `hook` runs after each [`Step`] and an error from it
/// stops the reset there.
pub fn perform_with_hook(
    plan: &Plan,
    hook: &mut dyn FnMut(Step) -> io::Result<()>,
) -> Result<(), ResetError> {
    plan.write_marker()?;
    let marker = marker_path(&plan.config_file);
    hook(Step::MarkerWritten).map_err(ResetError::io("stopped after", &marker))?;
    finish(plan, &marker, hook)
}

impl Plan {
    /// Writes the plan as the marker beside the configuration file: from
    /// here on, every start finishes this reset.
    pub fn write_marker(&self) -> Result<(), ResetError> {
        let marker = marker_path(&self.config_file);
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| ResetError::Unreadable(e.to_string()))?;
        write_atomically(&marker, &json).map_err(|e| ResetError::Io {
            what: "cannot write the reset marker",
            path: marker.display().to_string(),
            source: io::Error::other(e),
        })
    }
}

fn finish(
    plan: &Plan,
    marker: &Path,
    hook: &mut dyn FnMut(Step) -> io::Result<()>,
) -> Result<(), ResetError> {
    let mut parents: Vec<PathBuf> = Vec::new();
    for path in &plan.wipe {
        remove(path)?;
        if let Some(parent) = path.parent() {
            if !parents.iter().any(|p| p == parent) {
                parents.push(parent.to_path_buf());
            }
        }
    }
    for dir in &parents {
        sync_dir(dir)?;
    }
    hook(Step::Wiped).map_err(ResetError::io("stopped after wiping", marker))?;
    write_atomically(&plan.config_file, &plan.config_text).map_err(|e| ResetError::Io {
        what: "cannot write the reset configuration",
        path: plan.config_file.display().to_string(),
        source: io::Error::other(e),
    })?;
    hook(Step::ConfigWritten).map_err(ResetError::io("stopped after", &plan.config_file))?;
    remove(marker)?;
    if let Some(dir) = marker.parent() {
        sync_dir(dir)?;
    }
    hook(Step::MarkerRemoved).map_err(ResetError::io("stopped after removing", marker))?;
    Ok(())
}

/// Before the gateway reads `config`: finishes a reset a power cut
/// interrupted, and says which. A marker that is not a plan of this
/// configuration (written by hand, or for another file) is moved aside as
/// `….unreadable` and the gateway starts on what is there.
pub fn finish_pending(config: &Path) -> Result<Option<Plan>, ResetError> {
    let config = resolve(config);
    let marker = marker_path(&config);
    let text = match std::fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ResetError::io("cannot read the reset marker", &marker)(e)),
    };
    let plan = serde_json::from_str::<Plan>(&text)
        .map_err(|e| e.to_string())
        .and_then(|p| {
            if p.config_file != config {
                Err(format!("it resets {}", p.config_file.display()))
            } else if !super::plan::plausible(&p) {
                Err("it would wipe a kept path or a path that is not absolute".into())
            } else {
                Ok(p)
            }
        });
    match plan {
        Ok(plan) => {
            tracing::warn!(
                target: "ecko_gateway",
                marker = %marker.display(),
                requested_by = plan.requested_by,
                "an interrupted factory reset is finished before the start"
            );
            finish(&plan, &marker, &mut |_| Ok(()))?;
            Ok(Some(plan))
        }
        Err(reason) => {
            let mut aside = marker.as_os_str().to_owned();
            aside.push(".unreadable");
            std::fs::rename(&marker, &aside).map_err(ResetError::io(
                "cannot move aside the reset marker",
                &marker,
            ))?;
            tracing::error!(
                marker = %marker.display(),
                reason,
                "a reset marker that is not a reset plan was moved aside; starting on the files as they are"
            );
            Ok(None)
        }
    }
}

/// Removes a file, socket or directory tree; one already gone is fine.
fn remove(path: &Path) -> Result<(), ResetError> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ResetError::io("cannot remove", path)(e))
        }
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ResetError> {
    match std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(ResetError::io("cannot flush the directory", dir)(e))
        }
        _ => Ok(()),
    }
}
