//! Settings of the `sftp` endpoint type: a remote directory polled for
//! files (`pattern`: a source), or a remote directory each delivered
//! message is uploaded into (`file_name`: a destination).
//!
//! One type for both, like `rest`: the server, its pinned host key and the
//! login are the same keys either way, and the role follows from which of
//! `pattern` and `file_name` is given. The host key's own syntax (a
//! `known_hosts` line, a `SHA256:` fingerprint) is read by `ssh`, which
//! the endpoint type asks; here is what the file alone shows.

use super::units::{Size, Span};
use super::InvalidText;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    /// The server's name or address.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub user: String,
    /// The server's host key as a `known_hosts` line.
    pub host_key: Option<String>,
    /// The server's host key as its fingerprint, `SHA256:...`.
    pub host_key_sha256: Option<String>,
    /// Log in with this private key file (OpenSSH format)...
    pub private_key: Option<PathBuf>,
    /// ...unlocked with this passphrase (best an `${ENV}` reference).
    pub passphrase: Option<String>,
    /// Or log in with a password (best an `${ENV}` reference).
    pub password: Option<String>,
    /// The remote directory polled or written into.
    pub path: String,

    /// Source: the file names taken, with `*` and `?` (e.g. `"*.hl7"`).
    pub pattern: Option<String>,
    /// Source: how often the directory is listed; a file is taken once
    /// two listings this far apart saw it the same size.
    #[serde(default = "default_interval")]
    pub interval: Span,
    /// Source: names ending so are still being written and left alone.
    #[serde(default = "default_partial_suffix")]
    pub partial_suffix: String,
    /// Source: where a journalled file is moved; unset: it is deleted.
    pub done_dir: Option<String>,
    /// Source: where a file that cannot be taken is moved; unset: it is
    /// left in place (and logged once).
    pub error_dir: Option<String>,
    /// Source: a larger file is not downloaded (it goes to `error_dir`).
    #[serde(default = "default_max_file_size")]
    pub max_file_size: Size,
    /// Source: the message type recorded for each file.
    #[serde(default = "default_message_type")]
    pub message_type: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Source: an HL7 v2 file with bytes invalid in its character set is
    /// refused (`refuse`, to `error_dir`) or stored with replacement
    /// characters (`replace`), as for `file-drop`.
    #[serde(default)]
    pub on_invalid_text: InvalidText,

    /// Destination: the remote file's name, a minijinja template of the
    /// message (as the `rest` sender's URL).
    pub file_name: Option<String>,
}

fn default_port() -> u16 {
    22
}
fn default_interval() -> Span {
    Span(Duration::from_secs(10))
}
fn default_partial_suffix() -> String {
    ".part".into()
}
fn default_max_file_size() -> Size {
    Size(64 << 20)
}
fn default_message_type() -> String {
    "file".into()
}
fn default_content_type() -> String {
    "application/octet-stream".into()
}

