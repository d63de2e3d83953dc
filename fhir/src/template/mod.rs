//! Custom templates: a route may name a minijinja template instead of a
//! built-in map, for integrations the maps do not cover.
//!
//! A route with `transform = "template"` and `template = "<file>"` queues
//! its messages with the transform `template:<absolute path>`. At delivery
//! the file is compiled (kept in the caller's [`Templates`] until its
//! modification time or size changes, so a corrected template applies to
//! messages still queued), rendered with
//! the message ([`context`] says what it sees), and its output checked
//! ([`check`]) before anything is sent. Any failure is a [`TransformError`]
//! naming the template and, for template errors, the line: the message goes
//! dead with that error, visible in the message viewer, and can be retried
//! once the template is fixed. Rendering is bounded (fuel), so a runaway
//! loop fails instead of stalling the delivery worker.

pub mod check;
pub mod context;

use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use minijinja::Environment;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The prefix of a queued template transform.
pub const PREFIX: &str = "template:";

/// Instructions one rendering may run (a large ORU needs a few thousand).
const FUEL: u64 = 2_000_000;

struct Compiled {
    stamp: (Option<SystemTime>, u64),
    env: Arc<Environment<'static>>,
    name: String,
}

/// Compiled templates by path, shared by everything that renders them.
///
/// Compiling is the slow part of a template, and a file can change while
/// messages for it are queued: an entry is reused only while the file's
/// modification time and size are the ones it was compiled from.
#[derive(Default)]
pub struct Templates {
    compiled: Mutex<HashMap<PathBuf, Compiled>>,
}

fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// "template `x.j2` line 3: syntax error: unexpected end of input".
fn describe(name: &str, e: &minijinja::Error) -> String {
    let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("template `{name}`{line}: {}{detail}", e.kind())
}

/// Reads and compiles the template at `path`.
fn compile(path: &Path) -> Result<(Environment<'static>, String), String> {
    let name = name_of(path);
    let source = std::fs::read_to_string(path)
        .map_err(|e| format!("template {}: cannot read: {e}", path.display()))?;
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    context::add_helpers(&mut env);
    env.add_template_owned(name.clone(), source)
        .map_err(|e| describe(&name, &e))?;
    Ok((env, name))
}

/// Whether the template at `path` can be read and compiled: what the
/// configuration check reports.
pub fn check_file(path: &Path) -> Result<(), String> {
    compile(path).map(|_| ())
}

impl Templates {
    fn compiled(&self, path: &Path) -> Result<(Arc<Environment<'static>>, String), String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("template {}: cannot read: {e}", path.display()))?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut cache = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(path).filter(|c| c.stamp == stamp) {
            return Ok((c.env.clone(), c.name.clone()));
        }
        let (env, name) = compile(path)?;
        let env = Arc::new(env);
        cache.insert(
            path.to_path_buf(),
            Compiled {
                stamp,
                env: env.clone(),
                name: name.clone(),
            },
        );
        Ok((env, name))
    }
}

/// Renders the template at `path` for `message`: the checked transaction
/// Bundle as JSON.
pub fn apply(
    path: &Path,
    message: &StoredMessage,
    cx: &TransformContext,
) -> Result<Vec<u8>, TransformError> {
    let bundle = render(path, message, cx)?;
    serde_json::to_vec(&bundle).map_err(|e| TransformError::Template(e.to_string()))
}

/// Renders the template at `path` for `message`: the checked transaction
/// Bundle.
pub fn render(
    path: &Path,
    message: &StoredMessage,
    cx: &TransformContext,
) -> Result<serde_json::Value, TransformError> {
    let fail = TransformError::Template;
    let (env, name) = cx.templates.compiled(path).map_err(fail)?;
    let template = env
        .get_template(&name)
        .map_err(|e| fail(describe(&name, &e)))?;
    let msg = minijinja::Value::from_object(context::Msg::new(message, cx));
    let out = template
        .render(minijinja::context! { msg => msg })
        .map_err(|e| fail(describe(&name, &e)))?;
    let mut value: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
        let line = out.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
        fail(format!(
            "template `{name}`: the output is not JSON at output line {}, column {}: {e} (the line: {:?})",
            e.line(),
            e.column(),
            line.trim().chars().take(200).collect::<String>()
        ))
    })?;
    check::prune(&mut value);
    let mut bundle = if value.get("resourceType").and_then(|t| t.as_str()) == Some("Bundle") {
        value
    } else {
        check::wrap(value).map_err(|e| fail(format!("template `{name}`: {e}")))?
    };
    check::bundle(&bundle).map_err(|e| fail(format!("template `{name}`: {e}")))?;
    add_provenance(&mut bundle, message, &name);
    Ok(bundle)
}

/// The Provenance the built-in maps add, naming the template too.
fn add_provenance(bundle: &mut serde_json::Value, message: &StoredMessage, name: &str) {
    let Some(entries) = bundle.get_mut("entry").and_then(|e| e.as_array_mut()) else {
        return;
    };
    if entries
        .iter()
        .any(|e| e.pointer("/resource/resourceType").and_then(|t| t.as_str()) == Some("Provenance"))
    {
        return;
    }
    let targets: Vec<serde_json::Value> = entries
        .iter()
        .filter_map(|e| e.get("fullUrl").and_then(|u| u.as_str()))
        .map(|u| serde_json::json!({ "reference": u }))
        .collect();
    if targets.is_empty() {
        return;
    }
    let key = message
        .dedup_key
        .clone()
        .or_else(|| message.control_id.clone())
        .unwrap_or_else(|| message.id.to_string());
    let id = crate::r4::resource_id(
        "Provenance",
        &crate::r4::local_system(&message.source, "message"),
        &key,
    );
    let recorded = jiff::Timestamp::from_millisecond(message.received_at)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    entries.push(serde_json::json!({
        "fullUrl": format!("urn:uuid:{id}"),
        "resource": {
            "resourceType": "Provenance",
            "id": id.to_string(),
            "target": targets,
            "recorded": recorded,
            "agent": [{
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler", "display": "Assembler"}]},
                "who": {"display": format!("Ecko Edge gateway, endpoint {}, template {name}", message.source)}
            }],
            "entity": [{"role": "source", "what": {"display": format!("{} message {} from {}", message.message_type, message.control_id.as_deref().unwrap_or(&key), message.source)}}]
        },
        "request": {"method": "PUT", "url": format!("Provenance/{id}")}
    }));
}

#[cfg(test)]
mod tests;
