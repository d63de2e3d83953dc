//! Configuration changes: one change of the file, from any front end to the
//! running gateway: read the file, edit it, validate the result exactly as the file
//! is validated at start, apply it to the running gateway, then write it
//! (atomically, keeping the version) and audit it.
//!
//! A change that leaves the file's text as it is (enabling an enabled
//! endpoint) writes no version but is still applied and audited. So is a
//! [`reload`] (SIGHUP): the file edited by hand is applied as it is, and
//! the next change from the page keeps it as the `on_disk` version.
//!
//! The order makes every failure harmless: a validation error or an
//! endpoint that cannot start changes neither the file nor the running
//! gateway; a file that cannot be written puts the previous configuration
//! back into the running gateway. Edits are serialised by the running
//! gateway ([`Gateway::lock_edits`]), page and reload alike, so two of them
//! never build on the same version.

use super::{Actor, ApplyFailed, ApplyReport, Gateway, Operations, Role};
use crate::config::edit::{key_spans, Change, ConfigDocument, EditError, EditValue, TablePath};
use crate::config::history::{diff_lines, DiffLine, History, HistoryError, Version};
use crate::config::{Config, ConfigError};
use crate::endpoints::form::Kind;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many versions of the file are kept.
pub const KEPT_VERSIONS: usize = 50;

/// One validation problem, placed on the field it is about when it can be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The configuration key (dotted for nested tables, e.g. `tls.cert`);
    /// `None` when the problem is not about one key of the edited table.
    pub field: Option<String>,
    pub message: String,
    /// Line in the candidate file.
    pub line: usize,
}

/// Why a change was not made; in every case the file and the running
/// gateway are as they were.
#[derive(Debug)]
pub enum ChangeError {
    /// The actor's role is below the one the change needs.
    Forbidden(Role),
    /// The page is not attached to a running gateway, or the configuration
    /// did not come from a file.
    NotEditable(String),
    Edit(EditError),
    Invalid(Vec<FieldError>),
    Apply(ApplyFailed),
    Write(HistoryError),
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::Forbidden(role) => write!(f, "this needs the {} role", role.as_str()),
            ChangeError::NotEditable(why) => f.write_str(why),
            ChangeError::Edit(e) => write!(f, "{e}"),
            ChangeError::Invalid(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    f.write_str(&e.message)?;
                }
                Ok(())
            }
            ChangeError::Apply(e) => write!(f, "not applied: {e}"),
            ChangeError::Write(e) => write!(f, "not saved: {e}"),
        }
    }
}

/// A change made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    /// The version written; `None` when the file's text did not change.
    pub version: Option<Version>,
    pub report: ApplyReport,
}

/// The directory of the journal: where the device certificate and the
/// configuration's versions live.
pub fn data_dir(config: &Config) -> PathBuf {
    crate::config::resolve(&config.journal.path)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the configuration file is and where its versions are kept.
pub fn store(ops: &Operations) -> Result<(PathBuf, History), ChangeError> {
    if ops.gateway().is_none() {
        return Err(not_attached());
    }
    store_of(&ops.config())
}

fn not_attached() -> ChangeError {
    ChangeError::NotEditable("this page is not attached to a running gateway".into())
}

fn store_of(config: &Config) -> Result<(PathBuf, History), ChangeError> {
    let Some(path) = config.source.clone() else {
        return Err(ChangeError::NotEditable(
            "the running configuration did not come from a file".into(),
        ));
    };
    let history = History::new(data_dir(config).join("config-history"), KEPT_VERSIONS);
    Ok((path, history))
}

/// The configuration file's text, parsed for editing.
pub fn read_document(ops: &Operations) -> Result<(ConfigDocument, String), ChangeError> {
    let (path, _) = store(ops)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ChangeError::NotEditable(format!("cannot read {}: {e}", path.display())))?;
    let doc = ConfigDocument::parse(&text).map_err(ChangeError::Edit)?;
    Ok((doc, text))
}

/// What a change is about, for errors and the audit log.
pub struct Intent<'a> {
    /// Audit action, e.g. `endpoint.edit`.
    pub action: &'a str,
    /// Audit target, e.g. the endpoint's name.
    pub target: &'a str,
    /// The tables whose keys errors are placed on.
    pub tables: &'a [TablePath<'a>],
}

