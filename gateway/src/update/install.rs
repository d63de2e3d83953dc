//! A bundle checked and installed with `[update]`'s trust, hardware and
//! backend, through `ecko_image::install` — the function `ecko-image
//! install` runs — for every front end (the admin page, the hub's
//! `firmware.install`). Each is audited by the caller's actor, refusals
//! too; a refused bundle never touches a slot, since `ecko_image` verifies
//! the whole bundle before it writes.
//!
//! The install runs on a blocking thread; how far it got is kept in an
//! [`InstallProgress`] the page polls.

use crate::config::UpdateConfig;
use crate::control::{Actor, Role};
use crate::journal::Journal;
use ecko_image::install::{self, Phase, Progress, Source};
use ecko_image::keys;
use ecko_image::manifest::Manifest;
use ecko_image::slots::BootControl;
use ecko_image::verify::{self, Checks};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("this needs the admin role")]
    Forbidden,
    #[error("trusted keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error(transparent)]
    Refused(#[from] verify::VerifyError),
    #[error(transparent)]
    Install(#[from] install::InstallError),
    #[error("another install is running")]
    Busy,
    #[error("{0}")]
    Internal(String),
}

/// A verified manifest as shown before an admin confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub version: String,
    pub security_version: u64,
    pub hardware: String,
    pub payload_kind: &'static str,
    pub payload_len: u64,
    pub payload_sha256: String,
    pub build_time: u64,
}

impl Verified {
    fn of(m: &Manifest) -> Verified {
        Verified {
            version: m.version.clone(),
            security_version: m.security_version,
            hardware: m.hardware.clone(),
            payload_kind: m.payload_kind.as_str(),
            payload_len: m.payload_len,
            payload_sha256: hex::encode(m.payload_sha256),
            build_time: m.build_time,
        }
    }
}

/// The whole bundle verified against this box as an install would (trust,
/// hardware, anti-rollback against the good slots, payload hash); nothing
/// is written.
pub async fn verify_bundle(c: &UpdateConfig, bundle: &Path) -> Result<Verified, UpdateError> {
    let (c, bundle) = (c.clone(), bundle.to_path_buf());
    blocking(move || {
        let trust = keys::read_trust(&crate::config::resolve(&c.trust))?;
        let state = super::backend(&c)
            .load()
            .map_err(|e| UpdateError::Internal(e.to_string()))?;
        let checks = Checks {
            trust: &trust,
            allow_dev_keys: keys::dev_keys_allowed(c.allow_dev_keys),
            hardware: Some(&c.hardware),
            installed_security_version: state.installed_security_version(),
        };
        let m = verify::verify_file(&bundle, &checks)?;
        Ok(Verified::of(&m))
    })
    .await
}

/// How far the install in progress got, for a page to poll.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProgressView {
    /// `starting`, `download`, `verify`, `write`, `read back`, `done`, `failed`;
    /// `None`: nothing installed since the start.
    pub phase: Option<&'static str>,
    pub done: u64,
    pub total: u64,
    /// The result in words once finished.
    pub result: Option<String>,
}

/// Shared between the install's thread and the pages that watch it.
#[derive(Debug, Clone, Default)]
pub struct InstallProgress(Arc<Mutex<ProgressView>>);

