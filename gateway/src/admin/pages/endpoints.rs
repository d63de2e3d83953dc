//! The endpoints pages and their JSON twins: list, detail (settings as
//! written, routes, queue, recent messages), create and edit (admin),
//! enable/disable and test connection (operator).
//!
//! Every change goes through [`control::config`](crate::control::config): the
//! file is edited in place, validated by the configuration loader, applied
//! to the running gateway and only then written and audited.

use super::endpoint_form::{self, FormView};
use super::html;
use crate::admin::api::{endpoint_views, journal_error, site_tz, EndpointView};
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::render::{csrf_field, esc, opt_time, page, time};
use crate::admin::{AdminState, Shared};
use crate::config::edit::{Change, EditError};
use crate::config::{Config, EndpointKind};
use crate::control::config::{read_document, Applied, ChangeError, FieldError};
use crate::control::endpoints::{self as service, NewEndpoint};
use crate::control::Refusal;
use crate::journal::JournalError;
use crate::journal::{MessageFilter, MessageSummary};
use crate::probe::ProbeReport;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

pub mod json;

fn problem(state: &AdminState, status: StatusCode, caller: &Caller, why: &str) -> Response {
    super::problem(state, status, Some(caller), why)
}

/// A journal error as a page, never a JSON body on an HTML route.
fn journal_problem(state: &AdminState, caller: &Caller, e: &JournalError) -> Response {
    super::journal_problem(state, Some(caller), e)
}

fn api_error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(json!({ "error": why.into() }))).into_response()
}

/// The HTTP status a refused change answers with.
fn status_of(e: &ChangeError) -> StatusCode {
    match e {
        ChangeError::Forbidden(_) => StatusCode::FORBIDDEN,
        ChangeError::NotEditable(_) | ChangeError::Edit(EditError::Unreadable(_)) => {
            StatusCode::CONFLICT
        }
        ChangeError::Edit(EditError::UnknownEndpoint(_)) => StatusCode::NOT_FOUND,
        ChangeError::Edit(_) | ChangeError::Invalid(_) | ChangeError::Apply(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ChangeError::Write(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refused change as field errors for a form or the API.
pub fn field_errors(e: &ChangeError) -> Vec<FieldError> {
    match e {
        ChangeError::Invalid(errors) => errors.clone(),
        ChangeError::Edit(EditError::Exists(_)) => vec![FieldError {
            field: Some("name".into()),
            message: e.to_string(),
            line: 0,
        }],
        other => vec![FieldError {
            field: None,
            message: other.to_string(),
            line: 0,
        }],
    }
}

fn api_change_error(e: &ChangeError) -> Response {
    if let ChangeError::Forbidden(role) = e {
        return forbidden(*role);
    }
    let status = status_of(e);
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        (status, Json(json!({ "errors": field_errors(e) }))).into_response()
    } else {
        api_error(status, e.to_string())
    }
}

fn applied_json(a: &Applied) -> serde_json::Value {
    json!({ "version": a.version, "applied": a.report, "summary": a.report.summary() })
}

/// Where a new endpoint of this type joins routes, from its settings.
fn route_side(kind: &str, values: &BTreeMap<String, String>) -> &'static str {
    service::route_side(kind, values.get("listen").map(String::as_str))
}

// ---- shared reads ----

struct Detail {
    view: EndpointView,
    kind: &'static str,
    /// The file's text of each key, secrets masked; `None` when the file
    /// cannot be read.
    settings: Option<BTreeMap<String, String>>,
    routes: Vec<crate::config::Route>,
    running: Option<bool>,
    recent: Vec<MessageSummary>,
}

async fn detail(state: &Shared, name: &str) -> Result<Option<Detail>, JournalError> {
    let config = state.config();
    let Some(endpoint) = config.endpoint(name) else {
        return Ok(None);
    };
    let views = endpoint_views(state).await?;
    let Some(view) = views.into_iter().find(|v| v.name == name) else {
        return Ok(None);
    };
    let settings = read_document(&state.ops)
        .ok()
        .and_then(|(doc, _)| doc.endpoint_settings(name))
        .map(|s| endpoint_form::masked(&s.into_iter().collect()));
    let routes = config
        .routes
        .iter()
        .filter(|r| r.from.iter().chain(&r.to).any(|n| n == name))
        .cloned()
        .collect();
    let running = state
        .ops
        .running_endpoints()
        .map(|r| r.iter().any(|n| n == name));
    let recent = state
        .journal
        .list_messages(
            MessageFilter {
                endpoint: Some(name.to_string()),
                ..MessageFilter::default()
            },
            None,
            20,
        )
        .await?
        .messages;
    Ok(Some(Detail {
        view,
        kind: endpoint.kind.type_name(),
        settings,
        routes,
        running,
        recent,
    }))
}

fn route_row(r: &crate::config::Route) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&r.name),
        esc(&r.from.join(", ")),
        esc(&r
            .message_types
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")),
        esc(&r.transform),
        esc(&r.to.join(", ")),
    )
}

