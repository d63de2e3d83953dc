//! The bundle's byte layout (docs/image-format.md is the reference):
//!
//! ```text
//! offset          length  field
//! 0               8       magic "ECKOIMG\0"
//! 8               2       format version, u16 little-endian (1)
//! 10              2       reserved, zero
//! 12              4       manifest length N, u32 little-endian, at most MAX_MANIFEST_LEN
//! 16              N       manifest, postcard (`Manifest`)
//! 16+N            64      ed25519 signature (all zero in an unsigned bundle)
//! 80+N            32      the signer's public key (all zero in an unsigned bundle)
//! 112+N           L       payload, L = the manifest's payload length
//! ```
//!
//! The signature is over `SIGNING_CONTEXT || header (16 bytes) || manifest`:
//! the context keeps a bundle signature from ever being mistaken for any
//! other message the same key signs, and the header makes the format version
//! part of what is signed. The payload is not signed directly: the manifest
//! carries its length and SHA-256, so the payload is checked while it is
//! streamed, never held whole in memory.
//!
//! The manifest length is read and checked against the cap before anything
//! is allocated, and the manifest is decoded only after its signature has
//! been verified (`verify`), so an unsigned or forged manifest never reaches
//! the postcard decoder on a device.

use std::io::{self, Read};

/// The first bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"ECKOIMG\0";
/// The one format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Magic, version, reserved, manifest length.
pub const HEADER_LEN: usize = 16;
/// A manifest is a few hundred bytes; anything larger is not ours.
pub const MAX_MANIFEST_LEN: u32 = 4096;
/// Signature (64) and signer public key (32).
pub const SIGNATURE_BLOCK_LEN: usize = 96;
/// Domain separation of the signed message.
pub const SIGNING_CONTEXT: &[u8] = b"ecko-image bundle signature v1\0";

/// Why the head of a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not an ecko-image bundle (bad magic)")]
    NotABundle,
    #[error("bundle format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedFormat(u16),
    #[error("manifest length {0} exceeds the cap of {MAX_MANIFEST_LEN} bytes")]
    ManifestTooLarge(u32),
    #[error("bundle is truncated ({0})")]
    Truncated(&'static str),
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
}

/// The unverified head of a bundle: everything before the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHead {
    pub header: [u8; HEADER_LEN],
    pub manifest: Vec<u8>,
    pub signature: [u8; 64],
    pub signer: [u8; 32],
}

impl RawHead {
    /// Where the payload starts in the bundle.
    pub fn payload_offset(&self) -> u64 {
        (HEADER_LEN + self.manifest.len() + SIGNATURE_BLOCK_LEN) as u64
    }

    /// Whether the signature block is still the unsigned placeholder.
    pub fn is_unsigned(&self) -> bool {
        self.signature.iter().all(|b| *b == 0) && self.signer.iter().all(|b| *b == 0)
    }

    /// The message the signature covers.
    pub fn signed_message(&self) -> Vec<u8> {
        signed_message(&self.header, &self.manifest)
    }
}

/// `SIGNING_CONTEXT || header || manifest`.
pub fn signed_message(header: &[u8; HEADER_LEN], manifest: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + HEADER_LEN + manifest.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(header);
    m.extend_from_slice(manifest);
    m
}

/// The header of a bundle whose manifest is `manifest_len` bytes.
pub fn encode_header(manifest_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&manifest_len.to_le_bytes());
    h
}

/// Checks magic, version and the manifest length cap; returns the length.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<u32, FormatError> {
    if h[..8] != MAGIC {
        return Err(FormatError::NotABundle);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedFormat(version));
    }
    if h[10..12] != [0, 0] {
        return Err(FormatError::NotABundle);
    }
    let len = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
    if len > MAX_MANIFEST_LEN {
        return Err(FormatError::ManifestTooLarge(len));
    }
    Ok(len)
}

/// Reads the head of a bundle, allocating the manifest only after its length
/// passed the cap. Leaves `r` at the first payload byte.
pub fn read_head<R: Read>(r: &mut R) -> Result<RawHead, FormatError> {
    let mut header = [0u8; HEADER_LEN];
    // A file shorter than the magic is "not a bundle", not "truncated": an
    // empty or tiny file was never one.
    let got = read_full(r, &mut header)?;
    if got < MAGIC.len() || header[..MAGIC.len()] != MAGIC {
        return Err(FormatError::NotABundle);
    }
    if got < HEADER_LEN {
        return Err(FormatError::Truncated("header"));
    }
    let len = parse_header(&header)?;
    let mut manifest = vec![0u8; len as usize];
    if read_full(r, &mut manifest)? < manifest.len() {
        return Err(FormatError::Truncated("manifest"));
    }
    let mut block = [0u8; SIGNATURE_BLOCK_LEN];
    if read_full(r, &mut block)? < block.len() {
        return Err(FormatError::Truncated("signature"));
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&block[..64]);
    let mut signer = [0u8; 32];
    signer.copy_from_slice(&block[64..]);
    Ok(RawHead {
        header,
        manifest,
        signature,
        signer,
    })
}

/// The head as bytes (header, manifest, signature block).
pub fn encode_head(head: &RawHead) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.payload_offset() as usize);
    out.extend_from_slice(&head.header);
    out.extend_from_slice(&head.manifest);
    out.extend_from_slice(&head.signature);
    out.extend_from_slice(&head.signer);
    out
}

/// Like `read_exact`, but says how many bytes there were instead of failing
/// at the end of the input.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RawHead {
        RawHead {
            header: encode_header(3),
            manifest: vec![1, 2, 3],
            signature: [7; 64],
            signer: [9; 32],
        }
    }

    #[test]
    fn a_head_reads_back_as_written_and_leaves_the_reader_at_the_payload() {
        let mut bytes = encode_head(&head());
        bytes.extend_from_slice(b"payload");
        let mut r = &bytes[..];
        assert_eq!(read_head(&mut r).unwrap(), head());
        assert_eq!(r, b"payload");
        assert_eq!(head().payload_offset(), 16 + 3 + 96);
    }

    #[test]
    fn a_manifest_length_of_4_gb_is_refused_before_anything_is_allocated() {
        let mut h = encode_header(0);
        h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        // No bytes follow: a reader that tried to fill 4 GB would report
        // truncation, not the cap.
        let err = read_head(&mut &h[..]).unwrap_err();
        assert!(
            matches!(err, FormatError::ManifestTooLarge(u32::MAX)),
            "{err}"
        );
    }

    #[test]
    fn every_cut_of_a_head_is_truncated_or_not_a_bundle() {
        let bytes = encode_head(&head());
        for cut in 0..bytes.len() {
            let err = read_head(&mut &bytes[..cut]).unwrap_err();
            if cut < MAGIC.len() {
                assert!(matches!(err, FormatError::NotABundle), "{cut}: {err}");
            } else {
                assert!(matches!(err, FormatError::Truncated(_)), "{cut}: {err}");
            }
        }
    }

    #[test]
    fn wrong_magic_version_or_reserved_bytes_are_refused() {
        let mut b = encode_header(0);
        b[0] = b'X';
        assert!(matches!(parse_header(&b), Err(FormatError::NotABundle)));
        let mut b = encode_header(0);
        b[8] = 2;
        assert!(matches!(
            parse_header(&b),
            Err(FormatError::UnsupportedFormat(2))
        ));
        let mut b = encode_header(0);
        b[11] = 1;
        assert!(matches!(parse_header(&b), Err(FormatError::NotABundle)));
    }
}
