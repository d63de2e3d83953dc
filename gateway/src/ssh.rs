//! SSH client connections for the SFTP endpoints: the server's host key
//! checked against the one pinned in the configuration, a password or
//! private key login, and an SFTP session over it (russh and russh-sftp,
//! on ring).
//!
//! The host key is never trusted on first use: an endpoint names the key
//! (a `known_hosts` line, or its `SHA256:` fingerprint as `ssh-keygen -l`
//! prints it) and a server presenting any other key is refused before a
//! password or signature is sent to it. Every failure says whether trying
//! again can help ([`SshError::is_permanent`]): a refused host key or login
//! needs a person; a refused connection or a timeout may clear by itself.

use crate::config::SftpConfig;
use base64::Engine;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::StatusCode;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The one host key a server may present.
#[derive(Debug, Clone, PartialEq)]
pub enum HostKeyPin {
    /// The key itself, from a `known_hosts` line.
    Key(PublicKey),
    /// The SHA-256 digest of the key's wire form.
    Sha256([u8; 32]),
}

impl HostKeyPin {
    /// A `known_hosts` line (`host[,host] type base64 [comment]`, or
    /// without the host names, as in a `.pub` file). Host names, when
    /// given and not hashed, must name `host` (`[host]:port` off port 22).
    pub fn from_known_hosts(line: &str, host: &str, port: u16) -> Result<Self, String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.starts_with('@')) {
            return Err(format!(
                "`{}` lines are not host keys; give the server's own key",
                fields[0]
            ));
        }
        for at in 0..fields.len().min(2) {
            let Some(data) = fields.get(at + 1) else {
                break;
            };
            let Ok(key) = PublicKey::from_openssh(&format!("{} {data}", fields[at])) else {
                continue;
            };
            if at == 1 && !names_host(fields[0], host, port) {
                return Err(format!(
                    "the known_hosts line is for `{}`, not for {}",
                    fields[0],
                    host_name(host, port)
                ));
            }
            return Ok(HostKeyPin::Key(key));
        }
        Err("not a known_hosts line (expected e.g. \"example.org ssh-ed25519 AAAA...\")".into())
    }

    /// `SHA256:` and the unpadded base64 of the digest, as OpenSSH prints
    /// fingerprints.
    pub fn from_fingerprint(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not a SHA-256 host key fingerprint (expected \"SHA256:\" and 43 base64 characters, as `ssh-keygen -lf` prints)")
        };
        let b64 = text.trim().strip_prefix("SHA256:").ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64.trim_end_matches('='))
            .map_err(|_| bad())?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(HostKeyPin::Sha256)
            .map_err(|_| bad())
    }

    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            HostKeyPin::Key(pinned) => pinned.key_data() == key.key_data(),
            HostKeyPin::Sha256(digest) => {
                key.fingerprint(HashAlg::Sha256).sha256() == Some(*digest)
            }
        }
    }

    /// The pinned key's fingerprint, for messages.
    pub fn fingerprint(&self) -> String {
        match self {
            HostKeyPin::Key(k) => k.fingerprint(HashAlg::Sha256).to_string(),
            HostKeyPin::Sha256(d) => format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(d)
            ),
        }
    }
}

/// How `host` appears in a `known_hosts` file.
fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a `known_hosts` host field names the host; hashed names
/// (`|1|...`) cannot be read back and are taken as written.
fn names_host(field: &str, host: &str, port: u16) -> bool {
    let name = host_name(host, port);
    field.starts_with("|1|")
        || field
            .split(',')
            .any(|p| !p.starts_with('!') && ecko_protocol::dicom::worklist::wildcard(p, &name))
}

/// `name` inside the remote directory `dir`.
pub fn remote_path(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// How the gateway logs in.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password(String),
    Key {
        path: PathBuf,
        passphrase: Option<String>,
    },
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pin: HostKeyPin,
    pub credentials: Credentials,
    /// For the connection and login together, and then for each request.
    pub timeout: Duration,
}

