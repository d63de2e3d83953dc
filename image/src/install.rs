//! Installing a bundle to the inactive slot. The order is what makes a
//! power loss at any point harmless:
//!
//! 1. the whole bundle verified (signature, hardware, anti-rollback against
//!    the good slots, no older version of the same security version unless
//!    forced, payload hash) in a read-only pass, and the inactive slot
//!    checked writable (a partition: a block device, not mounted, large
//!    enough for the payload);
//! 2. the inactive slot marked bad in the state, so a half-written slot is
//!    never booted;
//! 3. the payload streamed into it through a fixed buffer while hashed
//!    again (the bundle may have changed since step 1), then synced and
//!    dropped from the page cache;
//! 4. the written slot read back (exactly the payload's length: a
//!    partition goes on past it) and hashed, then a key the bundle
//!    announces (`next_key`, signed with it by the current key) added to
//!    the trusted keys directory, so that the next bundle may be signed by
//!    it (key rotation; a key file written atomically: the key is vouched
//!    for whether or not the install completes);
//! 5. activation (pending, [`NEW_SLOT_TRIES`] tries, boots next) as the last
//!    atomic write, then the bootloader told (U-Boot, RAUC).
//!
//! Until step 5 the state still boots the old good slot. [`Step`] names the
//! points after each write, where a test's hook can cut the install short.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::format::FormatError;
use crate::keys::{self, KeyKind, PublicKey};
use crate::manifest::Manifest;
use crate::slots::{BootControl, Change, Slot, SlotError, SlotInfo, SlotState, NEW_SLOT_TRIES};
use crate::verify::{self, Checks, VerifyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The inactive slot is recorded as bad.
    MarkedBad,
    /// The first buffer of the payload is in the slot.
    PayloadPartial,
    /// The whole payload is in the slot and synced.
    PayloadWritten,
    /// The new slot is pending and boots next.
    Activated,
}

pub const ALL_STEPS: [Step; 4] = [
    Step::MarkedBad,
    Step::PayloadPartial,
    Step::PayloadWritten,
    Step::Activated,
];

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The key the bundle announces cannot be trusted here.
    #[error("next key: {0}")]
    NextKey(String),
}

impl InstallError {
    /// A refused bundle keeps `verify`'s code; slot failures are 23 and 24.
    pub fn exit_code(&self) -> i32 {
        match self {
            InstallError::Verify(e) => e.exit_code(),
            InstallError::Slot(e) => e.exit_code(),
            InstallError::NextKey(_) => 27,
        }
    }
}

pub struct Source<'a> {
    pub bundle: &'a Path,
    pub trust: &'a [PublicKey],
    pub allow_dev_keys: bool,
    pub hardware: &'a str,
    /// Allows an older version of the installed security version (never a
    /// lower security version).
    pub allow_same_security_downgrade: bool,
    /// The trusted keys directory `trust` was read from: a key the bundle
    /// announces is added there. Without one (a single trusted key file)
    /// a bundle announcing a key not yet trusted is refused.
    pub trust_dir: Option<&'a Path>,
}

#[derive(Debug)]
pub struct Installed {
    pub slot: Slot,
    pub manifest: Manifest,
    /// The key the bundle announced, now trusted; `None` when it announced
    /// none or one already trusted.
    pub trusted_key: Option<TrustedKey>,
}

/// A key added to the trusted keys directory by an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub fingerprint: String,
    pub development: bool,
    pub path: PathBuf,
}

/// The key `m` announces that is not trusted yet, checked before anything
/// is written: a valid ed25519 key, a development one only where those are
/// allowed, and somewhere to add it.
fn announced_key(m: &Manifest, src: &Source) -> Result<Option<PublicKey>, InstallError> {
    let Some(next) = &m.next_key else {
        return Ok(None);
    };
    let key = PublicKey::of_next(next).ok_or_else(|| {
        InstallError::NextKey("the announced key is not a valid ed25519 public key".into())
    })?;
    if src.trust.iter().any(|k| k.key == key.key) {
        return Ok(None);
    }
    if key.kind == KeyKind::Development && !keys::dev_keys_allowed(src.allow_dev_keys) {
        return Err(InstallError::NextKey(format!(
            "the bundle announces development key {}, which a release build refuses",
            key.fingerprint()
        )));
    }
    if src.trust_dir.is_none() {
        return Err(InstallError::NextKey(format!(
            "the bundle announces key {} as the next trusted key, but the trust is a single \
             key file: give the trusted keys directory",
            key.fingerprint()
        )));
    }
    Ok(Some(key))
}

