//! The configuration's JSON twins under `/api/v1/settings`, `/routes` and
//! `/config/versions`: the same reads and changes as the configuration
//! pages, through `control::config`, with refusals as `{"errors": [...]}`
//! (422) or `{"error"}`.

use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::pages::config::{status_of, version_and_diff, written_settings, RoutesForm};
use crate::admin::pages::endpoints::{change_refused_json, route_json};
use crate::admin::Shared;
use crate::config::history::DiffLine;
use crate::control::config::{self as config_change, ChangeError, FieldError};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use std::collections::BTreeMap;

/// A change that was made: the version it was saved as and what it did.
fn applied(a: &config_change::Applied) -> Response {
    Json(json!({ "version": a.version, "applied": a.report })).into_response()
}

fn refusal(e: &ChangeError) -> Response {
    change_refused_json(e, status_of(e))
}

pub async fn settings(State(state): State<Shared>) -> Response {
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

pub async fn save(
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
        Ok(a) => applied(&a),
        Err(e) => refusal(&e),
    }
}

pub async fn routes(State(state): State<Shared>) -> Response {
    let routes: Vec<_> = state.config().routes.iter().map(route_json).collect();
    Json(json!({ "routes": routes })).into_response()
}

pub async fn save_routes(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<RoutesForm>,
) -> Response {
    match config_change::save_routes(&state.ops, &caller.actor(), &body.toml).await {
        Ok(a) => applied(&a),
        Err(e) => refusal(&e),
    }
}

pub async fn versions(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match config_change::versions(&state.ops, &caller.actor()) {
        Ok((list, _)) => Json(json!({ "versions": list })).into_response(),
        Err(e) => refusal(&e),
    }
}

pub async fn version(
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

pub async fn rollback(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match config_change::roll_back(&state.ops, &caller.actor(), &id).await {
        Ok(a) => applied(&a),
        Err(e) => refusal(&e),
    }
}
