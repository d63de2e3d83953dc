//! A log bundle: what a support engineer needs to see of one gateway, as
//! one gzip-compressed tar file no larger than asked.
//!
//! It holds `manifest.json` (device, build, when, what each file is and
//! whether it was shortened), `log/recent.log` (this process's log since
//! it started, from the in-memory ring), `log/journald.log` (the service's
//! journal across restarts, when `journalctl` can read it), `config/gateway.toml`
//! (the configuration file with every secret masked), `audit.json` (the
//! newest audit entries) and whatever the caller adds (the hub adds its
//! health report).
//!
//! # Size
//!
//! The cap is on the compressed bytes. When the bundle is larger, the logs
//! are shortened from their oldest end (the newest lines are what explains
//! a fault) in proportion to the overshoot and the bundle is made again;
//! the manifest says which files were shortened. A cap too small for the
//! bundle without its logs is refused.
//!
//! # Patient data
//!
//! The log and the audit name messages by id and control id, never by
//! payload; the configuration's secrets (passwords, client secrets, API
//! keys, tokens) are masked, and a value that is only a `${VAR}` reference
//! is kept, since it says where the secret comes from without saying it.

use super::{Actor, Operations, Refusal, Role};
use crate::service::metrics::BUILD;
use crate::service::recent_log;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::time::Duration;
use toml_edit::{DocumentMut, Item};

/// The smallest cap accepted.
pub const MIN_BYTES: u64 = 64 << 10;
/// The largest cap accepted, whatever is asked.
pub const MAX_BYTES: u64 = 64 << 20;
/// The cap when none is asked.
pub const DEFAULT_BYTES: u64 = 8 << 20;
/// Audit entries in the bundle.
const AUDIT_ENTRIES: usize = 1000;
/// How long `journalctl` may take.
const JOURNALCTL_TIMEOUT: Duration = Duration::from_secs(10);
/// The service unit whose journal is read.
const UNIT: &str = "ecko-gateway.service";

/// What to put in a bundle besides what every bundle has.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The cap on the compressed bundle, in bytes (clamped to
    /// [`MIN_BYTES`]..=[`MAX_BYTES`]).
    pub max_bytes: u64,
    /// Identity written into the manifest (site and device).
    pub identity: Value,
    /// More files, by name, as JSON documents.
    pub extra: Vec<(String, Value)>,
}

/// A finished bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub bytes: Vec<u8>,
    pub files: Vec<String>,
    /// Whether any log was shortened to fit the cap.
    pub shortened: bool,
}

/// One file of the bundle; logs may be shortened, the rest may not.
struct File {
    name: &'static str,
    text: Vec<u8>,
    log: bool,
}

/// Makes the bundle `request` asks for, as `actor` (an operator at least);
/// audited as `log.bundle`.
pub async fn make(ops: &Operations, actor: &Actor, request: Request) -> Result<Bundle, Refusal> {
    actor.require(Role::Operator)?;
    let cap = request.max_bytes.clamp(MIN_BYTES, MAX_BYTES);
    let journal = ops.journal();
    let audit = journal.audit_log(None, AUDIT_ENTRIES).await?;
    let audit: Vec<Value> = audit
        .iter()
        .map(|a| {
            json!({"id": a.id, "at": a.at, "actor": a.actor, "action": a.action,
                   "target": a.target, "detail": a.detail})
        })
        .collect();
    let config = ops.config();
    let config_text = match &config.source {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => masked(&text),
            Err(e) => format!("# cannot read {}: {e}\n", path.display()),
        },
        None => "# the embedded default configuration\n".to_string(),
    };
    let mut files = vec![
        File {
            name: "log/recent.log",
            text: recent_log::process().snapshot(),
            log: true,
        },
        File {
            name: "config/gateway.toml",
            text: config_text.into_bytes(),
            log: false,
        },
        File {
            name: "audit.json",
            text: pretty(&Value::Array(audit)),
            log: false,
        },
    ];
    if let Some(text) = journald().await {
        files.insert(
            1,
            File {
                name: "log/journald.log",
                text,
                log: true,
            },
        );
    }
    let extra: Vec<(String, Vec<u8>)> = request
        .extra
        .iter()
        .map(|(name, value)| (name.clone(), pretty(value)))
        .collect();
    let manifest = |files: &[File], shortened: &[&str]| {
        pretty(&json!({
            "v": 1,
            "identity": request.identity,
            "version": BUILD.version,
            "commit": BUILD.commit,
            "target": BUILD.target,
            "created_at": journal.now_ms(),
            "files": files.iter().map(|f| json!({
                "name": f.name,
                "bytes": f.text.len(),
                "shortened": shortened.contains(&f.name),
            })).chain(extra.iter().map(|(name, text)| json!({
                "name": name, "bytes": text.len(), "shortened": false,
            }))).collect::<Vec<_>>(),
        }))
    };
    let made_at = (journal.now_ms() / 1000).max(0) as u64;
    let mut shortened: Vec<&str> = Vec::new();
    for _ in 0..8 {
        let bytes = pack(made_at, &manifest(&files, &shortened), &files, &extra)
            .map_err(|e| Refusal::Internal(format!("cannot pack the bundle: {e}")))?;
        if bytes.len() as u64 <= cap {
            let names = std::iter::once("manifest.json".to_string())
                .chain(files.iter().map(|f| f.name.to_string()))
                .chain(extra.iter().map(|(n, _)| n.clone()))
                .collect();
            journal
                .audit(
                    &actor.name,
                    "log.bundle",
                    None,
                    Some(&format!(
                        "{} bytes{}",
                        bytes.len(),
                        if shortened.is_empty() {
                            String::new()
                        } else {
                            format!(", shortened: {}", shortened.join(", "))
                        }
                    )),
                )
                .await?;
            return Ok(Bundle {
                bytes,
                files: names,
                shortened: !shortened.is_empty(),
            });
        }
        let logs: usize = files.iter().filter(|f| f.log).map(|f| f.text.len()).sum();
        if logs == 0 {
            break;
        }
        // Compressed and plain sizes shrink alike; a tenth more for the
        // rest of the bundle, which does not shrink.
        let keep = (cap as f64 / bytes.len() as f64) * 0.9;
        for f in files.iter_mut().filter(|f| f.log && !f.text.is_empty()) {
            f.text = newest(&f.text, (f.text.len() as f64 * keep) as usize);
            if !shortened.contains(&f.name) {
                shortened.push(f.name);
            }
        }
    }
    Err(Refusal::invalid(
        "max_bytes",
        format!("a bundle does not fit in {cap} bytes even without its logs"),
    ))
}

