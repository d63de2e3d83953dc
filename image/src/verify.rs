//! Building, signing and verifying a bundle. Checks run in this order, each
//! before anything later is read: header and manifest cap, signer known,
//! development key policy, `verify_strict` signature, manifest decode,
//! hardware, anti-rollback, then the payload streamed through SHA-256.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};

use crate::format::{self, FormatError, RawHead};
use crate::keys::{KeyKind, PublicKey, SecretKey};
use crate::manifest::{self, Manifest, ManifestError};

/// Why a bundle was refused; each reason has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("bundle is not signed")]
    Unsigned,
    #[error("bundle is signed by a key that is not trusted ({0})")]
    UnknownKey(String),
    #[error("bundle is signed by a development key, which a release build refuses")]
    DevelopmentKey,
    #[error("bad signature")]
    BadSignature,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("bundle is for hardware {bundle:?}, this device is {device:?}")]
    WrongHardware { bundle: String, device: String },
    #[error("security version {bundle} is below the installed {installed}")]
    Downgrade { bundle: u64, installed: u64 },
    #[error("version {bundle} is older than the installed {installed} of the same security version {security_version} (--allow-same-security-downgrade installs it)")]
    VersionDowngrade {
        bundle: String,
        installed: String,
        security_version: u64,
    },
    #[error("payload SHA-256 does not match the manifest")]
    PayloadHash,
    #[error("bundle has data after its payload")]
    TrailingData,
}

impl VerifyError {
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Format(FormatError::NotABundle) => 10,
            VerifyError::Format(FormatError::UnsupportedFormat(_)) => 11,
            VerifyError::Format(FormatError::ManifestTooLarge(_)) => 12,
            VerifyError::Format(FormatError::Truncated(_)) => 13,
            VerifyError::Format(FormatError::Io(_)) => 1,
            VerifyError::Unsigned => 14,
            VerifyError::UnknownKey(_) => 15,
            VerifyError::DevelopmentKey => 16,
            VerifyError::BadSignature => 17,
            VerifyError::Manifest(_) => 18,
            VerifyError::WrongHardware { .. } => 19,
            VerifyError::Downgrade { .. } => 20,
            VerifyError::PayloadHash => 21,
            VerifyError::TrailingData => 22,
            VerifyError::VersionDowngrade { .. } => 26,
        }
    }
}

pub struct Checks<'a> {
    pub trust: &'a [PublicKey],
    pub allow_dev_keys: bool,
    pub hardware: Option<&'a str>,
    pub installed_security_version: Option<u64>,
}

/// Signature, manifest, hardware and anti-rollback; `r` is left at the payload.
pub fn verify_head<R: Read>(r: &mut R, c: &Checks) -> Result<(RawHead, Manifest), VerifyError> {
    let head = format::read_head(r)?;
    if head.is_unsigned() {
        return Err(VerifyError::Unsigned);
    }
    let Some(key) = c.trust.iter().find(|k| k.key.to_bytes() == head.signer) else {
        return Err(VerifyError::UnknownKey(hex::encode(&head.signer[..8])));
    };
    if key.kind == KeyKind::Development && !crate::keys::dev_keys_allowed(c.allow_dev_keys) {
        return Err(VerifyError::DevelopmentKey);
    }
    key.key
        .verify_strict(
            &head.signed_message(),
            &Signature::from_bytes(&head.signature),
        )
        .map_err(|_| VerifyError::BadSignature)?;
    let m = Manifest::decode(&head.manifest)?;
    if let Some(hw) = c.hardware {
        if hw != m.hardware {
            return Err(VerifyError::WrongHardware {
                bundle: m.hardware,
                device: hw.into(),
            });
        }
    }
    if let Some(installed) = c.installed_security_version {
        if m.security_version < installed {
            return Err(VerifyError::Downgrade {
                bundle: m.security_version,
                installed,
            });
        }
    }
    Ok((head, m))
}

