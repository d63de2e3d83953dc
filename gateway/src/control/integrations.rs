//! Integration templates applied: a template of
//! [`config::integrations`](crate::config::integrations) filled in with the
//! user's values and added to the configuration file, either as one change
//! of the running gateway (the admin page: validated, applied live, kept
//! as a version, audited as `template.apply`) or to a file on disk (the
//! command line: validated by the same loader, written atomically; a
//! running gateway applies it on SIGHUP). Both add it through
//! [`ConfigDocument::add_fragment`], which keeps every comment and refuses
//! a name in use.

use super::config::{change, Applied, ChangeError, FieldError, Intent};
use super::{Actor, Operations, Role};
use crate::config::edit::{ConfigDocument, EditError, TablePath};
use crate::config::history::{write_atomically, HistoryError};
use crate::config::integrations::{self, RenderError};
use crate::config::{Config, ConfigErrors};
use std::collections::BTreeMap;
use std::path::Path;

/// A template's error as a field error on the parameter it is about.
pub fn field_error(e: &RenderError) -> FieldError {
    let field = match e {
        RenderError::Missing { key, .. }
        | RenderError::UnknownParam { key, .. }
        | RenderError::NotAChoice { key, .. }
        | RenderError::NotAnInteger { key, .. }
        | RenderError::Multiline { key } => Some(key.clone()),
        RenderError::Unknown(_) => None,
    };
    FieldError {
        field,
        message: e.to_string(),
        line: 0,
    }
}

/// The endpoint names a filled-in template adds, for placing errors.
fn endpoint_names(fragment: &str) -> Vec<String> {
    ConfigDocument::parse(fragment)
        .map(|d| d.endpoint_names())
        .unwrap_or_default()
}

/// Adds template `name` filled with `values` to the running gateway's
/// configuration. Needs admin; audited as `template.apply` on the
/// template's name. A value the template refuses is a field error on its
/// parameter; a loader error on a key of a new endpoint names that key.
pub async fn apply(
    ops: &Operations,
    actor: &Actor,
    name: &str,
    values: &BTreeMap<String, String>,
) -> Result<(Applied, Added), ChangeError> {
    if actor.role < Role::Admin {
        return Err(ChangeError::Forbidden(Role::Admin));
    }
    let template =
        integrations::named(name).map_err(|e| ChangeError::Invalid(vec![field_error(&e)]))?;
    let fragment = template
        .render(values)
        .map_err(|e| ChangeError::Invalid(vec![field_error(&e)]))?;
    let names = endpoint_names(&fragment);
    let tables: Vec<TablePath<'_>> = names.iter().map(|n| TablePath::Endpoint(n)).collect();
    let mut added = None;
    let applied = change(
        ops,
        actor,
        Role::Admin,
        Intent {
            action: "template.apply",
            target: name,
            tables: &tables,
        },
        |doc| {
            added = Some(doc.add_fragment(&fragment)?);
            Ok(())
        },
    )
    .await?;
    let (endpoints, routes) = added.unwrap_or_default();
    Ok((applied, Added { endpoints, routes }))
}

/// Why a template was not written into a file; the file is as it was.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("the configuration with the template does not load; nothing written")]
    Invalid(#[source] ConfigErrors),
    #[error(transparent)]
    Write(#[from] HistoryError),
}

/// What was added to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub endpoints: Vec<String>,
    pub routes: Vec<String>,
}

/// Adds template `name` filled with `values` to the configuration file at
/// `path`: edited with its comments kept, checked by the loader exactly as
/// at start (environment references read from `env`), then replaced
/// atomically.
pub fn apply_to_file(
    path: &Path,
    name: &str,
    values: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Added, FileError> {
    let fragment = integrations::named(name)?.render(values)?;
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut doc = ConfigDocument::parse(&text)?;
    let (endpoints, routes) = doc.add_fragment(&fragment)?;
    let edited = doc.to_text();
    Config::parse(&edited, &path.display().to_string(), env).map_err(FileError::Invalid)?;
    write_atomically(path, &edited)?;
    Ok(Added { endpoints, routes })
}
