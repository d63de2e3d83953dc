//! What a listener presents, and which clients it lets in.

use super::{certificates, pem, provider, TlsError};
use crate::config::{AdminConfig, TlsSettings};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

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
                WebPkiClientVerifier::builder_with_provider(Arc::new(pem::roots(ca)?), provider());
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
        .with_single_cert(pem::certs(cert)?, pem::key(key_path)?)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    Ok(Arc::new(config))
}

/// The admin page's configuration: the operator's certificate and key when
/// configured, otherwise the device certificate kept in `data_dir`
/// (generated on first use). HTTP/1.1 only, as the page serves it.
pub fn admin_server_config(
    config: &AdminConfig,
    data_dir: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => (crate::config::resolve(c), crate::config::resolve(k)),
        (None, None) => certificates::device_certificate(data_dir)?,
        _ => {
            return Err(TlsError::Config(
                "[admin]: `cert` and `key` must be given together".into(),
            ))
        }
    };
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(pem::certs(&cert)?, pem::key(&key)?)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