impl InstallProgress {
    pub fn now(&self) -> ProgressView {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn set(&self, f: impl FnOnce(&mut ProgressView)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
    /// Whether an install runs now (one at a time).
    pub fn busy(&self) -> bool {
        matches!(
            self.now().phase,
            Some("starting")
                | Some("download")
                | Some("verify")
                | Some("write")
                | Some("read back")
        )
    }
    /// Marks an install as started unless one runs; `false` when one does.
    fn claim(&self) -> bool {
        let mut p = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(
            p.phase,
            Some("starting")
                | Some("download")
                | Some("verify")
                | Some("write")
                | Some("read back")
        ) {
            return false;
        }
        *p = ProgressView {
            phase: Some("starting"),
            ..ProgressView::default()
        };
        true
    }
}

impl Progress for InstallProgress {
    fn start(&mut self, phase: Phase, total: u64) {
        self.set(|p| {
            p.phase = Some(match phase {
                Phase::Download => "download",
                Phase::Verify => "verify",
                Phase::Write => "write",
                Phase::ReadBack => "read back",
            });
            p.done = 0;
            p.total = total;
            p.result = None;
        });
    }
    fn advance(&mut self, bytes: u64) {
        self.set(|p| p.done += bytes);
    }
    fn finish(&mut self) {
        self.set(|p| p.done = p.total);
    }
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub slot: &'static str,
    pub manifest: Verified,
    /// The fingerprint of the key the bundle announced, trusted from now
    /// on (key rotation).
    pub trusted_key: Option<String>,
}

/// The install of this box: one at a time, whichever front end starts it,
/// since both slots are the box's.
pub fn current() -> &'static InstallProgress {
    static CURRENT: std::sync::LazyLock<InstallProgress> =
        std::sync::LazyLock::new(InstallProgress::default);
    &CURRENT
}

/// Installs `bundle` to the inactive slot, which boots next with its tries;
/// audited as `update.install` (or `update.refused`, with the reason) by
/// `actor`, who must be an admin. Progress is [`current`]'s; another install
/// running is refused.
pub async fn install_bundle(
    journal: &Journal,
    c: &UpdateConfig,
    actor: &Actor,
    bundle: &Path,
    allow_same_security_downgrade: bool,
) -> Result<Outcome, UpdateError> {
    if actor.require(Role::Admin).is_err() {
        return Err(UpdateError::Forbidden);
    }
    let progress = current().clone();
    if !progress.claim() {
        return Err(UpdateError::Busy);
    }
    let (cc, path) = (c.clone(), bundle.to_path_buf());
    let mut p = progress.clone();
    let done = blocking(move || {
        let trust_path = crate::config::resolve(&cc.trust);
        let trust = keys::read_trust(&trust_path)?;
        let src = Source {
            bundle: &path,
            trust: &trust,
            allow_dev_keys: keys::dev_keys_allowed(cc.allow_dev_keys),
            hardware: &cc.hardware,
            allow_same_security_downgrade,
            trust_dir: trust_path.is_dir().then_some(trust_path.as_path()),
        };
        let done = install::install_with_progress(&super::backend(&cc), &src, &mut p)?;
        Ok(Outcome {
            slot: done.slot.as_str(),
            manifest: Verified::of(&done.manifest),
            trusted_key: done.trusted_key.map(|k| k.fingerprint),
        })
    })
    .await;
    let (action, detail, result) = match &done {
        Ok(o) => (
            "update.install",
            serde_json::json!({"slot": o.slot, "version": o.manifest.version,
                "security_version": o.manifest.security_version,
                "forced_downgrade": allow_same_security_downgrade}),
            format!(
                "installed {} in slot {}: it boots next and is kept once the gateway is ready",
                o.manifest.version, o.slot
            ),
        ),
        Err(e) => (
            "update.refused",
            serde_json::json!({"reason": e.to_string()}),
            format!("refused: {e}"),
        ),
    };
    progress.set(|p| {
        p.phase = Some(if done.is_ok() { "done" } else { "failed" });
        p.result = Some(result);
    });
    let target = bundle.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Ok(Outcome {
        trusted_key: Some(fingerprint),
        manifest,
        ..
    }) = &done
    {
        tracing::warn!(key = %fingerprint, version = %manifest.version,
            "firmware key rotation: the installed bundle's next key is trusted from now on");
        let detail = serde_json::json!({"key": fingerprint, "version": manifest.version});
        if let Err(e) = journal
            .audit(
                &actor.name,
                "update.key_rotated",
                Some(fingerprint),
                Some(&detail.to_string()),
            )
            .await
        {
            tracing::error!(error = %e, "a firmware key rotation could not be audited");
        }
    }
    if let Err(e) = journal
        .audit(
            &actor.name,
            action,
            target.as_deref(),
            Some(&detail.to_string()),
        )
        .await
    {
        tracing::error!(error = %e, "a firmware install could not be audited");
    }
    done
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UpdateError> + Send + 'static,
) -> Result<T, UpdateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UpdateError::Internal(e.to_string()))?
}

/// Where bundles taken from the page or a URL are kept while checked and
/// installed: beside the journal, on the data partition.
pub fn staging_dir(journal: &Journal) -> PathBuf {
    journal
        .path()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("update")
}
