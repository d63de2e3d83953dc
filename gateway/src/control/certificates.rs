//! Certificates, private keys and CA bundles uploaded for an endpoint's
//! TLS settings (the form fields of kind [`Pem`]), so that rotating a
//! certificate needs no shell on the device.
//!
//! One upload is one action, all or nothing: every file is checked first
//! ([`crate::tls::upload`]: PEM, X.509, order, expiry, the chain verified
//! when its root is in the file, a key against its certificate — the one
//! uploaded beside it, else the file the setting names now); only then are
//! the files written under new names in `certificates/` beside the journal
//! (mode 0600: a key is a secret, and a certificate file written the same
//! way cannot be the one that leaks a key pasted into it), and the
//! settings pointed at them in one configuration change, validated,
//! applied live and versioned like any edit. If that change is refused,
//! the files written for it are removed again: a bad upload changes
//! nothing. Files are never overwritten, so an older version of the
//! configuration still finds the files it names after a rollback.

use super::config::{change, data_dir, Applied, ChangeError, FieldError, Intent};
use super::{Actor, Operations, Role};
use crate::config::edit::{Change, EditValue, TablePath};
use crate::endpoints::form::{f, Field, Kind, Pem, TRUST};
use crate::tls::upload::{self, Accepted};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The largest file taken: a CA bundle of a few hundred certificates fits.
pub const MAX_FILE_SIZE: usize = 512 * 1024;

/// Where uploaded files are kept, beside the journal.
pub fn directory(data_dir: &Path) -> PathBuf {
    data_dir.join("certificates")
}

/// One uploaded file for the setting `key` (`tls.cert`, `auth.key`).
pub struct Upload {
    pub key: String,
    pub bytes: Vec<u8>,
}

/// A file stored and the setting that now refers to it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub path: PathBuf,
    pub accepted: Accepted,
}

/// A PEM setting of an endpoint as its pages show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PemSetting {
    /// The configuration key, also the upload's field name.
    pub key: &'static str,
    pub label: &'static str,
    /// The file named now, as written (a reference stays one).
    pub written: Option<String>,
    /// Whether it holds certificates (and so an expiry).
    pub certificate: bool,
    /// What the file shows now: its earliest expiry (Unix ms), or why it
    /// cannot be read.
    pub expires: Option<i64>,
    pub unreadable: Option<String>,
}

/// Where the settings an upload points at its files are.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    Endpoint(&'a str),
    /// A section of the file with PEM settings of its own ([`SECTIONS`]).
    Section(&'a str),
}

impl Owner<'_> {
    fn name(&self) -> &str {
        match self {
            Owner::Endpoint(n) | Owner::Section(n) => n,
        }
    }
}

/// The sections with PEM settings: the admin page's own certificate and
/// the hub uplink's trust and identity (both read at the next start).
pub const SECTIONS: &[(&str, &str, &[Field])] =
    &[("admin", "Admin page", ADMIN), ("hub", "Hub uplink", HUB)];

const ADMIN: &[Field] = &[
    f(
        "cert",
        "Certificate (PEM path)",
        Kind::Pem(Pem::Certificate { key: "key" }),
        "",
    ),
    f(
        "key",
        "Private key (PEM path)",
        Kind::Pem(Pem::Key {
            certificate: "cert",
        }),
        "",
    ),
];

const HUB: &[Field] = &[
    f("ca_file", "Broker CA bundle (PEM path)", TRUST, ""),
    f(
        "cert",
        "Device certificate (PEM path)",
        Kind::Pem(Pem::Certificate { key: "key" }),
        "",
    ),
    f(
        "key",
        "Device private key (PEM path)",
        Kind::Pem(Pem::Key {
            certificate: "cert",
        }),
        "",
    ),
];

fn section_fields(section: &str) -> Option<Vec<(Field, Pem, bool)>> {
    let (_, _, fields) = SECTIONS.iter().find(|(s, _, _)| *s == section)?;
    Some(
        fields
            .iter()
            .filter_map(|f| match f.kind {
                Kind::Pem(p) => Some((*f, p, true)),
                _ => None,
            })
            .collect(),
    )
}

/// A section's PEM settings as the file writes them.
fn section_settings(
    doc: &crate::config::edit::ConfigDocument,
    section: &str,
) -> BTreeMap<String, String> {
    section_fields(section)
        .unwrap_or_default()
        .iter()
        .filter_map(|(f, _, _)| Some((f.key.to_string(), doc.section_value(section, f.key)?)))
        .collect()
}