// ---- pages ----

pub async fn list(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    let views = match endpoint_views(&state).await {
        Ok(v) => v,
        Err(e) => return journal_problem(&state, &caller, &e),
    };
    let tz = site_tz(&state);
    let mut body = String::from("<p class=\"actions\">");
    if caller.role >= Role::Admin {
        body.push_str("<a href=\"/new-endpoint\" id=\"new-endpoint\">New endpoint</a> · <a href=\"/config/versions\">Configuration versions</a> · ");
    }
    body.push_str("<a href=\"/routes\">Routes</a></p>");
    body.push_str("<table id=\"endpoint-list\"><thead><tr><th>Endpoint</th><th>Type</th><th>Direction</th><th>Status</th><th>Queue</th><th>Dead</th><th>Last message</th><th>Actions</th></tr></thead><tbody>");
    for v in &views {
        let _ = write!(
            body,
            "<tr class=\"endpoint\" data-name=\"{n}\"><td><a href=\"/endpoints/{n}\">{n}</a></td><td>{}</td><td>{}</td><td class=\"status {s}\">{s}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.kind,
            esc(&v.direction),
            v.queue_depth + v.in_flight,
            v.dead,
            opt_time(v.last_message_at, &tz),
            actions(&caller, &v.name, v.enabled),
            n = esc(&v.name),
            s = v.status,
        );
    }
    body.push_str("</tbody></table>");
    html(StatusCode::OK, page("Endpoints", Some(&caller), &body))
}

fn actions(caller: &Caller, name: &str, enabled: bool) -> String {
    let mut out = String::new();
    if caller.role >= Role::Operator {
        let (what, label) = if enabled {
            ("disable", "Disable")
        } else {
            ("enable", "Enable")
        };
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/endpoints/{n}/{what}\" class=\"inline\"{confirm}>{}<button class=\"{what}\">{label}</button></form>",
            csrf_field(caller),
            n = esc(name),
            confirm = if enabled {
                " data-confirm=\"Disable this endpoint? A source stops taking messages; a destination stops delivering and keeps its queue.\""
            } else {
                ""
            },
        );
    }
    if caller.role >= Role::Admin {
        let _ = write!(
            out,
            " <a href=\"/endpoints/{n}/edit\" class=\"edit\">Edit</a>",
            n = esc(name)
        );
    }
    out
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct DetailQuery {
    /// What the last change did, shown once after a redirect.
    pub applied: Option<String>,
}