impl SftpConfig {
    pub fn is_source(&self) -> bool {
        self.pattern.is_some()
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (&self.pattern, &self.file_name) {
            (Some(_), Some(_)) => out.push((
                "file_name",
                "an sftp endpoint has either `pattern` (files polled: a source) or `file_name` (messages uploaded: a destination), not both".into(),
            )),
            (None, None) => out.push((
                "type",
                "an sftp endpoint needs `pattern` (files polled: a source) or `file_name` (messages uploaded: a destination)".into(),
            )),
            (Some(p), None) if p.is_empty() || p.contains('/') => out.push((
                "pattern",
                format!("`{p}` is not a file name pattern (e.g. \"*.hl7\"; no `/`)"),
            )),
            _ => {}
        }
        if self.host.trim().is_empty() {
            out.push(("host", "`host` is empty".into()));
        }
        if self.user.trim().is_empty() {
            out.push(("user", "`user` is empty".into()));
        }
        if self.path.is_empty() {
            out.push(("path", "`path` (the remote directory) is empty".into()));
        }
        if self.host_key.is_some() == self.host_key_sha256.is_some() {
            out.push((
                "host_key",
                "pin the server's host key with exactly one of `host_key` (a known_hosts line) and `host_key_sha256` (\"SHA256:...\", as `ssh-keygen -lf` prints it); an unknown key is never trusted".into(),
            ));
        }
        if self.private_key.is_some() == self.password.is_some() {
            out.push((
                "password",
                "log in with exactly one of `private_key` (a key file) and `password`".into(),
            ));
        }
        if self.passphrase.is_some() && self.private_key.is_none() {
            out.push((
                "passphrase",
                "`passphrase` unlocks `private_key`, which is not set".into(),
            ));
        }
        if self.is_source() {
            if self.interval.0 < Duration::from_millis(100) {
                out.push(("interval", "`interval` must be at least 100ms".into()));
            }
            for (key, dir) in [("done_dir", &self.done_dir), ("error_dir", &self.error_dir)] {
                if dir.as_ref().is_some_and(|d| d.is_empty()) {
                    out.push((key, format!("`{key}` is empty")));
                }
            }
        } else {
            for (key, given) in [
                ("done_dir", self.done_dir.is_some()),
                ("error_dir", self.error_dir.is_some()),
            ] {
                if given {
                    out.push((
                        key,
                        format!(
                            "`{key}` is for a polling (source) sftp endpoint; this one uploads"
                        ),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(keys: &str) -> Result<Config, String> {
        let text = format!(
            "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"s\"\ntype = \"sftp\"\nhost = \"127.0.0.1\"\nuser = \"u\"\npath = \"in\"\n{keys}\n"
        );
        Config::parse(&text, "t.toml", |_| None).map_err(|e| e.to_string())
    }

    const PIN: &str = "host_key_sha256 = \"SHA256:PFot+v/UF30LdRkZ8FGu4cP36uaux3z1sdqyowoHo9c\"\npassword = \"pw\"";

    #[test]
    fn a_poller_and_an_uploader_read_back_with_their_roles() {
        let c = load(&format!("{PIN}\npattern = \"*.hl7\"")).unwrap();
        let ty = crate::endpoints::of(&c.endpoints[0].kind);
        assert_eq!(
            ty.role(&c.endpoints[0].kind),
            crate::endpoints::Role::Source
        );
        let c = load(&format!("{PIN}\nfile_name = \"{{{{ msg.id }}}}.hl7\"")).unwrap();
        let ty = crate::endpoints::of(&c.endpoints[0].kind);
        assert_eq!(
            ty.role(&c.endpoints[0].kind),
            crate::endpoints::Role::Destination
        );
    }

    #[test]
    fn an_endpoint_without_a_pinned_host_key_is_refused_at_its_line() {
        let e = load("password = \"pw\"\npattern = \"*\"").unwrap_err();
        assert!(e.contains("t.toml:3:1"), "{e}");
        assert!(e.contains("exactly one of `host_key`"), "{e}");
        assert!(e.contains("never trusted"), "{e}");
    }

    #[test]
    fn a_bad_fingerprint_or_known_hosts_line_is_reported_at_its_key() {
        let e =
            load("host_key_sha256 = \"MD5:aa\"\npassword = \"pw\"\npattern = \"*\"").unwrap_err();
        assert!(e.contains("t.toml:9:"), "{e}");
        assert!(e.contains("not a SHA-256 host key fingerprint"), "{e}");
        let e = load("host_key = \"other ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILZzuozJLsOSPAOWV0HFdkL9wzS9vf5/6XnI++LAFFa6\"\npassword = \"pw\"\npattern = \"*\"").unwrap_err();
        assert!(e.contains("t.toml:9:"), "{e}");
        assert!(e.contains("not for 127.0.0.1"), "{e}");
    }

    #[test]
    fn both_roles_both_logins_or_neither_are_refused() {
        let e = load(&format!("{PIN}\npattern = \"*\"\nfile_name = \"x\"")).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = load(PIN).unwrap_err();
        assert!(e.contains("needs `pattern`"), "{e}");
        let e = load("host_key_sha256 = \"SHA256:PFot+v/UF30LdRkZ8FGu4cP36uaux3z1sdqyowoHo9c\"\npattern = \"*\"").unwrap_err();
        assert!(e.contains("exactly one of `private_key`"), "{e}");
        let e = load(&format!("{PIN}\nfile_name = \"x\"\ndone_dir = \"done\"")).unwrap_err();
        assert!(e.contains("`done_dir` is for a polling"), "{e}");
        let e = load(&format!("{PIN}\npattern = \"a/*\"")).unwrap_err();
        assert!(e.contains("not a file name pattern"), "{e}");
    }

    #[test]
    fn a_file_name_template_that_does_not_compile_is_refused() {
        let e = load(&format!("{PIN}\nfile_name = \"{{{{ msg.id \"")).unwrap_err();
        assert!(e.contains("file_name"), "{e}");
    }
}
