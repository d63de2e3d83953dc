//! How a client verifies its server and proves itself.
//!
//! Two kinds of client, with different trust:
//!
//! - MLLP senders ([`client_config`]) trust only the CA bundle their
//!   endpoint names: an MLLP peer is on the hospital network with a private
//!   CA, never one the system trusts.
//! - HTTPS clients of FHIR endpoints ([`https_client_config`]) trust their
//!   own CA bundle, or the system's trust store for a public hub, or exactly
//!   one pinned certificate.
//!
//! The hub uplink's MQTT client ([`broker_client_config`]) trusts its broker
//! as an HTTPS client does.
//!
//! All present a certificate of their own for mutual TLS when configured.

use super::{pem, pinned::Pinned, provider, TlsError};
use crate::config::TlsSettings;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;

/// An MLLP client's configuration: the server verified against `ca`, our
/// own certificate presented when configured.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let Some(ca) = &tls.ca else {
        return Err(TlsError::Config("a TLS client needs `ca`".into()));
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(pem::roots(ca)?);
    let config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key_path)) => builder
            .with_client_auth_cert(pem::certs(cert)?, pem::key(key_path)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key do not fit: {e}")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to verify the server certificate against: the configured
/// `server_name`, or the host of `connect` (`host:port`, `[v6]:port`).
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
    host_name(&host)
}

/// A host name or address as a name to verify a certificate against.
pub fn host_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|_| TlsError::Config(format!("`{host}` is not a valid server name")))
}

/// What an HTTPS client trusts and presents.
#[derive(Debug, Default, Clone)]
pub struct HttpsTrust {
    /// CA bundle (PEM) the server is verified against; the system's trust
    /// store when unset.
    pub ca_file: Option<PathBuf>,
    /// The one server certificate (PEM) accepted, byte for byte; replaces
    /// CA verification.
    pub pinned_cert: Option<PathBuf>,
    /// Certificate chain and key (PEM) for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// An HTTPS client's configuration (HTTP/1.1), by value as reqwest takes it.
pub fn https_client_config(trust: &HttpsTrust) -> Result<ClientConfig, TlsError> {
    let mut config = verified_client(trust)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The hub uplink's MQTT broker: trusted like an HTTPS server (its CA
/// bundle or the system's store, or one pinned certificate), the device's
/// certificate presented for mutual TLS; no ALPN.
pub fn broker_client_config(trust: &HttpsTrust) -> Result<ClientConfig, TlsError> {
    verified_client(trust)
}

fn verified_client(trust: &HttpsTrust) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("TLS configuration: {e}")))?;
    let builder = match &trust.pinned_cert {
        Some(path) => {
            let pinned = pem::certs(path)?.swap_remove(0);
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned::new(pinned, provider)))
        }
        None => builder.with_root_certificates(match &trust.ca_file {
            Some(path) => pem::roots(path)?,
            None => system_roots(),
        }),
    };
    match &trust.identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(pem::certs(cert)?, pem::key(key)?)
            .map_err(|e| TlsError::Config(format!("client certificate and key do not fit: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The system's trust store; certificates it cannot read are skipped with
/// a warning rather than leaving the endpoint without any.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "system trust store: a certificate could not be read");
    }
    roots.add_parsable_certificates(found.certs);
    roots
}