pub async fn show(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Response {
    detail_page(&state, &caller, &name, q.applied.as_deref(), None).await
}

async fn detail_page(
    state: &Shared,
    caller: &Caller,
    name: &str,
    notice: Option<&str>,
    probed: Option<&ProbeReport>,
) -> Response {
    let d = match detail(state, name).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return problem(
                &state,
                StatusCode::NOT_FOUND,
                caller,
                "There is no such endpoint.",
            )
        }
        Err(e) => return journal_problem(&state, caller, &e),
    };
    let tz = site_tz(state);
    let v = &d.view;
    let mut body = String::new();
    if let Some(n) = notice.filter(|n| !n.is_empty()) {
        let _ = write!(body, "<p class=\"notice\" id=\"notice\">{}</p>", esc(n));
    }
    let _ = write!(
        body,
        "<p id=\"endpoint-status\">{} · {} · <span class=\"status {s}\">{s}</span>{}{}</p>",
        d.kind,
        esc(&v.direction),
        v.since
            .map(|t| format!(" since {}", time(t, &tz)))
            .unwrap_or_default(),
        match d.running {
            Some(true) => " · running",
            Some(false) => " · not running",
            None => "",
        },
        s = v.status,
    );
    for alert in &v.alerts {
        let _ = write!(body, "<p class=\"error\">{}</p>", esc(alert));
    }
    body.push_str("<p class=\"actions\">");
    body.push_str(&actions(caller, name, v.enabled));
    body.push_str("</p>");
    if caller.role >= Role::Operator {
        let round_trip = matches!(
            state.config().endpoint(name).map(|e| &e.kind),
            Some(EndpointKind::Mllp(c)) if c.connect.is_some()
        );
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/endpoints/{n}/test\" class=\"inline\" id=\"test-form\">{}{}<button id=\"test\">Test connection</button></form>",
            csrf_field(caller),
            if round_trip {
                "<label class=\"check\"><input type=\"checkbox\" name=\"round_trip\" value=\"1\"> also send an NMQ^N01 test query (processing id T) and wait for its ACK</label> "
            } else {
                ""
            },
            n = esc(name)
        );
    }
    if let Some(r) = probed {
        body.push_str(&probe_html(r));
    }
    body.push_str("<h2>Configuration</h2>");
    match &d.settings {
        Some(settings) => {
            body.push_str("<table id=\"endpoint-settings\"><thead><tr><th>Setting</th><th>As written</th><th>In force</th></tr></thead><tbody>");
            for (k, written) in settings {
                let in_force = if written.contains("${") {
                    crate::config::expand_references(written).unwrap_or_else(|e| e)
                } else {
                    String::new()
                };
                let _ = write!(
                    body,
                    "<tr><th>{}</th><td><code>{}</code></td><td>{}</td></tr>",
                    esc(k),
                    esc(written),
                    esc(&in_force)
                );
            }
            body.push_str(
                "</tbody></table><p class=\"hint\">Settings not listed take their defaults.</p>",
            );
        }
        None => body.push_str("<p>The configuration file cannot be read here.</p>"),
    }
    body.push_str("<h2>Routes</h2>");
    if d.routes.is_empty() {
        body.push_str("<p>No route names this endpoint.</p>");
    } else {
        body.push_str("<table id=\"endpoint-routes\"><thead><tr><th>Route</th><th>From</th><th>Message types</th><th>Transform</th><th>To</th></tr></thead><tbody>");
        for r in &d.routes {
            body.push_str(&route_row(r));
        }
        body.push_str("</tbody></table>");
    }
    let _ = write!(
        body,
        "<h2>Queue</h2><table id=\"endpoint-queue\"><tr><th>Queued</th><td>{}</td></tr><tr><th>In flight</th><td>{}</td></tr><tr><th>Dead</th><td>{}</td></tr><tr><th>Messages today</th><td>{}</td></tr><tr><th>Last message</th><td>{}</td></tr></table>",
        v.queue_depth,
        v.in_flight,
        v.dead,
        v.messages_today,
        opt_time(v.last_message_at, &tz)
    );
    let _ = write!(
        body,
        "<h2>Recent messages</h2><p><a href=\"/logs?endpoint={n}\">All of this endpoint's messages in the log</a></p>",
        n = esc(name)
    );
    if d.recent.is_empty() {
        body.push_str("<p id=\"no-recent\">No messages yet.</p>");
    } else {
        body.push_str("<table id=\"recent\"><thead><tr><th>Received</th><th>Id</th><th>Source</th><th>Type</th><th>Status</th></tr></thead><tbody>");
        for m in &d.recent {
            let _ = write!(
                body,
                "<tr class=\"message st-{s}\"><td>{}</td><td><a href=\"/messages/{id}\">#{id}</a></td><td>{}</td><td>{}</td><td class=\"st-{s}\">{s}</td></tr>",
                time(m.received_at, &tz),
                esc(&m.source),
                esc(&m.message_type),
                id = m.id,
                s = m.status
            );
        }
        body.push_str("</tbody></table>");
    }
    html(
        StatusCode::OK,
        page(&format!("Endpoint {name}"), Some(caller), &body),
    )
}