/// A section's PEM settings with what each file shows now; none when the
/// file cannot be read.
pub fn section_shown(ops: &Operations, section: &str) -> Vec<PemSetting> {
    let Ok((doc, _)) = super::config::read_document(ops) else {
        return Vec::new();
    };
    shown(
        section_fields(section).unwrap_or_default(),
        &section_settings(&doc, section),
    )
}

/// Every PEM setting of an endpoint type, with whether it applies given
/// `settings` (the file's text of each key): a client certificate's
/// settings apply only with `auth.type = "client-certificate"`.
pub fn pem_fields(kind: &str, settings: &BTreeMap<String, String>) -> Vec<(Field, Pem, bool)> {
    let Some(t) = crate::endpoints::named(kind) else {
        return Vec::new();
    };
    t.form()
        .into_iter()
        .filter_map(|f| match f.kind {
            Kind::Pem(p) => Some((f, p, applies(&f, settings))),
            _ => None,
        })
        .collect()
}

fn applies(field: &Field, settings: &BTreeMap<String, String>) -> bool {
    field
        .when
        .is_none_or(|(on, value)| settings.get(on).map(|s| s.trim()) == Some(value))
}

/// What an upload for settings that do not apply yet changes besides
/// them: the setting they depend on (`auth.type`), and the keys of the
/// fields that stop applying (another authentication's `auth.header`).
fn switches(
    kind: &str,
    settings: &BTreeMap<String, String>,
    uploaded: &[&str],
) -> Vec<(String, Change)> {
    let Some(t) = crate::endpoints::named(kind) else {
        return Vec::new();
    };
    let form = t.form();
    let mut out: Vec<(String, Change)> = Vec::new();
    for (field, _, applying) in pem_fields(kind, settings) {
        let Some((on, value)) = field.when.filter(|_| !applying) else {
            continue;
        };
        if !uploaded.contains(&field.key) || out.iter().any(|(k, _)| k == on) {
            continue;
        }
        out.push((on.to_string(), Change::Set(EditValue::String(value.into()))));
        for other in &form {
            let Some((o_on, o_value)) = other.when else {
                continue;
            };
            let kept = form
                .iter()
                .any(|g| g.key == other.key && g.when == Some((on, value)));
            if o_on == on
                && o_value != value
                && !kept
                && settings.contains_key(other.key)
                && !out.iter().any(|(k, _)| k == other.key)
            {
                out.push((other.key.to_string(), Change::Remove));
            }
        }
    }
    out
}

/// The file a setting's written text names, as the gateway reads it.
fn named_file(written: &str) -> Result<PathBuf, String> {
    let expanded = crate::config::expand_references(written)?;
    Ok(crate::config::resolve(Path::new(&expanded)))
}

/// Each PEM setting of the endpoint with what its file shows now.
pub fn settings_shown(kind: &str, settings: &BTreeMap<String, String>) -> Vec<PemSetting> {
    shown(pem_fields(kind, settings), settings)
}

fn shown(fields: Vec<(Field, Pem, bool)>, settings: &BTreeMap<String, String>) -> Vec<PemSetting> {
    fields
        .into_iter()
        .filter(|(_, _, applying)| *applying)
        .map(|(field, pem, _)| {
            let written = settings.get(field.key).cloned();
            let certificate = !matches!(pem, Pem::Key { .. });
            let read = written
                .as_deref()
                .filter(|_| certificate)
                .map(|w| named_file(w).and_then(|p| expiry(&p)));
            PemSetting {
                key: field.key,
                label: field.label,
                written,
                certificate,
                expires: read.as_ref().and_then(|r| r.as_ref().ok().copied()),
                unreadable: read.and_then(Result::err),
            }
        })
        .collect()
}

/// The earliest expiry of the certificates in a file.
fn expiry(path: &Path) -> Result<i64, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    earliest_expiry(&bytes).ok_or_else(|| format!("{} holds no certificate", path.display()))
}

fn earliest_expiry(bytes: &[u8]) -> Option<i64> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(&der)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp().saturating_mul(1000))
        })
        .min()
}

