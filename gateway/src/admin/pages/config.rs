//! Settings (retention, journal size cap, time zone), routes as TOML, and
//! the kept versions of the configuration file with their diff and
//! rollback; pages and JSON. Changes are admin-only and are services of
//! [`control::config`](crate::control::config) like endpoint edits.

use super::endpoints::{errors_html, field_errors, routes_table};
use super::html;
use crate::admin::api::site_tz;
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::render::{csrf_field, esc, page, time};
use crate::admin::{AdminState, Shared};
use crate::config::history::DiffLine;
use crate::control::config::{self as config_change, ChangeError, FieldError};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

fn problem(state: &AdminState, status: StatusCode, caller: &Caller, why: &str) -> Response {
    super::problem(state, status, Some(caller), why)
}

fn status_of(e: &ChangeError) -> StatusCode {
    use ChangeError as C;
    match e {
        C::Forbidden(_) => StatusCode::FORBIDDEN,
        C::NotEditable(_) => StatusCode::CONFLICT,
        C::Write(crate::config::history::HistoryError::Unknown(_)) => StatusCode::NOT_FOUND,
        C::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn api_refusal(e: &ChangeError) -> Response {
    if let ChangeError::Forbidden(role) = e {
        return forbidden(*role);
    }
    let status = status_of(e);
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        (status, Json(json!({ "errors": field_errors(e) }))).into_response()
    } else {
        (status, Json(json!({ "error": e.to_string() }))).into_response()
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

fn written_settings(state: &Shared) -> Option<BTreeMap<String, String>> {
    config_change::written_settings(&state.ops)
}

fn settings_body(
    state: &Shared,
    caller: &Caller,
    values: Option<&BTreeMap<String, String>>,
    errors: &[FieldError],
) -> String {
    let c = state.config();
    let mut body = format!(
        "<table id=\"settings\"><tr><th>Configuration file</th><td>{}</td></tr><tr><th>Journal</th><td>{}</td></tr>\
         <tr><th>Retention</th><td>{} days</td></tr><tr><th>Journal size cap</th><td>{} MiB</td></tr><tr><th>Free disk kept</th><td>{} MiB</td></tr>\
         <tr><th>Time zone</th><td>{}</td></tr><tr><th>Admin page</th><td>{} ({})</td></tr></table>",
        esc(&c.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded".into())),
        esc(&c.journal.path.display().to_string()),
        c.journal.retention.as_secs() / 86_400,
        c.journal.max_size >> 20,
        c.journal.min_free_disk >> 20,
        esc(&c.site.time_zone),
        esc(&c.admin.listen_address()),
        if c.admin.tls { "HTTPS" } else { "plain HTTP" },
    );
    let editable = caller.role >= Role::Admin && config_change::store(&state.ops).is_ok();
    if editable {
        let written = written_settings(state).unwrap_or_default();
        let values = values.unwrap_or(&written);
        let mut placed: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut general = Vec::new();
        for e in errors {
            let field = e.field.as_deref().and_then(|f| {
                config_change::SETTINGS
                    .iter()
                    .find(|(name, _, key, _)| f == *key || f == *name)
                    .map(|(name, ..)| *name)
            });
            match field {
                Some(f) => placed.entry(f.to_string()).or_default().push(&e.message),
                None => general.push(e.clone()),
            }
        }
        body.push_str("<h2>Change settings</h2>");
        if !general.is_empty() {
            body.push_str(&errors_html(&general));
        }
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/settings\" class=\"card\" id=\"settings-form\">{}",
            csrf_field(caller)
        );
        for (name, ..) in config_change::SETTINGS {
            let _ = write!(
                body,
                "<label data-field=\"{name}\">{} <input name=\"{name}\" value=\"{}\">{}</label>",
                esc(label(name)),
                esc(values.get(*name).map(String::as_str).unwrap_or("")),
                placed
                    .get(*name)
                    .map(|m| m
                        .iter()
                        .map(|m| format!("<span class=\"field-error\">{}</span>", esc(m)))
                        .collect::<String>())
                    .unwrap_or_default()
            );
        }
        body.push_str("<p class=\"hint\">Applied at once: the retention purge and the size cap in the running journal, the time zone for new messages. Empty: the default (90 days, 8 GiB, UTC).</p><button id=\"save-settings\">Save and apply</button></form>");
    }
    body.push_str("<h2>Endpoints and routes</h2><p><a href=\"/endpoints\">Endpoints</a> · <a href=\"/routes\">Routes</a>");
    if caller.role >= Role::Admin {
        body.push_str(" · <a href=\"/config/versions\">Configuration versions</a>");
    }
    body.push_str("</p>");
    body
}

pub async fn settings(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let body = settings_body(&state, &caller, None, &[]);
    html(StatusCode::OK, page("Settings", Some(&caller), &body))
}

pub async fn save(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(values): Form<BTreeMap<String, String>>,
) -> Response {
    match config_change::save_settings(&state.ops, &caller.actor(), &values).await {
        Ok(_) => Redirect::to("/settings").into_response(),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => {
            let body = settings_body(&state, &caller, Some(&values), &field_errors(&e));
            html(status_of(&e), page("Settings", Some(&caller), &body))
        }
    }
}

pub async fn api_settings(State(state): State<Shared>) -> Response {
    let c = state.config();
    Json(json!({
        "retention_days": c.journal.retention.as_secs() / 86_400,
        "max_size": c.journal.max_size,
        "min_free_disk": c.journal.min_free_disk,
        "time_zone": c.site.time_zone,
        "written": written_settings(&state),
    }))
    .into_response()
}

pub async fn api_save(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let mut submitted = BTreeMap::new();
    for (k, v) in body {
        if !config_change::SETTINGS.iter().any(|(name, ..)| *name == k) {
            let errors = vec![FieldError {
                field: Some(k.clone()),
                message: format!(
                    "`{k}` is not a setting changed here (expected retention_days, max_size, time_zone)"
                ),
                line: 0,
            }];
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "errors": errors })),
            )
                .into_response();
        }
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        submitted.insert(k, text);
    }
    match config_change::save_settings(&state.ops, &caller.actor(), &submitted).await {
        Ok(a) => Json(json!({ "version": a.version, "applied": a.report })).into_response(),
        Err(e) => api_refusal(&e),
    }
}

