//! What one reset wipes and writes, decided from the configuration in
//! force before anything is touched (see the module note for the rules).

use super::{ResetError, DEFAULT_CONFIG};
use crate::config::edit::ConfigDocument;
use crate::config::{resolve, Config, EndpointKind};
use std::path::{Path, PathBuf};

/// The top-level sections a reset carries over into the default
/// configuration, and the sub-tables of them it does not.
const KEPT_SECTIONS: &[&str] = &["service", "update", "hub"];
const DROPPED_TABLES: &[(&str, &str)] = &[("hub", "commands")];

/// One reset, whole: enough to finish it after a power cut.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// The configuration file the gateway runs on.
    pub config_file: PathBuf,
    /// What it holds after the reset.
    pub config_text: String,
    /// Files and directories removed (a missing one is fine).
    pub wipe: Vec<PathBuf>,
    /// What is kept on purpose, for the log and the page.
    pub kept: Vec<PathBuf>,
    /// Who asked for it, as the audit log names them.
    pub requested_by: String,
}

impl Plan {
    /// The reset of the gateway running `config` (loaded from its file),
    /// asked for by `requested_by`; the new configuration is checked to
    /// load before the plan is returned.
    pub fn for_config(config: &Config, requested_by: &str) -> Result<Plan, ResetError> {
        let file = config.source.clone().ok_or(ResetError::NoFile)?;
        let text = std::fs::read_to_string(&file).map_err(|source| ResetError::Read {
            path: file.display().to_string(),
            source,
        })?;
        let config_text = reset_text(config, &text)?;
        Config::parse(&config_text, &file.display().to_string(), |n| {
            std::env::var(n).ok()
        })
        .map_err(|e| ResetError::Invalid(e.to_string()))?;
        let (wipe, kept) = paths(config)?;
        Ok(Plan {
            config_file: resolve(&file),
            config_text,
            wipe,
            kept,
            requested_by: requested_by.to_string(),
        })
    }
}

/// The default configuration with the kept sections of `current` (the
/// file's text) after it, and the journal where it is now.
fn reset_text(config: &Config, current: &str) -> Result<String, ResetError> {
    let unreadable = |e: crate::config::edit::EditError| ResetError::Unreadable(e.to_string());
    let current = ConfigDocument::parse(current).map_err(unreadable)?;
    let mut base = ConfigDocument::parse(DEFAULT_CONFIG).map_err(unreadable)?;
    let default = Config::parse(DEFAULT_CONFIG, "default", |n| std::env::var(n).ok())
        .map_err(|e| ResetError::Invalid(e.to_string()))?;
    let journal = resolve(&config.journal.path);
    if resolve(&default.journal.path) != journal {
        use crate::config::edit::{Change, EditValue};
        // A literal path: `${` in it must not read as a reference.
        let literal = journal.display().to_string().replace("${", "$${");
        base.set_section_value("journal", "path", &Change::Set(EditValue::String(literal)))
            .map_err(unreadable)?;
    }
    let kept = current.tables_text(KEPT_SECTIONS, DROPPED_TABLES);
    let mut text = base.to_text();
    if !kept.trim().is_empty() {
        text.push_str("\n# Kept by the factory reset: the device's identity and hardware.\n");
        text.push_str(&kept);
    }
    Ok(text)
}

/// (wiped, kept) paths of the gateway running `config`.
fn paths(config: &Config) -> Result<(Vec<PathBuf>, Vec<PathBuf>), ResetError> {
    let journal = resolve(&config.journal.path);
    let data = crate::control::config::data_dir(config);
    let mut wipe: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut p = journal.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        })
        .collect();
    for name in [
        crate::control::setup_code::FILE_NAME,
        "config-history",
        "update",
        "dicom",
        "astm-trace.sock",
    ] {
        wipe.push(data.join(name));
    }
    for e in &config.endpoints {
        if let EndpointKind::Dicom(d) = &e.kind {
            let store = d.store_dir(&e.name, &journal);
            if !wipe.iter().any(|w| store.starts_with(w)) {
                wipe.push(store);
            }
        }
    }
    let hub = &config.hub;
    let identity: Vec<PathBuf> = [&hub.cert, &hub.key, &hub.ca_file]
        .into_iter()
        .flatten()
        .map(|p| resolve(p))
        .collect();
    let certificates = crate::control::certificates::directory(&data);
    match std::fs::read_dir(&certificates) {
        Ok(entries) => {
            for entry in entries {
                let path = entry
                    .map_err(ResetError::io("cannot list", &certificates))?
                    .path();
                if !identity.contains(&path) {
                    wipe.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ResetError::io("cannot list", &certificates)(e)),
    }
    let mut kept = identity;
    kept.push(data.join("admin-tls"));
    if let Some(u) = &config.update {
        kept.push(resolve(&u.slots));
        kept.push(resolve(&u.trust));
    }
    // A kept path under a wiped one (slots in `update/`) keeps it whole.
    wipe.retain(|w| !kept.iter().any(|k| k.starts_with(w)));
    Ok((wipe, kept))
}

/// Whether `plan` wipes only absolute paths below the root and nothing it
/// keeps, as every plan [`Plan::for_config`] makes does.
pub(super) fn plausible(plan: &Plan) -> bool {
    plan.wipe
        .iter()
        .all(|p| p.is_absolute() && p.components().count() > 2 && !is_kept(plan, p))
}

fn is_kept(plan: &Plan, path: &Path) -> bool {
    plan.kept.iter().any(|k| k.starts_with(path))
}
