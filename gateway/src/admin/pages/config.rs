//! Settings (retention, journal size cap, time zone), routes as TOML, and
//! the kept versions of the configuration file with their diff and
//! rollback; pages and JSON. Changes are admin-only and are services of
//! [`control::config`](crate::control::config) like endpoint edits.

use super::endpoints::{field_errors, route_rows};
use crate::admin::api::site_tz;
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::format::time;
use crate::admin::{AdminState, Shared};
use crate::config::history::DiffLine;
use crate::control::certificates::SECTIONS;
use crate::control::config::{self as config_change, ChangeError, FieldError};
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use minijinja::{context, Value};
use std::collections::BTreeMap;

fn problem(state: &AdminState, status: StatusCode, caller: &Caller, why: &str) -> Response {
    super::problem(state, status, Some(caller), why)
}

pub(crate) fn status_of(e: &ChangeError) -> StatusCode {
    use ChangeError as C;
    match e {
        C::Forbidden(_) => StatusCode::FORBIDDEN,
        C::NotEditable(_) => StatusCode::CONFLICT,
        C::Write(crate::config::history::HistoryError::Unknown(_)) => StatusCode::NOT_FOUND,
        C::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

// ---- settings ----

/// The labels of the settings of [`config_change::SETTINGS`], by name.
fn label(name: &str) -> &'static str {
    match name {
        "retention_days" => "Retention (days)",
        "max_size" => "Journal size cap",
        "time_zone" => "Site time zone (IANA name)",
        _ => "",
    }
}

pub(crate) fn written_settings(state: &Shared) -> Option<BTreeMap<String, String>> {
    config_change::written_settings(&state.ops)
}

/// The settings page with `status`: the configuration in force and, for
/// an admin when the file can be changed, the form with `values` (the
/// file's when `None`) and each error beside its field.
fn settings_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    values: Option<&BTreeMap<String, String>>,
    errors: &[FieldError],
) -> Response {
    settings_page_with(state, caller, status, values, errors, None, None)
}

/// The settings page after a refused certificate upload for `section`.
pub(super) fn settings_with_upload(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    section: &str,
    errors: &[FieldError],
) -> Response {
    settings_page_with(
        state,
        caller,
        status,
        None,
        &[],
        Some((section, errors)),
        None,
    )
}

/// The sections' certificate uploads ([`SECTIONS`]), with the errors of a
/// refused one.
fn section_uploads(state: &Shared, refused: Option<(&str, &[FieldError])>) -> Vec<Value> {
    let now = state.journal.now_ms();
    SECTIONS
        .iter()
        .map(|(section, label, _)| {
            let shown = crate::control::certificates::section_shown(&state.ops, section);
            let errors = refused
                .filter(|(s, _)| s == section)
                .map_or(&[][..], |(_, e)| e);
            context! {
                section,
                label,
                certificates => super::certificates::values(state, &shown, errors, now),
                errors => super::certificates::general_errors(&shown, errors),
            }
        })
        .collect()
}