// ---- routes ----

fn routes_body(
    state: &Shared,
    caller: &Caller,
    text: Option<&str>,
    errors: &[FieldError],
) -> String {
    let mut body = routes_table(&state.config());
    let editable = caller.role >= Role::Admin && config_change::store(&state.ops).is_ok();
    if !editable {
        return body;
    }
    let current = config_change::read_document(&state.ops)
        .map(|(doc, _)| doc.routes_text())
        .unwrap_or_default();
    body.push_str("<h2>Edit routes</h2>");
    if !errors.is_empty() {
        body.push_str(&errors_html(errors));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/routes\" class=\"card wide\" id=\"routes-form\">{}<textarea name=\"toml\" rows=\"24\" spellcheck=\"false\">{}</textarea>\
         <p class=\"hint\">Every <code>[[route]]</code> of the file, comments included, validated like the file itself.</p><button id=\"save-routes\">Save and apply</button></form>",
        csrf_field(caller),
        esc(text.unwrap_or(&current))
    );
    body
}

pub async fn routes(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    let body = routes_body(&state, &caller, None, &[]);
    html(StatusCode::OK, page("Routes", Some(&caller), &body))
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
        Err(e) => {
            let body = routes_body(&state, &caller, Some(&f.toml), &field_errors(&e));
            html(status_of(&e), page("Routes", Some(&caller), &body))
        }
    }
}

pub async fn api_routes(State(state): State<Shared>) -> Response {
    let routes: Vec<_> = state
        .config()
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name, "from": r.from, "to": r.to, "transform": r.transform,
                "message_types": r.message_types.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "routes": routes })).into_response()
}

