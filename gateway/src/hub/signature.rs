//! The hub's signature of a pushed configuration.
//!
//! # What is signed
//!
//! Ed25519 (RFC 8032, verified strictly: no small-order keys, no
//! non-canonical signatures) over the *canonical bytes* of a push: the
//! UTF-8 bytes of
//!
//! ```text
//! ecko-config-push/1 LF {site}/{device} LF {command id} LF {issued_at} LF {TOML text}
//! ```
//!
//! with `issued_at` in decimal Unix milliseconds and no other separators.
//! Binding the device and the command's id and time, not the TOML text
//! alone, means a signed push cannot be replayed on another gateway, nor
//! later on this one under a fresh id: the replay and age checks cover the
//! signature too.
//!
//! # Verified before parsing
//!
//! The TOML is not parsed, not even looked at, until the signature over its
//! exact bytes holds: a parser is attack surface, and only the hub's text
//! may reach it.

use ed25519_dalek::{Signature, VerifyingKey};

/// The first line of the canonical bytes: what is signed and its version.
pub const DOMAIN: &str = "ecko-config-push/1";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the gateway has no `config_key` to verify a configuration with")]
    NoKey,
    #[error("`config_key` is not a usable ed25519 public key")]
    BadKey,
    #[error("the signature must be 64 bytes, not {0}")]
    BadLength(usize),
    #[error("the configuration's signature does not verify with `config_key`")]
    Mismatch,
}

/// What one push binds its signature to.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub site: &'a str,
    pub device: &'a str,
    pub id: &'a str,
    pub issued_at: i64,
    pub toml: &'a str,
}

/// The bytes the hub signs for `push`.
pub fn canonical_bytes(push: &Signed<'_>) -> Vec<u8> {
    let head = format!(
        "{DOMAIN}\n{}/{}\n{}\n{}\n",
        push.site, push.device, push.id, push.issued_at
    );
    let mut bytes = Vec::with_capacity(head.len() + push.toml.len());
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(push.toml.as_bytes());
    bytes
}

/// `Ok` when `signature` is `key`'s over the canonical bytes of `push`.
pub fn verify(
    key: Option<[u8; 32]>,
    push: &Signed<'_>,
    signature: &[u8],
) -> Result<(), SignatureError> {
    let key = key.ok_or(SignatureError::NoKey)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| SignatureError::BadKey)?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::BadLength(signature.len()))?;
    key.verify_strict(&canonical_bytes(push), &Signature::from_bytes(&signature))
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn push(toml: &str) -> Signed<'_> {
        Signed {
            site: "north",
            device: "lab-1",
            id: "c-1",
            issued_at: 1_764_000_000_000,
            toml,
        }
    }

    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&rand::random::<[u8; 32]>())
    }

    #[test]
    fn the_canonical_bytes_are_the_lines_then_the_toml_exactly() {
        assert_eq!(
            canonical_bytes(&push("[journal]\n")),
            b"ecko-config-push/1\nnorth/lab-1\nc-1\n1764000000000\n[journal]\n"
        );
    }

    #[test]
    fn a_signature_by_the_configured_key_verifies() {
        let k = test_key();
        let sig = k.sign(&canonical_bytes(&push("a = 1\n")));
        let public = Some(k.verifying_key().to_bytes());
        assert_eq!(verify(public, &push("a = 1\n"), &sig.to_bytes()), Ok(()));
    }

    #[test]
    fn one_byte_changed_anywhere_fails_the_signature() {
        let k = test_key();
        let public = Some(k.verifying_key().to_bytes());
        let sig = k.sign(&canonical_bytes(&push("a = 1\n"))).to_bytes();
        assert_eq!(
            verify(public, &push("a = 2\n"), &sig),
            Err(SignatureError::Mismatch)
        );
        let mut other_id = push("a = 1\n");
        other_id.id = "c-2";
        assert_eq!(
            verify(public, &other_id, &sig),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            verify(public, &push("a = 1\n"), &flipped),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_key_a_short_signature_or_no_key_is_refused() {
        let k = test_key();
        let sig = k.sign(&canonical_bytes(&push("a = 1\n"))).to_bytes();
        let other = Some(test_key().verifying_key().to_bytes());
        assert_eq!(
            verify(other, &push("a = 1\n"), &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(other, &push("a = 1\n"), &sig[..63]),
            Err(SignatureError::BadLength(63))
        );
        assert_eq!(
            verify(None, &push("a = 1\n"), &sig),
            Err(SignatureError::NoKey)
        );
    }
}