fn settings_page_with(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    values: Option<&BTreeMap<String, String>>,
    errors: &[FieldError],
    refused_upload: Option<(&str, &[FieldError])>,
    notice: Option<&str>,
) -> Response {
    let c = state.config();
    let facts = context! {
        file => c.source.as_ref().map_or_else(|| "embedded".into(), |p| p.display().to_string()),
        journal => c.journal.path.display().to_string(),
        retention_days => c.journal.retention.as_secs() / 86_400,
        max_size_mib => c.journal.max_size >> 20,
        min_free_disk_mib => c.journal.min_free_disk >> 20,
        time_zone => c.site.time_zone,
        admin_listen => c.admin.listen_address(),
        admin_tls => c.admin.tls,
    };
    let editable = caller.role >= Role::Admin && config_change::store(&state.ops).is_ok();
    let form = editable.then(|| {
        let written = written_settings(state).unwrap_or_default();
        let values = values.unwrap_or(&written);
        let mut placed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut general = Vec::new();
        for e in errors {
            let field = e.field.as_deref().and_then(|f| {
                config_change::SETTINGS
                    .iter()
                    .find(|(name, _, key, _)| f == *key || f == *name)
                    .map(|(name, ..)| *name)
            });
            match field {
                Some(f) => placed.entry(f).or_default().push(&e.message),
                None => general.push(e),
            }
        }
        let fields: Vec<Value> = config_change::SETTINGS
            .iter()
            .map(|(name, ..)| {
                context! {
                    name,
                    label => label(name),
                    value => values.get(*name),
                    errors => placed.get(name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        context! { general, fields }
    });
    let uploads = editable.then(|| section_uploads(state, refused_upload));
    state.templates.page(
        status,
        "settings.html",
        "Settings",
        Some(caller),
        context! {
            facts,
            form,
            uploads,
            notice => notice.filter(|n| !n.is_empty()),
            max_upload_kib => crate::control::certificates::MAX_FILE_SIZE / 1024,
        },
    )
}

pub async fn settings(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<super::endpoints::DetailQuery>,
) -> Response {
    settings_page_with(
        &state,
        &caller,
        StatusCode::OK,
        None,
        &[],
        None,
        q.applied.as_deref(),
    )
}

pub async fn save(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(values): Form<BTreeMap<String, String>>,
) -> Response {
    match config_change::save_settings(&state.ops, &caller.actor(), &values).await {
        Ok(_) => Redirect::to("/settings").into_response(),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => settings_page(
            &state,
            &caller,
            status_of(&e),
            Some(&values),
            &field_errors(&e),
        ),
    }
}

// ---- routes ----

/// The routes page with `status`: the routes in force and, for an admin
/// when the file can be changed, the file's routes as TOML (or `text` as
/// sent) to edit, with the errors that refused it.
fn routes_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    text: Option<&str>,
    errors: &[FieldError],
) -> Response {
    let editable = caller.role >= Role::Admin && config_change::store(&state.ops).is_ok();
    let text = editable.then(|| match text {
        Some(t) => t.to_string(),
        None => config_change::read_document(&state.ops)
            .map(|(doc, _)| doc.routes_text())
            .unwrap_or_default(),
    });
    state.templates.page(
        status,
        "routes.html",
        "Routes",
        Some(caller),
        context! {
            routes => route_rows(&state.config().routes),
            editable,
            text,
            errors,
        },
    )
}

pub async fn routes(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    routes_page(&state, &caller, StatusCode::OK, None, &[])
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RoutesForm {
    pub toml: String,
}

pub async fn save_routes_form(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(f): Form<RoutesForm>,
) -> Response {
    match config_change::save_routes(&state.ops, &caller.actor(), &f.toml).await {
        Ok(_) => Redirect::to("/routes").into_response(),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => routes_page(
            &state,
            &caller,
            status_of(&e),
            Some(&f.toml),
            &field_errors(&e),
        ),
    }
}

// ---- versions and rollback ----

pub async fn versions(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (list, dir) = match config_change::versions(&state.ops, &caller.actor()) {
        Ok(s) => s,
        Err(ChangeError::Forbidden(role)) => return forbidden(role),
        Err(e) => return problem(&state, StatusCode::CONFLICT, &caller, &e.to_string()),
    };
    let tz = site_tz(&state);
    let versions: Vec<Value> = list
        .iter()
        .map(|v| context! { id => v.id, at => time(v.at, &tz), user => v.user, action => v.action })
        .collect();
    state.templates.page(
        StatusCode::OK,
        "versions.html",
        "Configuration versions",
        Some(&caller),
        context! {
            versions,
            kept => config_change::KEPT_VERSIONS,
            dir => dir.display().to_string(),
        },
    )
}

/// A diff as `version.html` draws it: a class and a mark a line.
fn diff_values(lines: &[DiffLine]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let (class, mark, text) = match l {
                DiffLine::Same(t) => ("same", " ", t),
                DiffLine::Removed(t) => ("del", "-", t),
                DiffLine::Added(t) => ("add", "+", t),
            };
            context! { class, mark, text }
        })
        .collect()
}

/// A version's text and its diff to the file now; refused: the status and
/// why (`403` for a caller without the role).
pub(crate) fn version_and_diff(
    state: &Shared,
    caller: &Caller,
    id: &str,
) -> Result<(String, Vec<DiffLine>), (StatusCode, String)> {
    config_change::version(&state.ops, &caller.actor(), id).map_err(|e| match e {
        e @ ChangeError::Forbidden(_) => (StatusCode::FORBIDDEN, e.to_string()),
        ChangeError::Write(h) => (StatusCode::NOT_FOUND, h.to_string()),
        e => (StatusCode::CONFLICT, e.to_string()),
    })
}

pub async fn version(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let (_, diff) = match version_and_diff(&state, &caller, &id) {
        Ok(x) => x,
        Err((StatusCode::FORBIDDEN, _)) => return forbidden(Role::Admin),
        Err((status, why)) => return problem(&state, status, &caller, &why),
    };
    state.templates.page(
        StatusCode::OK,
        "version.html",
        &format!("Version {id}"),
        Some(&caller),
        context! {
            id,
            changed => diff.iter().any(|l| !matches!(l, DiffLine::Same(_))),
            diff => diff_values(&diff),
        },
    )
}

pub async fn rollback(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match config_change::roll_back(&state.ops, &caller.actor(), &id).await {
        Ok(_) => Redirect::to("/config/versions").into_response(),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => state.templates.page(
            status_of(&e),
            "rollback.html",
            "Roll back",
            Some(&caller),
            context! { errors => field_errors(&e) },
        ),
    }
}