fn probe_html(r: &ProbeReport) -> String {
    let mut out = format!(
        "<div id=\"probe\" class=\"probe {}\"><h2>Connection test: {}</h2><table><thead><tr><th>Step</th><th>Result</th><th>Time</th><th>Detail</th></tr></thead><tbody>",
        if r.ok { "ok" } else { "failed" },
        if r.ok { "passed" } else { "failed" }
    );
    for s in &r.steps {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            if s.ok { "ok" } else { "failed" },
            esc(&s.name),
            if s.ok { "ok" } else { "failed" },
            s.ms,
            esc(&s.detail)
        );
    }
    out.push_str("</tbody></table>");
    if let Some(n) = &r.note {
        let _ = write!(out, "<p class=\"hint\">{}</p>", esc(n));
    }
    out.push_str("</div>");
    out
}

fn after_change(name: &str, applied: &Applied) -> Response {
    let saved = match &applied.version {
        Some(v) => format!("Saved as version {}", v.id),
        None => "The file already said so".to_string(),
    };
    let q = serde_urlencoded::to_string([(
        "applied",
        format!("{saved}; {}", applied.report.summary()),
    )])
    .unwrap_or_default();
    Redirect::to(&format!("/endpoints/{name}?{q}")).into_response()
}

pub async fn enable(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    toggle(state, caller, name, true).await
}

pub async fn disable(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    toggle(state, caller, name, false).await
}

async fn toggle(state: Shared, caller: Caller, name: String, enabled: bool) -> Response {
    match service::set_enabled(&state.ops, &caller.actor(), &name, enabled).await {
        Ok(a) => after_change(&name, &a),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => problem(&state, status_of(&e), &caller, &e.to_string()),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TestForm {
    pub round_trip: Option<String>,
}

pub async fn test(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<TestForm>,
) -> Response {
    let round_trip = f.round_trip.is_some_and(|v| !v.is_empty());
    match service::probe(&state.ops, &caller.actor(), &name, round_trip).await {
        Ok(report) => detail_page(&state, &caller, &name, None, Some(&report)).await,
        Err(Refusal::Forbidden(role)) => forbidden(role),
        Err(_) => problem(
            &state,
            StatusCode::NOT_FOUND,
            &caller,
            "There is no such endpoint.",
        ),
    }
}

// ---- create and edit (pages) ----

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct NewQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

fn csrf_of(caller: &Caller) -> &str {
    caller.csrf.as_deref().unwrap_or_default()
}

fn route_choices(state: &Shared, checked: &[String]) -> Vec<(String, bool)> {
    state
        .config()
        .routes
        .iter()
        .map(|r| (r.name.clone(), checked.contains(&r.name)))
        .collect()
}

pub async fn new_form(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<NewQuery>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let Some(kind) = q.kind.filter(|k| endpoint_form::fields(k).is_some()) else {
        let mut body = String::from("<p>Which type of endpoint?</p><ul id=\"endpoint-types\">");
        for t in crate::endpoints::type_names() {
            let _ = write!(body, "<li><a href=\"/new-endpoint?type={t}\">{t}</a></li>");
        }
        body.push_str("</ul>");
        return html(StatusCode::OK, page("New endpoint", Some(&caller), &body));
    };
    let form = endpoint_form::render(&FormView {
        action: "/new-endpoint",
        kind: &kind,
        name: "",
        new: true,
        values: &BTreeMap::new(),
        errors: &[],
        csrf: csrf_of(&caller),
        routes: &route_choices(&state, &[]),
    });
    html(
        StatusCode::OK,
        page(&format!("New {kind} endpoint"), Some(&caller), &form),
    )
}

/// A submitted form: its fields (last value wins) and the checked routes.
fn split_form(pairs: Vec<(String, String)>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut routes = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "csrf" => {}
            "route" => routes.push(v),
            _ => {
                values.insert(k, v);
            }
        }
    }
    (values, routes)
}

