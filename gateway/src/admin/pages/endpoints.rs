//! The endpoints pages and their JSON twins: list, detail (settings as
//! written, routes, queue, recent messages), create and edit (admin),
//! enable/disable and test connection (operator).
//!
//! Every change goes through [`control::config`](crate::control::config): the
//! file is edited in place, validated by the configuration loader, applied
//! to the running gateway and only then written and audited.

use super::certificates;
use super::endpoint_form::{self, FormView};
use super::endpoint_rows;
use crate::admin::api::{endpoint_views, site_tz, EndpointView};
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::format::{opt_time, time};
use crate::admin::{AdminState, Shared};
use crate::config::edit::EditError;
use crate::config::{EndpointKind, Route};
use crate::control::certificates::PemSetting;
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
use minijinja::{context, Value};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

fn problem(state: &AdminState, status: StatusCode, caller: &Caller, why: &str) -> Response {
    super::problem(state, status, Some(caller), why)
}

/// A journal error as a page, never a JSON body on an HTML route.
fn journal_problem(state: &AdminState, caller: &Caller, e: &JournalError) -> Response {
    super::journal_problem(state, Some(caller), e)
}

pub(crate) fn api_error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, Json(json!({ "error": why.into() }))).into_response()
}

/// The HTTP status a refused change answers with.
pub(super) fn status_of(e: &ChangeError) -> StatusCode {
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

pub(crate) fn api_change_error(e: &ChangeError) -> Response {
    change_refused_json(e, status_of(e))
}

/// A refused change as the API answers it with `status`: its field errors
/// when unprocessable, else `{"error"}`; below the role, the 403 every
/// route gives.
pub fn change_refused_json(e: &ChangeError, status: StatusCode) -> Response {
    if let ChangeError::Forbidden(role) = e {
        return forbidden(*role);
    }
    if status == StatusCode::UNPROCESSABLE_ENTITY {
        (status, Json(json!({ "errors": field_errors(e) }))).into_response()
    } else {
        api_error(status, e.to_string())
    }
}

pub(crate) fn applied_json(a: &Applied) -> serde_json::Value {
    json!({ "version": a.version, "applied": a.report, "summary": a.report.summary() })
}

/// Where a new endpoint of this type joins routes, from its settings.
fn route_side(kind: &str, values: &BTreeMap<String, String>) -> &'static str {
    service::route_side(kind, values.get("listen").map(String::as_str))
}

// ---- shared reads ----

/// What the endpoint's page and its JSON twin show.
pub(crate) struct Detail {
    pub view: EndpointView,
    pub kind: &'static str,
    /// The file's text of each key, secrets masked; `None` when the file
    /// cannot be read.
    pub settings: Option<BTreeMap<String, String>>,
    pub routes: Vec<Route>,
    pub running: Option<bool>,
    pub recent: Vec<MessageSummary>,
}