pub async fn api_save_routes(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RoutesForm>,
) -> Response {
    match config_change::save_routes(&state.ops, &caller.actor(), &body.toml).await {
        Ok(a) => Json(json!({ "version": a.version, "applied": a.report })).into_response(),
        Err(e) => api_refusal(&e),
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
    let mut body = String::new();
    if list.is_empty() {
        body.push_str("<p id=\"no-versions\">No change has been made from this page yet.</p>");
    } else {
        body.push_str("<table id=\"versions\"><thead><tr><th>When</th><th>Who</th><th>What</th><th></th></tr></thead><tbody>");
        for v in &list {
            let _ = write!(
                body,
                "<tr data-version=\"{id}\"><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/config/versions/{id}\">diff, roll back</a></td></tr>",
                time(v.at, &tz),
                esc(&v.user),
                esc(&v.action),
                id = esc(&v.id)
            );
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<p class=\"hint\">The newest {} versions are kept in {}.</p>",
        config_change::KEPT_VERSIONS,
        esc(&dir.display().to_string())
    );
    html(
        StatusCode::OK,
        page("Configuration versions", Some(&caller), &body),
    )
}

fn diff_html(lines: &[DiffLine]) -> String {
    let mut out = String::from("<pre class=\"diff\" id=\"diff\">");
    for l in lines {
        let (class, mark, text) = match l {
            DiffLine::Same(t) => ("same", ' ', t),
            DiffLine::Removed(t) => ("del", '-', t),
            DiffLine::Added(t) => ("add", '+', t),
        };
        let _ = writeln!(out, "<span class=\"{class}\">{mark} {}</span>", esc(text));
    }
    out.push_str("</pre>");
    out
}

/// A version's text and its diff to the file now; refused: the status and
/// why (`403` for a caller without the role).
fn version_and_diff(
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
    let mut body = String::new();
    let changed = diff.iter().any(|l| !matches!(l, DiffLine::Same(_)));
    if changed {
        body.push_str("<p>Rolling back makes the file this version again: lines marked - are in the file now and go, lines marked + come back.</p>");
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/config/versions/{}/rollback\" data-confirm=\"Make this version the running configuration?\">{}<button id=\"rollback\">Roll back to this version</button></form>",
            esc(&id),
            csrf_field(&caller)
        );
    } else {
        body.push_str("<p id=\"same-as-now\">This version is the file as it is now.</p>");
    }
    body.push_str(&diff_html(&diff));
    html(
        StatusCode::OK,
        page(&format!("Version {id}"), Some(&caller), &body),
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
        Err(e) => {
            let mut body = errors_html(&field_errors(&e));
            body.push_str("<p><a href=\"/config/versions\">Back to the versions</a></p>");
            html(status_of(&e), page("Roll back", Some(&caller), &body))
        }
    }
}

pub async fn api_versions(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match config_change::versions(&state.ops, &caller.actor()) {
        Ok((list, _)) => Json(json!({ "versions": list })).into_response(),
        Err(e) => api_refusal(&e),
    }
}

pub async fn api_version(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match version_and_diff(&state, &caller, &id) {
        Ok((text, diff)) => {
            let diff: Vec<_> = diff
                .iter()
                .filter_map(|l| match l {
                    DiffLine::Same(_) => None,
                    DiffLine::Removed(t) => Some(json!({ "op": "-", "line": t })),
                    DiffLine::Added(t) => Some(json!({ "op": "+", "line": t })),
                })
                .collect();
            Json(json!({ "id": id, "text": text, "diff_from_current": diff })).into_response()
        }
        Err((StatusCode::FORBIDDEN, _)) => forbidden(Role::Admin),
        Err((status, why)) => (status, Json(json!({ "error": why }))).into_response(),
    }
}

pub async fn api_rollback(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match config_change::roll_back(&state.ops, &caller.actor(), &id).await {
        Ok(a) => Json(json!({ "version": a.version, "applied": a.report })).into_response(),
        Err(e) => api_refusal(&e),
    }
}
