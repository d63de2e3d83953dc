//! The manifest: what a bundle is for and what its payload must hash to.
//! Encoded with postcard (field order is the format: append new fields
//! only with a new format version). `decode` is reached only with bytes
//! whose signature verified, but it is still written for hostile input:
//! trailing bytes, oversized strings and unknown payload kinds are refused.

use serde::{Deserialize, Serialize};

/// The longest hardware or version string a manifest may carry.
pub const MAX_TEXT_LEN: usize = 128;

/// What the payload replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// A whole root filesystem image, written to the inactive slot.
    Rootfs,
    /// Only the gateway program and its files.
    Gateway,
}

impl PayloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadKind::Rootfs => "rootfs",
            PayloadKind::Gateway => "gateway",
        }
    }
}

impl std::str::FromStr for PayloadKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rootfs" => Ok(PayloadKind::Rootfs),
            "gateway" => Ok(PayloadKind::Gateway),
            _ => Err(format!("unknown payload kind {s:?} (rootfs or gateway)")),
        }
    }
}

/// A public key the current key vouches for: trusted from the next
/// successful install on (key rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextKey {
    pub public: [u8; 32],
    pub development: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Must equal the device's hardware string.
    pub hardware: String,
    /// Shown to people and compared for downgrades of equal security version.
    pub version: String,
    /// Monotonic anti-rollback counter.
    pub security_version: u64,
    pub payload_kind: PayloadKind,
    pub payload_len: u64,
    pub payload_sha256: [u8; 32],
    /// Seconds since the Unix epoch.
    pub build_time: u64,
    pub next_key: Option<NextKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest does not decode: {0}")]
    Decode(postcard::Error),
    #[error("manifest has {0} bytes after its end")]
    Trailing(usize),
    #[error("manifest {0} is empty, longer than {MAX_TEXT_LEN} bytes or not printable")]
    BadText(&'static str),
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs to a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let (m, rest): (Manifest, _) =
            postcard::take_from_bytes(bytes).map_err(ManifestError::Decode)?;
        if !rest.is_empty() {
            return Err(ManifestError::Trailing(rest.len()));
        }
        check_text("hardware", &m.hardware)?;
        check_text("version", &m.version)?;
        Ok(m)
    }
}

/// Hardware and version strings end up in logs, JSON and the admin page:
/// printable ASCII only, no spaces.
pub fn check_text(what: &'static str, s: &str) -> Result<(), ManifestError> {
    if s.is_empty() || s.len() > MAX_TEXT_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ManifestError::BadText(what));
    }
    Ok(())
}

/// Compares dotted versions numerically where both parts are numbers
/// ("1.10" > "1.9"), as text otherwise.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let split =
        |s: &str| -> Vec<String> { s.split(['.', '-', '+', '_']).map(str::to_owned).collect() };
    let (pa, pb) = (split(a), split(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
pub(crate) fn sample() -> Manifest {
    Manifest {
        hardware: "ecko-box-v2".into(),
        version: "1.2.0".into(),
        security_version: 4,
        payload_kind: PayloadKind::Rootfs,
        payload_len: 5,
        payload_sha256: [3; 32],
        build_time: 1_780_000_000,
        next_key: Some(NextKey {
            public: [5; 32],
            development: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn a_manifest_decodes_to_what_was_encoded() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn trailing_bytes_and_bad_strings_are_refused() {
        let mut b = sample().encode();
        b.push(0);
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Trailing(1))
        ));
        let mut m = sample();
        m.hardware = "box\nv2".into();
        assert!(matches!(
            Manifest::decode(&m.encode()),
            Err(ManifestError::BadText("hardware"))
        ));
        m.hardware = "x".repeat(MAX_TEXT_LEN + 1);
        assert!(Manifest::decode(&m.encode()).is_err());
    }

    #[test]
    fn versions_compare_numerically_part_by_part() {
        assert_eq!(compare_versions("1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.2", "1.2.0"), Ordering::Less);
        assert_eq!(compare_versions("2.0.0", "2.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.0-rc2", "1.0-rc1"), Ordering::Greater);
    }
}

#[cfg(test)]
mod seeds {
    use super::*;

    /// scripts/fuzz-seeds writes manifests by hand, field by field: they
    /// must stay what this decoder reads.
    #[test]
    fn the_fuzz_seed_manifests_decode() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../gateway/fuzz/seeds/image_bundle/"
        );
        for name in ["manifest", "manifest-gateway-kind"] {
            let b = std::fs::read(format!("{dir}{name}")).unwrap();
            let m = Manifest::decode(&b).unwrap();
            assert_eq!(m.hardware, "box-v2", "{name}");
        }
        let b = std::fs::read(format!("{dir}bundle")).unwrap();
        let head = crate::format::read_head(&mut &b[..]).unwrap();
        assert_eq!(Manifest::decode(&head.manifest).unwrap().payload_len, 5);
    }
}
