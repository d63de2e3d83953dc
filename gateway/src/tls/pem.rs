//! The operator's PEM files: certificate chains, private keys, CA bundles.

use super::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::Path;

/// Every certificate of a PEM file; a file without one is an error.
pub(super) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |reason: String| TlsError::Read {
        what: "certificates",
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read(e.to_string()))?;
    if certs.is_empty() {
        return Err(read("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub(super) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A CA bundle as trust anchors.
pub(super) fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| {
            TlsError::Config(format!("bad CA certificate in {}: {e}", path.display()))
        })?;
    }
    Ok(store)
}

/// When the first certificate of a PEM file (the one presented, before its
/// chain) stops being valid, in Unix ms.
pub fn certificate_expiry(path: &Path) -> Result<i64, TlsError> {
    let first = certs(path)?.swap_remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&first).map_err(|e| TlsError::Read {
        what: "certificate",
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(cert.validity().not_after.timestamp().saturating_mul(1000))
}