/// The last `n` bytes of `text`, from the start of a line.
fn newest(text: &[u8], n: usize) -> Vec<u8> {
    if n >= text.len() {
        return text.to_vec();
    }
    let from = text.len() - n;
    let start = text[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |p| from + p + 1);
    text[start..].to_vec()
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

fn pack(
    made_at: u64,
    manifest: &[u8],
    files: &[File],
    extra: &[(String, Vec<u8>)],
) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    let mut add = |name: &str, text: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(made_at);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, text)
    };
    add("manifest.json", manifest)?;
    for f in files {
        add(f.name, &f.text)?;
    }
    for (name, text) in extra {
        add(name, text)?;
    }
    tar.into_inner()?.finish()
}

/// The service's journal, when this system has one the process may read.
async fn journald() -> Option<Vec<u8>> {
    let run = tokio::process::Command::new("journalctl")
        .args([
            "--unit",
            UNIT,
            "--no-pager",
            "--output",
            "short-iso-precise",
        ])
        .args(["--lines", "50000", "--quiet"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(JOURNALCTL_TIMEOUT, run)
        .await
        .ok()?
        .ok()?;
    let useful = out.status.success()
        && !out.stdout.is_empty()
        && !out.stdout.starts_with(b"-- No entries --");
    useful.then_some(out.stdout)
}

/// Whether the value of setting `key` is a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key.ends_with("_file") || key.ends_with("_url") || key.ends_with("_path") {
        return false;
    }
    ["password", "secret", "token", "api_key", "passphrase"]
        .iter()
        .any(|s| key.contains(s))
        || key == "key"
}

/// Configuration text with every secret's value masked; text that does not
/// parse is left out whole, since its secrets cannot be found.
pub fn masked(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return "# the configuration file does not parse; left out\n".to_string();
    };
    mask_table(doc.as_table_mut());
    doc.to_string()
}

fn mask_table(table: &mut dyn toml_edit::TableLike) {
    for (key, item) in table.iter_mut() {
        let secret = is_secret(key.get());
        mask_item(item, secret);
    }
}

fn mask_item(item: &mut Item, secret: bool) {
    match item {
        Item::Value(value) => mask_value(value, secret),
        Item::Table(t) => mask_table(t),
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                mask_table(t);
            }
        }
        Item::None => {}
    }
}