/// Edits the file with `edit`, then validates, applies, writes and audits
/// (`intent.action` on `intent.target`, with the apply's summary and the
/// version). Needs `role`.
pub async fn change(
    ops: &Operations,
    actor: &Actor,
    role: Role,
    intent: Intent<'_>,
    edit: impl FnOnce(&mut ConfigDocument) -> Result<(), EditError>,
) -> Result<Applied, ChangeError> {
    change_text(ops, actor, role, intent, |current| {
        let mut doc = ConfigDocument::parse(current).map_err(ChangeError::Edit)?;
        edit(&mut doc).map_err(ChangeError::Edit)?;
        Ok(doc.to_text())
    })
    .await
}

/// Like [`change`] with the new text made by `make` from the current one
/// (a rollback gives a kept version's text).
pub async fn change_text(
    ops: &Operations,
    actor: &Actor,
    role: Role,
    intent: Intent<'_>,
    make: impl FnOnce(&str) -> Result<String, ChangeError>,
) -> Result<Applied, ChangeError> {
    if actor.role < role {
        return Err(ChangeError::Forbidden(role));
    }
    let Some(gateway) = ops.gateway() else {
        return Err(not_attached());
    };
    change_running(gateway.as_ref(), &actor.name, intent, make).await
}

/// Replaces the whole file with `text`, checked exactly as `check-config`
/// checks a file (the loader, then every enabled endpoint's start-up
/// preconditions) before it is applied like any change: an endpoint that
/// cannot start puts the running gateway back as it was and leaves the
/// file alone. Needs admin; audited as `intent.action`.
pub async fn replace_file(
    ops: &Operations,
    actor: &Actor,
    intent: Intent<'_>,
    text: String,
) -> Result<Applied, ChangeError> {
    let tables = intent.tables;
    change_text(ops, actor, Role::Admin, intent, move |_| {
        let config = Config::parse(&text, "pushed configuration", |name| {
            std::env::var(name).ok()
        })
        .map_err(|errors| ChangeError::Invalid(place(&text, tables, &errors.0)))?;
        let problems = crate::preflight::check(&config);
        if !problems.is_empty() {
            return Err(ChangeError::Invalid(
                problems
                    .iter()
                    .map(|p| FieldError {
                        field: None,
                        message: p.to_string(),
                        line: 0,
                    })
                    .collect(),
            ));
        }
        Ok(text)
    })
    .await
}

/// Reads the configuration file again and applies it as it is, validated,
/// versioned and audited (`config.reload` by `user`) like a change from the
/// page: what SIGHUP does after the file was edited by hand. The file is
/// kept as a new version when it differs from the newest one. On any error
/// the gateway runs on as it was.
pub async fn reload<G: Gateway + ?Sized>(gateway: &G, user: &str) -> Result<Applied, ChangeError> {
    let file = gateway
        .config()
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let intent = Intent {
        action: "config.reload",
        target: &file,
        tables: &[],
    };
    change_running(gateway, user, intent, |current| Ok(current.to_string())).await
}

/// [`change_text`] on the running gateway itself, with or without its page.
async fn change_running<G: Gateway + ?Sized>(
    supervisor: &G,
    user: &str,
    intent: Intent<'_>,
    make: impl FnOnce(&str) -> Result<String, ChangeError>,
) -> Result<Applied, ChangeError> {
    let _serial = supervisor.lock_edits().await;
    let (path, history) = store_of(&supervisor.config())?;
    let journal = supervisor.journal();
    let current = std::fs::read_to_string(&path)
        .map_err(|e| ChangeError::NotEditable(format!("cannot read {}: {e}", path.display())))?;
    let text = make(&current)?;
    let file = path.display().to_string();
    let mut config = Config::parse(&text, &file, |name| std::env::var(name).ok())
        .map_err(|errors| ChangeError::Invalid(place(&text, intent.tables, &errors.0)))?;
    config.source = Some(path.clone());
    let previous = supervisor.config();
    let report = supervisor.apply(config).await.map_err(ChangeError::Apply)?;
    let version = if text == current {
        // A reload: the file is applied as it is, and a hand edit is kept
        // as a version. The change is live and on disk already, so a
        // history that cannot be written is a warning, not a reason to undo.
        match history.keep_if_new(&text, intent.action, user, journal.now_ms()) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "the reloaded configuration could not be kept as a version");
                None
            }
        }
    } else {
        match history.commit(&path, &text, intent.action, user, journal.now_ms()) {
            Ok(v) => Some(v),
            Err(e) => {
                if let Err(again) = supervisor.apply(previous.as_ref().clone()).await {
                    tracing::error!(error = %again, "cannot go back to the previous configuration after a failed write");
                }
                return Err(ChangeError::Write(e));
            }
        }
    };
    let id = version.as_ref().map_or("unchanged", |v| v.id.as_str());
    let detail = format!("{} (version {id})", report.summary());
    if let Err(e) = journal
        .audit(user, intent.action, Some(intent.target), Some(&detail))
        .await
    {
        tracing::error!(error = %e, "a configuration change could not be audited");
    }
    // For the hub uplink: journalled, published once the broker is reached.
    let event = serde_json::json!({
        "action": intent.action,
        "target": intent.target,
        "version": id,
        "by": user,
        "summary": report.summary(),
    })
    .to_string();
    if let Err(e) = journal
        .record_hub_event("config.changed", Some(&file), Some(&event))
        .await
    {
        tracing::error!(error = %e, "a configuration change could not be journalled for the hub");
    }
    tracing::info!(
        user,
        action = intent.action,
        target = intent.target,
        version = id,
        "configuration changed: {}",
        report.summary()
    );
    Ok(Applied { version, report })
}

