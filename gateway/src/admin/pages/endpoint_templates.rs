//! "New endpoint from template" (admin): the integration templates listed
//! beside the endpoint types, a form per template asking for its
//! parameters, and its submission applied through
//! [`control::integrations`](crate::control::integrations) like any change.
//!
//! An error goes beside the parameter it is about: a value the template
//! refuses names its parameter; a loader error names a key of a new
//! endpoint, which is placed on the parameter written into that key
//! (`url = "@{url}"`), and a name in use on the parameter the names are
//! made of.

use super::endpoints::{after_change, field_errors, status_of};
use crate::admin::auth::{forbidden, Caller, Role};
use crate::admin::Shared;
use crate::config::edit::EditError;
use crate::config::integrations::{self, placeholders, Template};
use crate::control::config::{ChangeError, FieldError};
use crate::control::integrations as service;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::{context, Value};
use std::collections::BTreeMap;

/// The templates as the endpoint types page lists them.
pub fn catalogue() -> Vec<Value> {
    integrations::all()
        .iter()
        .map(|t| context! { name => t.name, title => &t.title, summary => &t.summary })
        .collect()
}

/// The parameter an error belongs beside, if any.
fn param_for(t: &Template, error: &FieldError, e: &ChangeError) -> Option<String> {
    if matches!(
        e,
        ChangeError::Edit(EditError::Exists(_) | EditError::RouteExists(_))
    ) {
        // Names are made of the `name` parameter where the template has one.
        return t
            .params
            .iter()
            .find(|p| p.key == "name")
            .map(|p| p.key.clone());
    }
    let key = error.field.as_deref()?;
    if t.params.iter().any(|p| p.key == key) {
        return Some(key.to_string());
    }
    // The key of a new endpoint: the parameter written into it.
    let inner = key.rsplit('.').next().unwrap_or(key);
    t.text
        .lines()
        .filter(|l| {
            l.trim_start()
                .strip_prefix(inner)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .find_map(|l| placeholders(l).into_iter().next())
}

fn form_page(
    state: &Shared,
    caller: &Caller,
    status: StatusCode,
    t: &Template,
    values: &BTreeMap<String, String>,
    failed: Option<&ChangeError>,
) -> Response {
    let mut placed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut general = Vec::new();
    if let Some(e) = failed {
        for error in field_errors(e) {
            match param_for(t, &error, e) {
                Some(p) => placed.entry(p).or_default().push(error.message),
                None => general.push(error),
            }
        }
    }
    let params: Vec<Value> = t
        .params
        .iter()
        .map(|p| {
            let value = if p.secret {
                ""
            } else {
                values
                    .get(&p.key)
                    .map(String::as_str)
                    .or(p.default.as_deref())
                    .unwrap_or("")
            };
            context! {
                key => &p.key,
                label => &p.label,
                help => &p.help,
                example => &p.example,
                default => &p.default,
                choices => &p.choices,
                secret => p.secret,
                required => p.default.is_none(),
                value,
                errors => placed.get(&p.key).cloned().unwrap_or_default(),
            }
        })
        .collect();
    state.templates.page(
        status,
        "endpoint_template.html",
        &format!("New endpoint from template: {}", t.title),
        Some(caller),
        context! {
            name => t.name,
            summary => &t.summary,
            maps => &t.maps,
            params,
            general,
            text => t.text,
        },
    )
}

pub async fn form(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    match integrations::named(&name) {
        Ok(t) => form_page(&state, &caller, StatusCode::OK, t, &BTreeMap::new(), None),
        Err(e) => super::problem(&state, StatusCode::NOT_FOUND, Some(&caller), &e.to_string()),
    }
}

pub async fn apply(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = caller.require(Role::Admin) {
        return r;
    }
    let t = match integrations::named(&name) {
        Ok(t) => t,
        Err(e) => {
            return super::problem(&state, StatusCode::NOT_FOUND, Some(&caller), &e.to_string())
        }
    };
    // Only the template's parameters; an empty one takes its default.
    let values: BTreeMap<String, String> = pairs
        .into_iter()
        .filter(|(k, v)| k != "csrf" && !v.trim().is_empty())
        .collect();
    match service::apply(&state.ops, &caller.actor(), t.name, &values).await {
        Ok((applied, added)) => {
            after_change(added.endpoints.first().map_or("", String::as_str), &applied)
        }
        Err(ChangeError::Forbidden(role)) => forbidden(role),
        Err(e) => form_page(&state, &caller, status_of(&e), t, &values, Some(&e)),
    }
}