pub(crate) async fn detail(state: &Shared, name: &str) -> Result<Option<Detail>, JournalError> {
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

/// A route as the routes tables show it (`_routes.html`): its lists
/// joined.
#[derive(Debug, Serialize)]
pub struct RouteRow {
    name: String,
    from: String,
    message_types: String,
    transform: String,
    to: String,
}

pub fn route_rows(routes: &[Route]) -> Vec<RouteRow> {
    routes
        .iter()
        .map(|r| RouteRow {
            name: r.name.clone(),
            from: r.from.join(", "),
            message_types: r
                .message_types
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            transform: r.transform.clone(),
            to: r.to.join(", "),
        })
        .collect()
}

/// A route as the API shows it.
pub fn route_json(r: &Route) -> serde_json::Value {
    json!({
        "name": r.name, "from": r.from, "to": r.to, "transform": r.transform,
        "message_types": r.message_types.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
    })
}

// ---- pages ----

pub async fn list(State(state): State<Shared>, Extension(caller): Extension<Caller>) -> Response {
    let views = match endpoint_views(&state).await {
        Ok(v) => v,
        Err(e) => return journal_problem(&state, &caller, &e),
    };
    let tz = site_tz(&state);
    let endpoints: Vec<Value> = views
        .iter()
        .map(|v| {
            context! {
                name => v.name,
                kind => v.kind,
                mode => v.mode,
                direction => v.direction,
                status => v.status,
                enabled => v.enabled,
                queue => v.queue_depth + v.in_flight,
                dead => v.dead,
                last_message => opt_time(v.last_message_at, &tz),
            }
        })
        .collect();
    state.templates.page(
        StatusCode::OK,
        "endpoints.html",
        "Endpoints",
        Some(&caller),
        context! { endpoints, operator => caller.role >= Role::Operator },
    )
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
                state,
                StatusCode::NOT_FOUND,
                caller,
                "There is no such endpoint.",
            )
        }
        Err(e) => return journal_problem(state, caller, &e),
    };
    let tz = site_tz(state);
    let v = &d.view;
    // Only an MLLP sender can send a test query and wait for its ACK.
    let round_trip = matches!(
        state.config().endpoint(name).map(|e| &e.kind),
        Some(EndpointKind::Mllp(c)) if c.connect.is_some()
    );
    let settings = d.settings.as_ref().map(|settings| {
        settings
            .iter()
            .map(|(key, written)| {
                // What a reference stands for now; a key without one is
                // in force as written.
                let in_force = if written.contains("${") {
                    crate::config::expand_references(written).unwrap_or_else(|e| e)
                } else {
                    String::new()
                };
                context! { key, written, in_force }
            })
            .collect::<Vec<_>>()
    });
    let pem = d.settings.as_ref().map_or_else(Vec::new, |s| {
        crate::control::certificates::settings_shown(d.kind, s)
    });
    let recent: Vec<Value> = d
        .recent
        .iter()
        .map(|m| {
            context! {
                id => m.id,
                received => time(m.received_at, &tz),
                source => m.source,
                message_type => m.message_type,
                status => m.status,
            }
        })
        .collect();
    state.templates.page(
        StatusCode::OK,
        "endpoint.html",
        &format!("Endpoint {name}"),
        Some(caller),
        context! {
            name,
            notice => notice.filter(|n| !n.is_empty()),
            kind => d.kind,
            mode => v.mode,
            paused => v.status == "paused",
            direction => v.direction,
            status => v.status,
            since => v.since.map(|t| time(t, &tz)),
            running => d.running,
            alerts => v.alerts,
            enabled => v.enabled,
            operator => caller.role >= Role::Operator,
            round_trip,
            probe => probed,
            settings,
            certificates => certificates::values(state, &pem, &[], state.journal.now_ms()),
            routes => route_rows(&d.routes),
            queue => context! {
                queued => v.queue_depth,
                in_flight => v.in_flight,
                dead => v.dead,
                today => v.messages_today,
                last_message => opt_time(v.last_message_at, &tz),
            },
            recent,
        },
    )
}

pub(super) fn after_change(name: &str, applied: &Applied) -> Response {
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

/// Enables (`ON`) or disables the endpoint: `post(set_enabled::<true>)`.
pub async fn set_enabled<const ON: bool>(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match service::set_enabled(&state.ops, &caller.actor(), &name, ON).await {
        Ok(a) => after_change(&name, &a),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => problem(&state, status_of(&e), &caller, &e.to_string()),
    }
}

/// Resumes a destination its circuit breaker paused (operator).
pub async fn resume(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match service::resume(&state.ops, &caller.actor(), &name).await {
        Ok(resumed) => {
            let q = serde_urlencoded::to_string([(
                "applied",
                if resumed {
                    "Resumed: its queue is delivered again"
                } else {
                    "It was not paused"
                },
            )])
            .unwrap_or_default();
            Redirect::to(&format!("/endpoints/{name}?{q}")).into_response()
        }
        Err(Refusal::Forbidden(role)) => forbidden(role),
        Err(Refusal::NotFound(_)) => problem(
            &state,
            StatusCode::NOT_FOUND,
            &caller,
            "There is no such endpoint.",
        ),
        Err(e) => problem(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            &caller,
            &e.to_string(),
        ),
    }
}

/// Promotes a sandboxed destination to live (admin).
pub async fn promote(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match service::promote(&state.ops, &caller.actor(), &name).await {
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

/// The routes a new endpoint may join, with those in `checked` checked.
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
        return state.templates.page(
            StatusCode::OK,
            "endpoint_types.html",
            "New endpoint",
            Some(&caller),
            context! {
                types => crate::endpoints::type_names(),
                templates => super::endpoint_templates::catalogue(),
            },
        );
    };
    let view = FormView {
        action: "/new-endpoint",
        kind: &kind,
        name: "",
        new: true,
        values: &BTreeMap::new(),
        errors: &[],
        routes: &route_choices(&state, &[]),
    };
    form_page(&state, &caller, StatusCode::OK, &view)
}

/// The new or edit form as a page with `status`.
fn form_page(state: &Shared, caller: &Caller, status: StatusCode, view: &FormView) -> Response {
    form_page_with(state, caller, status, view, EditExtras::default())
}

/// What the edit form shows besides the settings' fields.
#[derive(Default)]
pub struct EditExtras<'a> {
    /// Why the last certificate upload changed nothing.
    pub upload_errors: &'a [FieldError],
}