/// Places each error on the key of one of `tables` it points at (or
/// names).
pub fn place(text: &str, tables: &[TablePath<'_>], errors: &[ConfigError]) -> Vec<FieldError> {
    let per_table: Vec<_> = tables.iter().map(|t| key_spans(text, *t)).collect();
    errors
        .iter()
        .map(|e| {
            per_table
                .iter()
                .find_map(|spans| place_in(spans, e))
                .unwrap_or_else(|| FieldError {
                    field: None,
                    message: e.message.clone(),
                    line: e.line,
                })
        })
        .collect()
}

/// The error placed on a key of one table, if it is about one.
fn place_in(spans: &[crate::config::edit::KeySpan], e: &ConfigError) -> Option<FieldError> {
    let at = (e.line, e.column);
    // The innermost key whose text holds the error's position.
    let by_position = spans
        .iter()
        .filter(|s| s.start <= at && at <= s.end)
        .min_by_key(|s| (s.end.0 - s.start.0, !s.key.contains('.')))
        .map(|s| s.key.clone());
    // Errors about a whole table point at its start; they name the key.
    let in_table = spans.first().is_some_and(|first| {
        let header = first.start.0.saturating_sub(1);
        let last = spans.iter().map(|s| s.end.0).max().unwrap_or(0);
        (header..=last).contains(&e.line)
    });
    let by_name = if in_table {
        named_key(&e.message, spans)
    } else {
        None
    };
    by_position.or(by_name).map(|field| FieldError {
        field: Some(field),
        message: e.message.clone(),
        line: e.line,
    })
}

/// A key of the table the message names in backquotes (`` `url` must
/// be... ``), preferring the most specific.
fn named_key(message: &str, spans: &[crate::config::edit::KeySpan]) -> Option<String> {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if message.contains("endpoint name `") {
        return Some("name".into());
    }
    for q in &quoted {
        if let Some(s) = spans.iter().find(|s| s.key == *q) {
            return Some(s.key.clone());
        }
    }
    for q in &quoted {
        if let Some(s) = spans
            .iter()
            .find(|s| s.key.rsplit('.').next() == Some(q) && s.key.contains('.'))
        {
            return Some(s.key.clone());
        }
    }
    // Named in words: `time_zone` as "time zone".
    spans
        .iter()
        .find(|s| s.key.contains('_') && message.contains(&s.key.replace('_', " ")))
        .map(|s| s.key.clone())
}

/// The text a form or the API gives for a setting of `kind`, as the value
/// written to the file: a number where one is expected, a bare `${ENV}`
/// reference kept as a reference, anything else as a string for the
/// loader to judge.
pub fn typed_value(kind: Kind, typed: &str) -> EditValue {
    let v = typed.trim();
    let bare_reference = v.starts_with("${") && v.ends_with('}') && v.matches("${").count() == 1;
    match kind {
        Kind::Integer | Kind::Float | Kind::Bool | Kind::Size if bare_reference => {
            EditValue::Reference(v.to_string())
        }
        Kind::Integer | Kind::Size => v
            .parse::<i64>()
            .map_or_else(|_| EditValue::String(v.to_string()), EditValue::Integer),
        Kind::Float => v
            .parse::<f64>()
            .map_or_else(|_| EditValue::String(v.to_string()), EditValue::Float),
        Kind::Bool => match v {
            "true" => EditValue::Bool(true),
            "false" => EditValue::Bool(false),
            other => EditValue::String(other.to_string()),
        },
        Kind::Text | Kind::Duration | Kind::Choice(_) | Kind::Secret | Kind::Pem(_) => {
            EditValue::String(v.to_string())
        }
    }
}

/// The settings changed here: (name, section, key, kind).
pub const SETTINGS: &[(&str, &str, &str, Kind)] = &[
    ("retention_days", "journal", "retention_days", Kind::Integer),
    ("max_size", "journal", "max_size", Kind::Size),
    ("time_zone", "site", "time_zone", Kind::Text),
];

/// The settings as the file writes them, by name; `None` when the file
/// cannot be read or changed.
pub fn written_settings(ops: &Operations) -> Option<BTreeMap<String, String>> {
    let (doc, _) = read_document(ops).ok()?;
    Some(
        SETTINGS
            .iter()
            .filter_map(|(name, section, key, _)| {
                doc.section_value(section, key)
                    .map(|v| (name.to_string(), v))
            })
            .collect(),
    )
}

/// Changes the settings of [`SETTINGS`] to `submitted` (by name; empty:
/// back to the default; absent or as written: left alone); other names are
/// ignored. Needs admin; audited as `settings.edit`.
pub async fn save_settings(
    ops: &Operations,
    actor: &Actor,
    submitted: &BTreeMap<String, String>,
) -> Result<Applied, ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let written = written_settings(ops).unwrap_or_default();
    let mut changes = Vec::new();
    for (name, section, key, kind) in SETTINGS {
        let Some(typed) = submitted.get(*name).map(|t| t.trim()) else {
            continue;
        };
        let now = written.get(*name).map(String::as_str);
        if Some(typed) == now || (typed.is_empty() && now.is_none()) {
            continue;
        }
        let c = if typed.is_empty() {
            Change::Remove
        } else {
            Change::Set(typed_value(*kind, typed))
        };
        changes.push((*section, *key, c));
    }
    change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "settings.edit",
            target: "settings",
            tables: &[TablePath::Section("journal"), TablePath::Section("site")],
        },
        |doc| {
            for (section, key, c) in &changes {
                doc.set_section_value(section, key, c)?;
            }
            Ok(())
        },
    )
    .await
}

