//! The admin page's device certificate: self-signed, generated on first
//! start and kept beside the journal (`admin-tls/`), so browsers that were
//! told to trust it keep trusting it across restarts.
//!
//! It names every way a browser on the LAN may reach this device (host
//! name, domain name, every interface address), so that trusting it once
//! is enough whichever address the user types.

use super::TlsError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the generated device certificate and key live.
pub fn device_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("admin-tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The device certificate and key in `data_dir`, generated when either is
/// missing.
pub fn device_certificate(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = device_paths(data_dir);
    if !cert.exists() || !key.exists() {
        generate(&cert, &key)?;
    }
    Ok((cert, key))
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
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = device_names();
    tracing::info!(names = ?names, "admin page: certificate names");
    let issued = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Config(format!("cannot generate a certificate: {e}")))?;
    let dir = cert_path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| TlsError::Config(format!("cannot create {}: {e}", dir.display())))?;
    write_atomically(
        key_path,
        issued.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomically(cert_path, issued.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for the admin page");
    Ok(())
}

fn write_atomically(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| TlsError::Config(format!("cannot write {}: {e}", path.display()));
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
