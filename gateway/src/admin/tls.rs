//! The admin page's TLS identity: the operator's certificate and key when
//! configured, otherwise a self-signed device certificate generated on first
//! start and kept beside the journal (`admin-tls/`), so browsers that were
//! told to trust it keep trusting it across restarts.

use super::AdminError;
use crate::config::AdminConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the generated device certificate and key live.
pub fn device_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("admin-tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The rustls server configuration for the admin page.
pub fn server_config(
    config: &AdminConfig,
    data_dir: &Path,
) -> Result<Arc<rustls::ServerConfig>, AdminError> {
    let (cert_path, key_path) = match (&config.cert, &config.key) {
        (Some(c), Some(k)) => (crate::config::resolve(c), crate::config::resolve(k)),
        (None, None) => {
            let (c, k) = device_paths(data_dir);
            if !c.exists() || !k.exists() {
                generate(&c, &k)?;
            }
            (c, k)
        }
        _ => {
            return Err(AdminError::Tls(
                "[admin]: `cert` and `key` must be given together".into(),
            ))
        }
    };
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| AdminError::Tls(format!("{}: {e}", cert_path.display())))?;
    if certs.is_empty() {
        return Err(AdminError::Tls(format!(
            "{}: no certificate in the file",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| AdminError::Tls(format!("{}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AdminError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| AdminError::Tls(format!("certificate and key: {e}")))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// The names a browser on the LAN may use for this device: `localhost`,
/// the host name (and its domain name when set), and every address of its
/// network interfaces (loopback included).
pub fn device_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let host = read("/proc/sys/kernel/hostname").filter(|h| is_dns_name(h));
    if let Some(h) = &host {
        names.push(h.clone());
        if let Some(domain) =
            read("/proc/sys/kernel/domainname").filter(|d| is_dns_name(d) && d != "(none)")
        {
            names.push(format!("{h}.{domain}"));
        }
    }
    let mut addresses = vec!["127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
        for i in interfaces {
            let Some(addr) = i.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                addresses.push(v4.ip().to_string());
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                let ip = v6.ip();
                // Link-local addresses need a zone, which a URL cannot carry.
                if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    addresses.push(ip.to_string());
                }
            }
        }
    }
    names.extend(addresses);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Generates a self-signed certificate for this device and writes it and its
/// key (mode 0600) atomically.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), AdminError> {
    let names = device_names();
    tracing::info!(names = ?names, "admin page: certificate names");
    let issued = rcgen::generate_simple_self_signed(names)
        .map_err(|e| AdminError::Tls(format!("cannot generate a certificate: {e}")))?;
    let dir = cert_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| AdminError::Tls(format!("cannot create {}: {e}", dir.display())))?;
    write_atomically(
        key_path,
        issued.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomically(cert_path, issued.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for the admin page");
    Ok(())
}

fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<(), AdminError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| AdminError::Tls(format!("cannot write {}: {e}", path.display()));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}