fn form_page_with(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    view: &FormView,
    extras: EditExtras<'_>,
) -> Response {
    let title = if view.new {
        format!("New {} endpoint", view.kind)
    } else {
        format!("Edit endpoint {}", view.name)
    };
    let base = endpoint_form::values(view);
    // An endpoint's files are uploaded once it exists.
    let pem = if view.new {
        Vec::new()
    } else {
        pem_settings(state, view.kind, view.name)
    };
    let values = context! {
        certificates => certificates::values(state, &pem, extras.upload_errors, state.journal.now_ms()),
        upload_errors => certificates::general_errors(&pem, extras.upload_errors),
        max_upload_kib => crate::control::certificates::MAX_FILE_SIZE / 1024,
        ..base
    };
    state
        .templates
        .page(status, "endpoint_form.html", &title, Some(caller), values)
}

/// The endpoint's PEM settings as the file writes them, with what each
/// file shows now.
fn pem_settings(state: &Shared, kind: &str, name: &str) -> Vec<PemSetting> {
    let settings: BTreeMap<String, String> = read_document(&state.ops)
        .ok()
        .and_then(|(doc, _)| doc.endpoint_settings(name))
        .map(|s| s.into_iter().collect())
        .unwrap_or_default();
    crate::control::certificates::settings_shown(kind, &settings)
}

/// The edit form of endpoint `name` as the file has it, with `status`.
pub(super) fn edit_page_with(
    state: &Shared,
    caller: &Caller,
    name: &str,
    status: StatusCode,
    extras: EditExtras<'_>,
) -> Response {
    let (kind, settings) = match service::file_settings(&state.ops, &caller.actor(), name) {
        Ok(x) => x,
        Err(ChangeError::Forbidden(role)) => return forbidden(role),
        Err(e) => return problem(state, status_of(&e), caller, &e.to_string()),
    };
    let values = endpoint_form::values_from_settings(&kind, &settings);
    let view = FormView {
        action: &format!("/endpoints/{name}/edit"),
        kind: &kind,
        name,
        new: false,
        values: &values,
        errors: &[],
        routes: &[],
    };
    form_page_with(state, caller, status, &view, extras)
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
    let mut changes = endpoint_form::changes(&fields, &values, &BTreeMap::new());
    changes.extend(endpoint_rows::changes(&kind, &values, &BTreeMap::new()));
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
            let view = FormView {
                action: "/new-endpoint",
                kind: &kind,
                name: &name,
                new: true,
                values: &values,
                errors: &field_errors(&e),
                routes: &route_choices(&state, &routes),
            };
            form_page(&state, &caller, status_of(&e), &view)
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
    edit_page_with(
        &state,
        &caller,
        &name,
        StatusCode::OK,
        EditExtras::default(),
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
    let mut changes = endpoint_form::changes(&fields, &values, &settings);
    changes.extend(endpoint_rows::changes(&kind, &values, &settings));
    match service::edit(&state.ops, &caller.actor(), &name, changes).await {
        Ok(a) => after_change(&name, &a),
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => {
            let view = FormView {
                action: &format!("/endpoints/{name}/edit"),
                kind: &kind,
                name: &name,
                new: false,
                values: &values,
                errors: &field_errors(&e),
                routes: &[],
            };
            form_page(&state, &caller, status_of(&e), &view)
        }
    }
}