fn mask_value(value: &mut toml_edit::Value, secret: bool) {
    match value {
        toml_edit::Value::String(s) if secret => {
            let v = s.value();
            let reference = v.starts_with("${") && v.ends_with('}') && !v[2..].contains("${");
            if !reference {
                let decor = s.decor().clone();
                let mut masked = toml_edit::Formatted::new("********".to_string());
                *masked.decor_mut() = decor;
                *s = masked;
            }
        }
        toml_edit::Value::InlineTable(t) => mask_table(t),
        toml_edit::Value::Array(a) => {
            for v in a.iter_mut() {
                mask_value(v, secret);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::Health;
    use crate::journal::{Journal, JournalOptions};
    use std::io::Read;
    use std::sync::Arc;

    fn entries(bundle: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let mut text = Vec::new();
                e.read_to_end(&mut text).unwrap();
                (name, text)
            })
            .collect()
    }

    /// A gateway whose FHIR endpoint's API key is `hunter2`.
    async fn ops(dir: &std::path::Path) -> Operations {
        let config_text = format!(
            r#"
            [journal]
            path = "{d}/journal.db"
            [[endpoint]]
            name = "inbox"
            type = "file-drop"
            path = "{d}/inbox"
            [[endpoint]]
            name = "hub"
            type = "fhir"
            url = "http://127.0.0.1:9/fhir"
            [endpoint.auth]
            type = "api-key"
            key = "hunter2"
            [[route]]
            name = "r"
            from = ["inbox"]
            to = ["hub"]
            "#,
            d = dir.display()
        );
        let config_text = config_text.as_str();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config_text).unwrap();
        let mut config = Config::parse(config_text, "gateway.toml", |_| None).unwrap();
        config.source = Some(path);
        let journal = Journal::open(JournalOptions::new(dir.join("journal.db"))).unwrap();
        Operations::fixed(journal, Arc::new(config), Health::new())
    }

    #[test]
    fn secrets_are_masked_and_references_and_file_names_kept() {
        let text = r#"
[hub]
url = "mqtts://hub.example:8883"
password = "hunter2"
ca_file = "/etc/ecko/hub-ca.pem"

[[endpoint]]
name = "fhir"
auth = { type = "oauth2", client_secret = "s3cret", token_url = "https://idp/token" }

[[endpoint]]
name = "api"
auth = { type = "api-key", key = "${ECKO_API_KEY}" }
"#;
        let out = masked(text);
        assert!(!out.contains("hunter2") && !out.contains("s3cret"), "{out}");
        assert!(out.contains("password = \"********\""), "{out}");
        assert!(out.contains("${ECKO_API_KEY}"), "{out}");
        assert!(out.contains("/etc/ecko/hub-ca.pem"), "{out}");
        assert!(out.contains("https://idp/token"), "{out}");
        assert_eq!(
            masked("password = \"x"),
            "# the configuration file does not parse; left out\n"
        );
    }

    #[test]
    fn the_newest_lines_are_kept_whole() {
        assert_eq!(newest(b"one\ntwo\nthree\n", 8), b"three\n");
        assert_eq!(newest(b"one\ntwo\n", 100), b"one\ntwo\n");
    }

    #[tokio::test]
    async fn a_bundle_holds_the_manifest_log_masked_configuration_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path()).await;
        recent_log::process().push(b"a line that the bundle must carry\n");
        let request = Request {
            max_bytes: DEFAULT_BYTES,
            identity: json!({"site": "lab", "device": "gw-1"}),
            extra: vec![("health.json".into(), json!({"ok": true}))],
        };
        let bundle = make(&ops, &Actor::command_line("root"), request)
            .await
            .unwrap();
        let files = entries(&bundle.bytes);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        for wanted in [
            "manifest.json",
            "log/recent.log",
            "config/gateway.toml",
            "audit.json",
            "health.json",
        ] {
            assert!(names.contains(&wanted), "{names:?}");
        }
        let file = |name: &str| {
            String::from_utf8(files.iter().find(|(n, _)| n == name).unwrap().1.clone()).unwrap()
        };
        assert!(file("log/recent.log").contains("a line that the bundle must carry"));
        assert!(!file("config/gateway.toml").contains("hunter2"));
        let manifest: Value = serde_json::from_str(&file("manifest.json")).unwrap();
        assert_eq!(manifest["identity"]["device"], "gw-1");
        assert_eq!(manifest["version"], BUILD.version);
        assert!(!bundle.shortened);
        let audit = ops.journal().audit_log(None, 10).await.unwrap();
        assert!(audit.iter().any(|a| a.action == "log.bundle"), "{audit:?}");
    }

    #[tokio::test]
    async fn a_bundle_over_its_cap_keeps_the_newest_log_lines_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path()).await;
        // Lines that do not compress away, more than the cap.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..40_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            recent_log::process().push(format!("line {i} noise {seed:016x}\n").as_bytes());
        }
        let request = Request {
            max_bytes: MIN_BYTES,
            ..Request::default()
        };
        let bundle = make(&ops, &Actor::command_line("root"), request)
            .await
            .unwrap();
        assert!(
            bundle.bytes.len() as u64 <= MIN_BYTES,
            "{}",
            bundle.bytes.len()
        );
        assert!(bundle.shortened);
        let files = entries(&bundle.bytes);
        let log = &files.iter().find(|(n, _)| n == "log/recent.log").unwrap().1;
        let log = String::from_utf8(log.clone()).unwrap();
        assert!(log.contains("line 39999 noise"), "the newest line is kept");
        assert!(!log.contains("line 0 noise"), "the oldest is dropped");
        // Another test may add its line meanwhile; either way a whole one.
        let first = log.lines().next().unwrap();
        assert!(
            (first.starts_with("line ") && first.rsplit(' ').next().unwrap().len() == 16)
                || first.starts_with("a line"),
            "from the start of a line: {first}"
        );
        let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
        let recent = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "log/recent.log")
            .unwrap()
            .clone();
        assert_eq!(recent["shortened"], true);
    }

    #[tokio::test]
    async fn a_viewer_may_not_make_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path()).await;
        let viewer = Actor {
            name: "v".into(),
            role: Role::Viewer,
            user_id: None,
        };
        assert!(matches!(
            make(&ops, &viewer, Request::default()).await,
            Err(Refusal::Forbidden(_))
        ));
    }
}