pub async fn create(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let (values, routes) = split_form(pairs);
    let kind = values.get("type").cloned().unwrap_or_default();
    if let Err(e) = service::check_type(&kind) {
        return problem(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            &caller,
            &e.message,
        );
    }
    let fields = endpoint_form::fields(&kind).unwrap_or_default();
    let name = values
        .get("name")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    let changes = endpoint_form::changes(&fields, &values, &BTreeMap::new());
    let side = route_side(&kind, &values);
    let new = NewEndpoint {
        name: &name,
        kind: &kind,
        settings: changes,
        routes: &routes,
        side,
    };
    match service::create(&state.ops, &caller.actor(), new).await {
        Ok(a) => after_change(&name, &a),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => {
            let status = status_of(&e);
            let errors = field_errors(&e);
            let form = endpoint_form::render(&FormView {
                action: "/new-endpoint",
                kind: &kind,
                name: &name,
                new: true,
                values: &values,
                errors: &errors,
                csrf: csrf_of(&caller),
                routes: &route_choices(&state, &routes),
            });
            html(
                status,
                page(&format!("New {kind} endpoint"), Some(&caller), &form),
            )
        }
    }
}

pub async fn edit_form(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let (kind, settings) = match service::file_settings(&state.ops, &caller.actor(), &name) {
        Ok(x) => x,
        Err(ChangeError::Forbidden(role)) => return forbidden(role),
        Err(e) => return problem(&state, status_of(&e), &caller, &e.to_string()),
    };
    let values = endpoint_form::values_from_settings(&kind, &settings);
    let form = endpoint_form::render(&FormView {
        action: &format!("/endpoints/{name}/edit"),
        kind: &kind,
        name: &name,
        new: false,
        values: &values,
        errors: &[],
        csrf: csrf_of(&caller),
        routes: &[],
    });
    html(
        StatusCode::OK,
        page(&format!("Edit endpoint {name}"), Some(&caller), &form),
    )
}

pub async fn edit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (values, _) = split_form(pairs);
    let (kind, settings) = match service::file_settings(&state.ops, &caller.actor(), &name) {
        Ok(x) => x,
        Err(ChangeError::Forbidden(role)) => return forbidden(role),
        Err(e) => return problem(&state, status_of(&e), &caller, &e.to_string()),
    };
    let fields = endpoint_form::fields(&kind).unwrap_or_default();
    let changes = endpoint_form::changes(&fields, &values, &settings);
    match service::edit(&state.ops, &caller.actor(), &name, changes).await {
        Ok(a) => after_change(&name, &a),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => {
            let status = status_of(&e);
            let errors = field_errors(&e);
            let form = endpoint_form::render(&FormView {
                action: &format!("/endpoints/{name}/edit"),
                kind: &kind,
                name: &name,
                new: false,
                values: &values,
                errors: &errors,
                csrf: csrf_of(&caller),
                routes: &[],
            });
            html(
                status,
                page(&format!("Edit endpoint {name}"), Some(&caller), &form),
            )
        }
    }
}

/// Used by the configuration pages: the routes of `config` as table rows.
pub fn routes_table(config: &Config) -> String {
    let mut out = String::from("<table id=\"routes\"><thead><tr><th>Route</th><th>From</th><th>Message types</th><th>Transform</th><th>To</th></tr></thead><tbody>");
    for r in &config.routes {
        out.push_str(&route_row(r));
    }
    out.push_str("</tbody></table>");
    out
}

/// The fields of the configuration errors, for the configuration pages.
pub fn errors_html(errors: &[FieldError]) -> String {
    let mut out = String::from(
        "<div class=\"error\" id=\"form-errors\"><p>The configuration was not changed:</p><ul>",
    );
    for e in errors {
        if e.line > 0 {
            let _ = write!(out, "<li>line {}: {}</li>", e.line, esc(&e.message));
        } else {
            let _ = write!(out, "<li>{}</li>", esc(&e.message));
        }
    }
    out.push_str("</ul></div>");
    out
}