/// The passes over the payload, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The bundle fetched from a URL (`download`), before any other pass;
    /// its total is 0 when the server did not say.
    Download,
    /// The bundle read and hashed before anything is written.
    Verify,
    /// The payload streamed into the slot.
    Write,
    /// The slot read back and hashed.
    ReadBack,
}

/// Told how far each [`Phase`] got, in payload bytes.
pub trait Progress {
    fn start(&mut self, phase: Phase, total: u64);
    fn advance(&mut self, bytes: u64);
    fn finish(&mut self);
}

/// No display.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: Phase, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Installs without interruption.
pub fn install<B: BootControl>(b: &B, src: &Source) -> Result<Installed, InstallError> {
    install_with_progress(b, src, &mut NoProgress)
}

/// As [`install`], telling `progress` how far each pass over the payload got.
pub fn install_with_progress<B: BootControl>(
    b: &B,
    src: &Source,
    progress: &mut dyn Progress,
) -> Result<Installed, InstallError> {
    run(b, src, &mut |_| Ok(()), progress)
}

/// As [`install`]; `hook` runs after each [`Step`] and an error from it
/// stops the install there, as a power loss would.
pub fn install_with_hook<B: BootControl>(
    b: &B,
    src: &Source,
    hook: &mut dyn FnMut(Step) -> io::Result<()>,
) -> Result<Installed, InstallError> {
    run(b, src, hook, &mut NoProgress)
}

