//! rustls configurations from the operator's PEM files, always with the ring
//! provider (no OpenSSL, no aws-lc: both are hard to build for the device).

use crate::config::TlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The crypto provider every configuration uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path)? {
        store.add(cert).map_err(|e| {
            TlsError::Config(format!("bad CA certificate in {}: {e}", path.display()))
        })?;
    }
    Ok(store)
}

/// A listener's configuration: our certificate, and client certificates
/// verified against `ca` (required when `require_client_cert`).
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let (Some(cert), Some(key_path)) = (&tls.cert, &tls.key) else {
        return Err(TlsError::Config(
            "a TLS listener needs `cert` and `key`".into(),
        ));
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &tls.ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = if tls.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs(cert)?, key(key_path)?)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

/// A client's configuration: the server verified against `ca`, our own
/// certificate presented when configured.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let Some(ca) = &tls.ca else {
        return Err(TlsError::Config("a TLS client needs `ca`".into()));
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(ca)?);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key_path)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_path)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key do not fit: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to verify the server certificate against.
pub fn server_name(tls: &TlsSettings, connect: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match &tls.server_name {
        Some(n) => n.clone(),
        None => connect
            .rsplit_once(':')
            .map_or(connect, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    };
    ServerName::try_from(host.clone())
        .map_err(|_| TlsError::Config(format!("`{host}` is not a valid server name")))
}

/// A throw-away PKI for tests: a CA, a server certificate for `localhost`
/// and `127.0.0.1`, and a client certificate, as PEM files in a directory.
#[cfg(test)]
pub(crate) mod test_pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::path::{Path, PathBuf};

    pub struct Pki {
        pub ca: PathBuf,
        pub server_cert: PathBuf,
        pub server_key: PathBuf,
        pub client_cert: PathBuf,
        pub client_key: PathBuf,
    }

    pub fn create(dir: &Path) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |names: Vec<String>, stem: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            let cert_path = dir.join(format!("{stem}.pem"));
            let key_path = dir.join(format!("{stem}-key.pem"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            (cert_path, key_path)
        };
        let (server_cert, server_key) =
            leaf(vec!["localhost".into(), "127.0.0.1".into()], "server");
        let (client_cert, client_key) = leaf(vec!["analyzer-7".into()], "client");
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki {
            ca: ca_path,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}