/// Replaces every route with the TOML `fragment` (`[[route]]` tables).
/// Needs admin; audited as `routes.edit`.
pub async fn save_routes(
    ops: &Operations,
    actor: &Actor,
    fragment: &str,
) -> Result<Applied, ChangeError> {
    change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "routes.edit",
            target: "routes",
            tables: &[],
        },
        |doc| doc.replace_routes(fragment),
    )
    .await
}

/// The kept versions, newest first, and where they are kept. Needs admin.
pub fn versions(ops: &Operations, actor: &Actor) -> Result<(Vec<Version>, PathBuf), ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let (_, history) = store(ops)?;
    Ok((history.list(), history.dir().to_path_buf()))
}

/// A kept version's text and its diff to the file now. Needs admin.
pub fn version(
    ops: &Operations,
    actor: &Actor,
    id: &str,
) -> Result<(String, Vec<DiffLine>), ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let (path, history) = store(ops)?;
    let text = history.read(id).map_err(ChangeError::Write)?;
    let current = std::fs::read_to_string(&path)
        .map_err(|e| ChangeError::NotEditable(format!("cannot read {}: {e}", path.display())))?;
    let diff = diff_lines(&current, &text);
    Ok((text, diff))
}

/// Makes kept version `id` the file and the running configuration again
/// (itself kept as a new version). Needs admin; audited as
/// `config.rollback`.
pub async fn roll_back(ops: &Operations, actor: &Actor, id: &str) -> Result<Applied, ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let (_, history) = store(ops)?;
    let text = history.read(id).map_err(ChangeError::Write)?;
    change_text(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "config.rollback",
            target: id,
            tables: &[],
        },
        |_| Ok(text),
    )
    .await
}