fn run<B: BootControl>(
    b: &B,
    src: &Source,
    hook: &mut dyn FnMut(Step) -> io::Result<()>,
    progress: &mut dyn Progress,
) -> Result<Installed, InstallError> {
    let mut state = b.load()?;
    let active = state.active;
    if state.slot(active).state == SlotState::Pending {
        // Writing the other slot now could overwrite the only good one.
        return Err(SlotError::Refused(format!(
            "slot {} is running but not marked good yet: mark-good or rollback first",
            active.as_str()
        ))
        .into());
    }
    let checks = Checks {
        trust: src.trust,
        allow_dev_keys: src.allow_dev_keys,
        hardware: Some(src.hardware),
        installed_security_version: state.installed_security_version(),
    };
    let installed = state
        .installed()
        .and_then(|i| Some((i.version.clone()?, i.security_version?)));
    let m = {
        let mut r = BufReader::new(
            File::open(src.bundle).map_err(|e| VerifyError::Format(FormatError::Io(e)))?,
        );
        let (_, m) = verify::verify_head(&mut r, &checks)?;
        verify::check_version(
            &m,
            installed.as_ref().map(|(v, sv)| (v.as_str(), *sv)),
            src.allow_same_security_downgrade,
        )?;
        progress.start(Phase::Verify, m.payload_len);
        verify::stream_payload(&mut r, &m, &mut Counted(io::sink(), &mut *progress))?;
        progress.finish();
        m
    };
    let next_key = announced_key(&m, src)?;
    let forced = installed.as_ref().is_some_and(|(v, sv)| {
        m.security_version == *sv && crate::manifest::compare_versions(&m.version, v).is_lt()
    });

    let target = active.other();
    b.check_writable(target, m.payload_len)?;
    *state.slot_mut(target) = SlotInfo {
        state: SlotState::Bad,
        version: None,
        security_version: None,
        tries_left: 0,
    };
    state.next = active;
    b.store(&state)?;
    // The bootloader may still hold the target as the fallback slot.
    b.tell(Change::Bad(target))?;
    hook(Step::MarkedBad).map_err(SlotError::Io)?;

    let mut r = BufReader::new(
        File::open(src.bundle).map_err(|e| VerifyError::Format(FormatError::Io(e)))?,
    );
    let (_, m2) = verify::verify_head(&mut r, &checks)?;
    if m2 != m {
        // The bundle was replaced since the first pass: its payload is not
        // the one verified.
        return Err(VerifyError::PayloadHash.into());
    }
    progress.start(Phase::Write, m.payload_len);
    let mut w = HookWriter {
        inner: Counted(b.write_slot(target, m.payload_len)?, &mut *progress),
        hook,
        written: false,
        failed: false,
    };
    if let Err(e) = verify::stream_payload(&mut r, &m, &mut w) {
        return Err(if w.failed {
            match e {
                VerifyError::Format(FormatError::Io(io)) => SlotError::Io(io).into(),
                other => other.into(),
            }
        } else {
            e.into()
        });
    }
    let HookWriter { inner, hook, .. } = w;
    b.finish_slot(inner.0).map_err(SlotError::Io)?;
    progress.finish();
    hook(Step::PayloadWritten).map_err(SlotError::Io)?;

    progress.start(Phase::ReadBack, m.payload_len);
    check_slot(b, target, &m, &mut *progress)?;
    progress.finish();

    let trusted_key = match (&next_key, src.trust_dir) {
        (Some(k), Some(dir)) => {
            let path = keys::add_trusted(dir, k)
                .map_err(|e| SlotError::Io(io::Error::other(e.to_string())))?;
            Some(TrustedKey {
                fingerprint: k.fingerprint(),
                development: k.kind == KeyKind::Development,
                path,
            })
        }
        _ => None,
    };

    let info = state.slot_mut(target);
    info.state = SlotState::Pending;
    info.version = Some(m.version.clone());
    info.security_version = Some(m.security_version);
    info.tries_left = NEW_SLOT_TRIES;
    state.next = target;
    let mut result = match &installed {
        Some((from, _)) if forced => format!(
            "installed {} in slot {}, pending (forced downgrade from {from})",
            m.version,
            target.as_str()
        ),
        _ => format!(
            "installed {} in slot {}, pending",
            m.version,
            target.as_str()
        ),
    };
    if let Some(k) = &trusted_key {
        result.push_str(&format!("; key {} trusted from now on", k.fingerprint));
    }
    state.last_result = Some(result);
    b.store(&state)?;
    // Last: until the bootloader is told, it boots the old slot, and the
    // state it reports says so.
    b.tell(Change::Activate(target))?;
    hook(Step::Activated).map_err(SlotError::Io)?;
    Ok(Installed {
        slot: target,
        manifest: m,
        trusted_key,
    })
}

/// The slot read back: exactly the payload's length and hash, read as the
/// bundle's payload was.
fn check_slot<B: BootControl>(
    b: &B,
    slot: Slot,
    m: &Manifest,
    progress: &mut dyn Progress,
) -> Result<(), SlotError> {
    let mut r = b.read_slot(slot)?.take(m.payload_len);
    let mut out = Counted(io::sink(), progress);
    crate::verify::stream_payload(&mut r, m, &mut out).map_err(|e| {
        SlotError::Io(io::Error::other(format!(
            "slot {} does not read back as written: {e}",
            slot.as_str()
        )))
    })
}

/// Counts what passes through into a [`Progress`].
struct Counted<'p, W>(W, &'p mut dyn Progress);

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.0.write(b)?;
        self.1.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Tells slot write failures apart from bundle read failures, and runs the
/// hook after the first buffer.
struct HookWriter<'h, W> {
    inner: W,
    hook: &'h mut dyn FnMut(Step) -> io::Result<()>,
    written: bool,
    failed: bool,
}

impl<W: Write> Write for HookWriter<'_, W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(b).and_then(|n| {
            if !self.written {
                self.written = true;
                self.inner.flush()?;
                (self.hook)(Step::PayloadPartial)?;
            }
            Ok(n)
        });
        self.failed |= r.is_err();
        r
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}