/// A downgrade within one security version: a bundle of the installed
/// security version whose version is older than the installed one, refused
/// unless `allow` (a forced downgrade). A lower security version never gets
/// here: `verify_head` refuses it whatever is allowed.
pub fn check_version(
    m: &Manifest,
    installed: Option<(&str, u64)>,
    allow: bool,
) -> Result<(), VerifyError> {
    let Some((version, security_version)) = installed else {
        return Ok(());
    };
    if allow
        || m.security_version != security_version
        || manifest::compare_versions(&m.version, version).is_ge()
    {
        return Ok(());
    }
    Err(VerifyError::VersionDowngrade {
        bundle: m.version.clone(),
        installed: version.into(),
        security_version,
    })
}

/// Streams `len` payload bytes through SHA-256 into `out`, then checks the
/// hash and that nothing follows.
pub fn stream_payload<R: Read, W: Write>(
    r: &mut R,
    m: &Manifest,
    out: &mut W,
) -> Result<(), VerifyError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = m.payload_len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = format::read_full(r, &mut buf[..want]).map_err(FormatError::Io)?;
        if n == 0 {
            return Err(FormatError::Truncated("payload").into());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(FormatError::Io)?;
        left -= n as u64;
    }
    if format::read_full(r, &mut [0u8; 1]).map_err(FormatError::Io)? != 0 {
        return Err(VerifyError::TrailingData);
    }
    if hasher.finalize()[..] != m.payload_sha256 {
        return Err(VerifyError::PayloadHash);
    }
    Ok(())
}

/// The whole bundle checked, payload included, without writing anything.
pub fn verify_file(path: &Path, c: &Checks) -> Result<Manifest, VerifyError> {
    let mut r = BufReader::new(File::open(path).map_err(FormatError::Io)?);
    let (_, m) = verify_head(&mut r, c)?;
    stream_payload(&mut r, &m, &mut io::sink())?;
    Ok(m)
}

/// Writes a bundle of `payload` (streamed twice: hashed, then copied),
/// signed when a key is given.
pub fn build(
    payload: &Path,
    mut m: Manifest,
    key: Option<&SecretKey>,
    out: &Path,
) -> io::Result<Manifest> {
    let mut hasher = Sha256::new();
    let mut f = File::open(payload)?;
    m.payload_len = io::copy(&mut f, &mut HashWriter(&mut hasher))?;
    m.payload_sha256 = hasher.finalize().into();
    manifest::check_text("hardware", &m.hardware).map_err(io::Error::other)?;
    manifest::check_text("version", &m.version).map_err(io::Error::other)?;
    let bytes = m.encode();
    let mut head = RawHead {
        header: format::encode_header(bytes.len() as u32),
        manifest: bytes,
        signature: [0; 64],
        signer: [0; 32],
    };
    if let Some(k) = key {
        sign_head(&mut head, k);
    }
    let mut w = io::BufWriter::new(File::create(out)?);
    w.write_all(&format::encode_head(&head))?;
    io::copy(&mut File::open(payload)?, &mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(m)
}

pub fn sign_head(head: &mut RawHead, k: &SecretKey) {
    head.signature = k.key.sign(&head.signed_message()).to_bytes();
    head.signer = k.key.verifying_key().to_bytes();
}

struct HashWriter<'a>(&'a mut Sha256);
impl Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Signs a bundle in place: only its signature block is rewritten, so a
/// 500 MB bundle is not copied.
pub fn sign_file(path: &Path, k: &SecretKey) -> Result<(), VerifyError> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(FormatError::Io)?;
    let mut head = format::read_head(&mut BufReader::new(&mut f))?;
    // Refuse to sign what could not be decoded after signing.
    Manifest::decode(&head.manifest)?;
    sign_head(&mut head, k);
    let at = head.payload_offset() - format::SIGNATURE_BLOCK_LEN as u64;
    let io = |e| VerifyError::Format(FormatError::Io(e));
    f.seek(SeekFrom::Start(at)).map_err(io)?;
    f.write_all(&head.signature).map_err(io)?;
    f.write_all(&head.signer).map_err(io)?;
    f.sync_all().map_err(io)
}

/// The manifest of a bundle, not verified (for `info`).
pub fn read_unverified(path: &Path) -> Result<(RawHead, Manifest), VerifyError> {
    let mut r = BufReader::new(File::open(path).map_err(FormatError::Io)?);
    let head = format::read_head(&mut r)?;
    let m = Manifest::decode(&head.manifest)?;
    Ok((head, m))
}
