//! The endpoints' JSON twins under `/api/v1/endpoints`: the same reads
//! and changes as the pages, with refusals as `{"errors": [{"field",
//! "message", "line"}]}` (422) or `{"error"}`.

use crate::admin::api::{self, journal_error};
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::pages::endpoint_form;
use crate::admin::pages::endpoints::{
    api_change_error, api_error, applied_json, detail, route_json,
};
use crate::admin::Shared;
use crate::config::edit::Change;
use crate::control::config::FieldError;
use crate::control::endpoints::{self as service, NewEndpoint};
use crate::control::Refusal;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

pub async fn show(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    let d = match detail(&state, &name).await {
        Ok(Some(d)) => d,
        Ok(None) => return api_error(StatusCode::NOT_FOUND, "no such endpoint"),
        Err(e) => return journal_error(e),
    };
    let routes: Vec<_> = d.routes.iter().map(route_json).collect();
    Json(json!({
        "endpoint": d.view,
        "type": d.kind,
        "running": d.running,
        "settings": d.settings,
        "routes": routes,
        "recent_messages": d.recent.iter().map(api::json::Summary::from).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// An endpoint as the API takes it: settings under their configuration
/// keys (dotted for nested tables), `null` to remove one.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EndpointBody {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Routes a new endpoint joins.
    pub routes: Vec<String>,
}

/// API settings as changes: a key the form knows is typed as its field; any
/// other key goes in as its JSON type, for the loader to judge.
fn api_changes(
    kind: &str,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, Change)>, FieldError> {
    use crate::config::edit::EditValue;
    let fields = endpoint_form::fields(kind).unwrap_or_default();
    let mut out = Vec::new();
    for (key, v) in settings {
        let bad = |why: &str| FieldError {
            field: Some(key.clone()),
            message: format!("`{key}`: {why}"),
            line: 0,
        };
        if key == "name" || key == "type" {
            return Err(bad("is not changed through settings"));
        }
        let change = match v {
            serde_json::Value::Null => Change::Remove,
            serde_json::Value::String(s) => {
                let kind = fields
                    .iter()
                    .find(|f| f.key == key)
                    .map_or(crate::endpoints::form::Kind::Text, |f| f.kind);
                Change::Set(endpoint_form::value(kind, s))
            }
            serde_json::Value::Bool(b) => Change::Set(EditValue::Bool(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Change::Set(EditValue::Integer(i)),
                None => Change::Set(EditValue::Float(n.as_f64().unwrap_or(0.0))),
            },
            serde_json::Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect();
                match strings {
                    Some(s) => Change::Set(EditValue::Strings(s)),
                    None => return Err(bad("only lists of strings can be set here")),
                }
            }
            serde_json::Value::Object(_) => {
                return Err(bad("write nested settings as dotted keys (`tls.cert`)"))
            }
        };
        out.push((key.clone(), change));
    }
    Ok(out)
}

fn unprocessable(errors: Vec<FieldError>) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "errors": errors })),
    )
        .into_response()
}

pub async fn create(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<EndpointBody>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    if let Err(e) = service::check_type(&body.kind) {
        return unprocessable(vec![e]);
    }
    let changes = match api_changes(&body.kind, &body.settings) {
        Ok(c) => c,
        Err(e) => return unprocessable(vec![e]),
    };
    let listen = body.settings.get("listen").and_then(|l| l.as_str());
    let side = service::route_side(&body.kind, listen);
    let name = body.name.trim().to_string();
    let new = NewEndpoint {
        name: &name,
        kind: &body.kind,
        settings: changes,
        routes: &body.routes,
        side,
    };
    match service::create(&state.ops, &caller.actor(), new).await {
        Ok(a) => (StatusCode::CREATED, Json(applied_json(&a))).into_response(),
        Err(e) => api_change_error(&e),
    }
}

pub async fn edit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Json(body): Json<EndpointBody>,
) -> Response {
    let kind = match service::file_settings(&state.ops, &caller.actor(), &name) {
        Ok((kind, _)) => kind,
        Err(e) => return api_change_error(&e),
    };
    let changes = match api_changes(&kind, &body.settings) {
        Ok(c) => c,
        Err(e) => return unprocessable(vec![e]),
    };
    match service::edit(&state.ops, &caller.actor(), &name, changes).await {
        Ok(a) => Json(applied_json(&a)).into_response(),
        Err(e) => api_change_error(&e),
    }
}

/// Enables (`ON`) or disables the endpoint: `post(set_enabled::<true>)`.
pub async fn set_enabled<const ON: bool>(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    match service::set_enabled(&state.ops, &caller.actor(), &name, ON).await {
        Ok(a) => Json(applied_json(&a)).into_response(),
        Err(e) => api_change_error(&e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TestQuery {
    pub round_trip: Option<bool>,
}

pub async fn test(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<TestQuery>,
) -> Response {
    match service::probe(
        &state.ops,
        &caller.actor(),
        &name,
        q.round_trip.unwrap_or(false),
    )
    .await
    {
        Ok(report) => Json(report).into_response(),
        Err(Refusal::Forbidden(role)) => forbidden(role),
        Err(_) => api_error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}