impl Target {
    /// The target of an `sftp` endpoint's settings; a problem comes with
    /// the key it is at.
    pub fn from_config(
        c: &SftpConfig,
        timeout: Duration,
    ) -> Result<Target, (&'static str, String)> {
        let pin = match (&c.host_key, &c.host_key_sha256) {
            (Some(line), _) => {
                HostKeyPin::from_known_hosts(line, &c.host, c.port).map_err(|e| ("host_key", e))?
            }
            (None, Some(fp)) => {
                HostKeyPin::from_fingerprint(fp).map_err(|e| ("host_key_sha256", e))?
            }
            (None, None) => return Err(("host_key", "no host key is pinned".into())),
        };
        let credentials = match (&c.private_key, &c.password) {
            (Some(path), _) => Credentials::Key {
                path: crate::config::resolve(path),
                passphrase: c.passphrase.clone(),
            },
            (None, Some(p)) => Credentials::Password(p.clone()),
            (None, None) => return Err(("password", "no password or private key".into())),
        };
        Ok(Target {
            host: c.host.clone(),
            port: c.port,
            user: c.user.clone(),
            pin,
            credentials,
            timeout,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} presented the host key {presented}, not the pinned {pinned}: refused, nothing was sent (if the server's key was changed on purpose, pin the new one)")]
    HostKey {
        addr: String,
        presented: String,
        pinned: String,
    },
    #[error("{addr} refused the login of `{user}` by {method} (check the user, the password or key, and the server's authorized keys)")]
    LoginRefused {
        addr: String,
        user: String,
        method: &'static str,
    },
    #[error("cannot read the private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("SSH session with {addr}: {reason}")]
    Session { addr: String, reason: String },
    #[error("SFTP `{path}`: {reason}")]
    Sftp {
        path: String,
        reason: String,
        permission_denied: bool,
    },
}

impl SshError {
    /// Whether trying again cannot help until a person changes something:
    /// the host key, the credentials, the key file, a permission.
    pub fn is_permanent(&self) -> bool {
        match self {
            SshError::HostKey { .. } | SshError::LoginRefused { .. } | SshError::Key { .. } => true,
            SshError::Sftp {
                permission_denied, ..
            } => *permission_denied,
            SshError::Connect { .. } | SshError::Timeout { .. } | SshError::Session { .. } => false,
        }
    }

    /// An SFTP request's failure on `path`.
    pub fn sftp(path: &str, e: SftpError) -> Self {
        let permission_denied =
            matches!(&e, SftpError::Status(s) if s.status_code == StatusCode::PermissionDenied);
        SshError::Sftp {
            path: path.to_string(),
            reason: e.to_string(),
            permission_denied,
        }
    }

    /// Whether an SFTP request failed because the file is not there.
    pub fn is_no_such_file(e: &SftpError) -> bool {
        matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
    }
}

/// Checks the server's key against the pin and remembers what it saw, so
/// a refusal can name the key.
struct Pinned {
    pin: HostKeyPin,
    presented: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (seen, ok) = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (
                key.fingerprint(HashAlg::Sha256).to_string(),
                self.pin.matches(key),
            ),
            PublicKeyOrCertificate::Certificate(_) => ("a host certificate".to_string(), false),
        };
        if let Ok(mut p) = self.presented.lock() {
            *p = Some(seen);
        }
        Ok(ok)
    }
}

/// The credentials as presented: a key file read once it is needed.
enum Login<'a> {
    Password(&'a str),
    Key(Box<PrivateKey>),
}

/// A logged-in SFTP session; closed when dropped if not closed before.
pub struct Session {
    pub sftp: SftpSession,
    handle: russh::client::Handle<Pinned>,
}

impl Session {
    /// Connects, checks the host key, logs in and starts SFTP, all within
    /// the target's timeout.
    pub async fn open(target: &Target) -> Result<Session, SshError> {
        let addr = format!("{}:{}", target.host, target.port);
        match tokio::time::timeout(target.timeout, Self::open_now(target, &addr)).await {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout {
                addr,
                timeout: target.timeout,
            }),
        }
    }