/// Why an upload changed nothing.
#[derive(Debug)]
pub enum UploadError {
    Forbidden(Role),
    /// A file is unusable: the reasons, each on the setting it was for.
    Refused(Vec<FieldError>),
    /// The configuration change was refused (the files were removed).
    Change(ChangeError),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::Forbidden(role) => write!(f, "this needs the {} role", role.as_str()),
            UploadError::Refused(errors) => {
                let reasons: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
                f.write_str(&reasons.join("; "))
            }
            UploadError::Change(e) => write!(f, "{e}"),
        }
    }
}

fn refused(key: &str, message: String) -> FieldError {
    FieldError {
        field: Some(key.to_string()),
        message,
        line: 0,
    }
}

/// Checks `uploads` for the settings of `owner`, stores them and points
/// the settings at them (an endpoint's live, a section's at the next
/// start). Needs admin; audited as `endpoint.certificates` or
/// `settings.certificates` (the change) and one `certificate.upload` per
/// file (what it holds and where it is).
pub async fn upload(
    ops: &Operations,
    actor: &Actor,
    owner: Owner<'_>,
    uploads: Vec<Upload>,
) -> Result<(Applied, Vec<Stored>), UploadError> {
    if actor.role < Role::Admin {
        return Err(UploadError::Forbidden(Role::Admin));
    }
    let name = owner.name();
    let (kind, settings, fields) = match owner {
        Owner::Endpoint(name) => {
            let (kind, settings) =
                super::endpoints::file_settings(ops, actor, name).map_err(UploadError::Change)?;
            let fields = pem_fields(&kind, &settings);
            (kind, settings, fields)
        }
        Owner::Section(section) => {
            let Some(fields) = section_fields(section) else {
                return Err(UploadError::Refused(vec![FieldError {
                    field: None,
                    message: format!("`[{section}]` has no certificate settings"),
                    line: 0,
                }]));
            };
            let (doc, _) = super::config::read_document(ops).map_err(UploadError::Change)?;
            (String::new(), section_settings(&doc, section), fields)
        }
    };
    let checked = check_all(&fields, &settings, &uploads, ops.journal().now_ms())?;
    let dir = directory(&data_dir(&ops.config()));
    let mut stored: Vec<Stored> = Vec::new();
    for (up, accepted) in uploads.iter().zip(checked) {
        match write_new(&dir, name, &up.key, &up.bytes) {
            Ok(path) => stored.push(Stored {
                key: up.key.clone(),
                path,
                accepted,
            }),
            Err(e) => {
                remove(&stored);
                return Err(UploadError::Refused(vec![refused(&up.key, e)]));
            }
        }
    }
    let keys: Vec<&str> = uploads.iter().map(|u| u.key.as_str()).collect();
    let mut changes = match owner {
        Owner::Endpoint(_) => switches(&kind, &settings, &keys),
        Owner::Section(_) => Vec::new(),
    };
    changes.extend(stored.iter().map(|s| {
        let path = s.path.display().to_string();
        (s.key.clone(), Change::Set(EditValue::String(path)))
    }));
    let (action, table) = match owner {
        Owner::Endpoint(n) => ("endpoint.certificates", TablePath::Endpoint(n)),
        Owner::Section(s) => ("settings.certificates", TablePath::Section(s)),
    };
    let applied = change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action,
            target: name,
            tables: &[table],
        },
        |doc| match owner {
            Owner::Endpoint(n) => doc.edit_endpoint(n, &changes),
            Owner::Section(s) => changes
                .iter()
                .try_for_each(|(key, c)| doc.set_section_value(s, key, c)),
        },
    )
    .await;
    let applied = match applied {
        Ok(a) => a,
        Err(e) => {
            remove(&stored);
            return Err(UploadError::Change(e));
        }
    };
    for s in &stored {
        let detail = describe(s);
        if let Err(e) = ops
            .journal()
            .audit(&actor.name, "certificate.upload", Some(name), Some(&detail))
            .await
        {
            tracing::error!(error = %e, "a certificate upload could not be audited");
        }
    }
    Ok((applied, stored))
}

/// What the audit log says of a stored file.
fn describe(s: &Stored) -> String {
    let a = &s.accepted;
    let expires = a
        .expires
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| format!(", expires {}", t.strftime("%Y-%m-%d")))
        .unwrap_or_default();
    let count = match a.certificates {
        0 => String::new(),
        1 => ", 1 certificate".into(),
        n => format!(", {n} certificates"),
    };
    format!(
        "{}: {}{count}{expires} → {}",
        s.key,
        a.subject,
        s.path.display()
    )
}

