//! Key files and the trust set. A secret key is one line `ecko-image
//! secret-key v1 KIND HEX` (mode 0600), a public key one line `ecko-image
//! public-key v1 KIND HEX`; KIND is `release` or `development`. A
//! development key is refused by a release build unless explicitly allowed
//! (`dev_keys_allowed`). The key an installed bundle announces joins a
//! trusted keys directory as one more such file (`add_trusted`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::TryRngCore;

use crate::manifest::NextKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Release,
    Development,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::Release => "release",
            KeyKind::Development => "development",
        }
    }
    fn parse(s: &str) -> Option<KeyKind> {
        match s {
            "release" => Some(KeyKind::Release),
            "development" => Some(KeyKind::Development),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not an ecko-image {1} key file")]
    Format(String, &'static str),
    #[error("random number generator: {0}")]
    Random(String),
}

/// Whether development keys count: always in a debug build, in a release
/// build only when asked for.
pub fn dev_keys_allowed(explicitly: bool) -> bool {
    cfg!(debug_assertions) || explicitly
}

#[derive(Debug, Clone)]
pub struct PublicKey {
    pub key: VerifyingKey,
    pub kind: KeyKind,
}

pub struct SecretKey {
    pub key: SigningKey,
    pub kind: KeyKind,
}

fn parse_line(text: &str, what: &'static str) -> Option<(KeyKind, [u8; 32])> {
    let mut w = text.split_whitespace();
    let (Some("ecko-image"), Some(t), Some("v1"), Some(kind), Some(hex), None) =
        (w.next(), w.next(), w.next(), w.next(), w.next(), w.next())
    else {
        return None;
    };
    if t != what {
        return None;
    }
    let bytes: [u8; 32] = hex::decode(hex).ok()?.try_into().ok()?;
    Some((KeyKind::parse(kind)?, bytes))
}

pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let name = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| KeyError::Io(name.clone(), e))?;
    let (kind, bytes) =
        parse_line(&text, "public-key").ok_or(KeyError::Format(name.clone(), "public"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Format(name, "public"))?;
    Ok(PublicKey { key, kind })
}

pub fn read_secret(path: &Path) -> Result<SecretKey, KeyError> {
    let name = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| KeyError::Io(name.clone(), e))?;
    let (kind, bytes) = parse_line(&text, "secret-key").ok_or(KeyError::Format(name, "secret"))?;
    Ok(SecretKey {
        key: SigningKey::from_bytes(&bytes),
        kind,
    })
}

/// The trust set: one public key file, or every `*.pub` in a directory.
pub fn read_trust(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    if !path.is_dir() {
        return Ok(vec![read_public(path)?]);
    }
    let name = path.display().to_string();
    let mut keys = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(path)
        .map_err(|e| KeyError::Io(name.clone(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    entries.sort();
    for p in entries {
        keys.push(read_public(&p)?);
    }
    Ok(keys)
}

fn public_line(kind: KeyKind, key: &VerifyingKey) -> String {
    format!(
        "ecko-image public-key v1 {} {}\n",
        kind.as_str(),
        hex::encode(key.to_bytes())
    )
}

impl PublicKey {
    /// The key a manifest announces as the next one; `None` when its bytes
    /// are not a valid ed25519 point.
    pub fn of_next(next: &NextKey) -> Option<PublicKey> {
        Some(PublicKey {
            key: VerifyingKey::from_bytes(&next.public).ok()?,
            kind: if next.development {
                KeyKind::Development
            } else {
                KeyKind::Release
            },
        })
    }

    /// The key as a manifest announces it.
    pub fn as_next(&self) -> NextKey {
        NextKey {
            public: self.key.to_bytes(),
            development: self.kind == KeyKind::Development,
        }
    }

    /// The first 8 bytes in hex, as logs and refusals name a key.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.key.to_bytes()[..8])
    }
}

/// Adds `key` to the trusted keys directory `dir` as `next-FINGERPRINT.pub`,
/// written atomically (temp file, fsync, rename, directory fsync): from then
/// on `read_trust(dir)` includes it. Its path.
pub fn add_trusted(dir: &Path, key: &PublicKey) -> Result<std::path::PathBuf, KeyError> {
    let name = format!("next-{}.pub", key.fingerprint());
    crate::slots::write_atomic(dir, &name, public_line(key.kind, &key.key).as_bytes())
        .map_err(|e| KeyError::Io(dir.join(&name).display().to_string(), e))?;
    Ok(dir.join(name))
}

/// Writes `path` (secret, 0600, never over an existing file) and `path.pub`.
pub fn keygen(path: &Path, kind: KeyKind) -> Result<PublicKey, KeyError> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key();
    let name = path.display().to_string();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KeyError::Io(name.clone(), e))?;
    writeln!(
        f,
        "ecko-image secret-key v1 {} {}",
        kind.as_str(),
        hex::encode(key.to_bytes())
    )
    .and_then(|_| f.sync_all())
    .map_err(|e| KeyError::Io(name.clone(), e))?;
    let pub_path = format!("{name}.pub");
    fs::write(&pub_path, public_line(kind, &public)).map_err(|e| KeyError::Io(pub_path, e))?;
    Ok(PublicKey { key: public, kind })
}