    async fn open_now(target: &Target, addr: &str) -> Result<Session, SshError> {
        // The key file is read first: a wrong path or passphrase is the
        // configuration's, whatever the server would say.
        let login = match &target.credentials {
            Credentials::Key { path, passphrase } => {
                Login::Key(Box::new(load_key(path, passphrase.as_deref())?))
            }
            Credentials::Password(p) => Login::Password(p),
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(target.timeout.max(Duration::from_secs(30))),
            ..Default::default()
        });
        let presented = Arc::new(Mutex::new(None));
        let handler = Pinned {
            pin: target.pin.clone(),
            presented: presented.clone(),
        };
        let mut handle = match russh::client::connect(config, addr, handler).await {
            Ok(h) => h,
            Err(russh::Error::UnknownKey) => {
                let presented = presented
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_else(|| "an unreadable key".into());
                return Err(SshError::HostKey {
                    addr: addr.to_string(),
                    presented,
                    pinned: target.pin.fingerprint(),
                });
            }
            Err(russh::Error::IO(e)) => {
                return Err(SshError::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(session_error(addr, e)),
        };
        let (auth, method) = match login {
            Login::Password(p) => (
                handle.authenticate_password(&target.user, p).await,
                "password",
            ),
            Login::Key(key) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| session_error(addr, e))?
                    .flatten();
                let key = PrivateKeyWithHashAlg::new(Arc::new(*key), hash);
                (
                    handle.authenticate_publickey(&target.user, key).await,
                    "private key",
                )
            }
        };
        match auth {
            Ok(r) if r.success() => {}
            Ok(_) => {
                return Err(SshError::LoginRefused {
                    addr: addr.to_string(),
                    user: target.user.clone(),
                    method,
                })
            }
            Err(e) => return Err(session_error(addr, e)),
        }
        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| session_error(addr, e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| session_error(addr, e))?;
        let config = russh_sftp::client::Config {
            request_timeout_secs: target.timeout.as_secs().max(1),
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), config)
            .await
            .map_err(|e| SshError::Session {
                addr: addr.to_string(),
                reason: format!("the server does not speak SFTP: {e}"),
            })?;
        Ok(Session { sftp, handle })
    }

    /// Ends the session politely; errors are of no interest by then.
    pub async fn close(self) {
        let _ = self.sftp.close().await;
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn session_error(addr: &str, e: russh::Error) -> SshError {
    SshError::Session {
        addr: addr.to_string(),
        reason: e.to_string(),
    }
}

fn load_key(path: &std::path::Path, passphrase: Option<&str>) -> Result<PrivateKey, SshError> {
    russh::keys::load_secret_key(path, passphrase).map_err(|e| SshError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Checks that the private key file reads (with its passphrase), without
/// connecting: the preflight of `check-config`.
pub fn check_key(path: &std::path::Path, passphrase: Option<&str>) -> Result<(), SshError> {
    load_key(path, passphrase).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILZzuozJLsOSPAOWV0HFdkL9wzS9vf5/6XnI++LAFFa6";

    fn key() -> PublicKey {
        PublicKey::from_openssh(ED25519).unwrap()
    }

    #[test]
    fn a_fingerprint_pins_exactly_the_key_it_was_printed_for() {
        // As `ssh-keygen -lf` printed it for this key.
        let printed = "SHA256:PFot+v/UF30LdRkZ8FGu4cP36uaux3z1sdqyowoHo9c";
        let pin = HostKeyPin::from_fingerprint(printed).unwrap();
        assert!(pin.matches(&key()));
        assert_eq!(pin.fingerprint(), printed);
        let other = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPc/zG8AqaryFUlH8/Ld4YAnzCLok/v3tc10105P6FCG",
        )
        .unwrap();
        assert!(!pin.matches(&other));
        // A trailing `=` as some tools pad it is the same fingerprint.
        assert_eq!(
            HostKeyPin::from_fingerprint(&format!("{printed}=")).unwrap(),
            pin
        );
    }

    #[test]
    fn a_fingerprint_that_is_not_sha256_of_32_bytes_is_refused() {
        for bad in [
            "",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "SHA256:abc",
            "SHA256:not base64 at all!!",
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        ] {
            let e = HostKeyPin::from_fingerprint(bad).unwrap_err();
            assert!(e.contains("SHA-256 host key fingerprint"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_known_hosts_line_pins_its_key_for_the_host_it_names() {
        let pin = HostKeyPin::from_known_hosts(
            &format!("[127.0.0.1]:2222,sftp.example {ED25519} root@box"),
            "127.0.0.1",
            2222,
        )
        .unwrap();
        assert!(pin.matches(&key()));
        // A `.pub` file's line names no host.
        assert!(HostKeyPin::from_known_hosts(ED25519, "h", 22)
            .unwrap()
            .matches(&key()));
        // Hashed names are taken as written; wildcards match.
        assert!(HostKeyPin::from_known_hosts(&format!("|1|abc=|def= {ED25519}"), "h", 22).is_ok());
        assert!(
            HostKeyPin::from_known_hosts(&format!("*.example {ED25519}"), "sftp.example", 22)
                .is_ok()
        );
    }

    #[test]
    fn a_known_hosts_line_for_another_host_or_no_key_is_refused() {
        let e =
            HostKeyPin::from_known_hosts(&format!("other.example {ED25519}"), "sftp.example", 22)
                .unwrap_err();
        assert!(
            e.contains("for `other.example`, not for sftp.example"),
            "{e}"
        );
        let e =
            HostKeyPin::from_known_hosts(&format!("sftp.example {ED25519}"), "sftp.example", 2222)
                .unwrap_err();
        assert!(e.contains("not for [sftp.example]:2222"), "{e}");
        let e = HostKeyPin::from_known_hosts(&format!("@cert-authority * {ED25519}"), "h", 22)
            .unwrap_err();
        assert!(e.contains("not host keys"), "{e}");
        assert!(HostKeyPin::from_known_hosts("h ssh-ed25519 AAAA", "h", 22).is_err());
        assert!(HostKeyPin::from_known_hosts("", "h", 22).is_err());
    }

    #[test]
    fn remote_paths_join_with_one_slash() {
        assert_eq!(remote_path("/out", "a"), "/out/a");
        assert_eq!(remote_path("/out/", "a"), "/out/a");
        assert_eq!(remote_path("out", "a"), "out/a");
    }

    #[test]
    fn refused_keys_and_logins_are_permanent_and_network_trouble_is_not() {
        let addr = "h:22".to_string();
        let host_key = SshError::HostKey {
            addr: addr.clone(),
            presented: "SHA256:a".into(),
            pinned: "SHA256:b".into(),
        };
        assert!(host_key.is_permanent());
        assert!(host_key.to_string().contains("refused, nothing was sent"));
        assert!(SshError::LoginRefused {
            addr: addr.clone(),
            user: "u".into(),
            method: "password"
        }
        .is_permanent());
        assert!(!SshError::Connect {
            addr: addr.clone(),
            reason: "refused".into()
        }
        .is_permanent());
        assert!(!SshError::Timeout {
            addr,
            timeout: Duration::from_secs(1)
        }
        .is_permanent());
    }
}