/// Every upload checked, then each certificate against its key; all the
/// reasons at once.
fn check_all(
    fields: &[(Field, Pem, bool)],
    settings: &BTreeMap<String, String>,
    uploads: &[Upload],
    now_ms: i64,
) -> Result<Vec<Accepted>, UploadError> {
    if uploads.is_empty() {
        return Err(UploadError::Refused(vec![FieldError {
            field: None,
            message: "no file was chosen".into(),
            line: 0,
        }]));
    }
    let mut errors = Vec::new();
    let mut accepted = Vec::new();
    let mut pems: BTreeMap<&str, Pem> = BTreeMap::new();
    for up in uploads {
        let Some((_, pem, _)) = fields.iter().find(|(f, _, _)| f.key == up.key) else {
            errors.push(refused(
                &up.key,
                format!("`{}` is not a certificate setting here", up.key),
            ));
            continue;
        };
        pems.insert(&up.key, *pem);
        if up.bytes.len() > MAX_FILE_SIZE {
            errors.push(refused(
                &up.key,
                format!(
                    "the file has {} bytes, more than the {} KiB a PEM file may have here",
                    up.bytes.len(),
                    MAX_FILE_SIZE / 1024
                ),
            ));
            continue;
        }
        match upload::check(pem.holds(), &up.bytes, now_ms) {
            Ok(a) => accepted.push(a),
            Err(e) => errors.push(refused(&up.key, e)),
        }
    }
    if !errors.is_empty() {
        return Err(UploadError::Refused(errors));
    }
    // The certificate is paired with the key uploaded beside it, else
    // with the file the key's setting names now (and the other way round).
    let bytes_of = |key: &str| -> Option<Result<Vec<u8>, String>> {
        if let Some(up) = uploads.iter().find(|u| u.key == key) {
            return Some(Ok(up.bytes.clone()));
        }
        // A key of a setting that does not apply (an API key's `auth.key`)
        // names no file.
        let applying = fields.iter().any(|(f, _, on)| f.key == key && *on);
        let written = settings.get(key).filter(|_| applying)?;
        Some(named_file(written).and_then(|p| {
            std::fs::read(&p).map_err(|e| {
                format!(
                    "the file `{key}` names ({}) cannot be read ({e}); upload the two together",
                    p.display()
                )
            })
        }))
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (key, pem) in &pems {
        let pair = match pem {
            Pem::Certificate { key: k } => (*key, *k),
            Pem::Key { certificate } => (*certificate, *key),
            _ => continue,
        };
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    for (cert_key, key_key) in pairs {
        let (Some(cert), Some(key)) = (bytes_of(cert_key), bytes_of(key_key)) else {
            continue;
        };
        let blame = if pems.contains_key(key_key) {
            key_key
        } else {
            cert_key
        };
        match (cert, key) {
            (Ok(c), Ok(k)) => {
                if let Err(e) = upload::check_pair(&c, &k) {
                    errors.push(refused(blame, e));
                }
            }
            (Err(e), _) | (_, Err(e)) => errors.push(refused(blame, e)),
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(UploadError::Refused(errors))
    }
}

/// Writes `bytes` to a new file in `dir` named after the endpoint, the
/// setting and the time, never replacing one (a number is added when the
/// name is taken); mode 0600, made durable before the setting names it.
fn write_new(dir: &Path, endpoint: &str, key: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |what: &str, e: std::io::Error| format!("cannot {what} in {}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err("create the directory", e))?;
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let stem = format!("{}.{}.{stamp}", safe(endpoint), safe(key));
    for n in 0..1000 {
        let name = if n == 0 {
            format!("{stem}.pem")
        } else {
            format!("{stem}-{n}.pem")
        };
        let path = dir.join(name);
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err("write a file", e)),
        };
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(err("write a file", e));
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        return Ok(path);
    }
    Err(format!("no free file name for {stem} in {}", dir.display()))
}

fn remove(stored: &[Stored]) {
    for s in stored {
        if let Err(e) = std::fs::remove_file(&s.path) {
            tracing::warn!(path = %s.path.display(), error = %e, "an unused uploaded file could not be removed");
        }
    }
}
