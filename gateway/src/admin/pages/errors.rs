//! The errors page: failed deliveries grouped by cause (each group retried
//! or discarded in one action), then the dead letters and failing
//! deliveries one by one, and "retry all matching".

use crate::admin::api::{site_tz, FilterParams};
use crate::admin::auth::{Caller, Role};
use crate::admin::format::time;

use crate::admin::Shared;
use crate::control::{self};
use crate::journal::{BulkOutcome, BULK_LIMIT};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use minijinja::context;

use super::*;

pub async fn errors(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(mut p): Query<FilterParams>,
    Query(notice): Query<RetryNotice>,
) -> Response {
    if p.status.as_deref().is_none_or(str::is_empty) {
        p.status = Some("errors".into());
    }
    let (_, page_) = match message_list(&state, &p).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tz = site_tz(&state);
    let retried = notice
        .retried
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok());
    let here = match query_string(&p, None) {
        q if q.is_empty() => "/errors".to_string(),
        q => format!("/errors?{q}"),
    };
    let kept: Vec<(&str, &String)> = [
        ("endpoint", &p.endpoint),
        ("status", &p.status),
        ("message_type", &p.message_type),
        ("control_id", &p.control_id),
        ("patient_id", &p.patient_id),
        ("key", &p.key),
        ("text", &p.text),
        ("from", &p.from),
        ("to", &p.to),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    .collect();
    let operator = caller.role >= Role::Operator;
    let groups = match control::errors::groups(&state.ops, &caller.actor()).await {
        Ok(g) => g,
        Err(e) => return refused(&state, Some(&caller), &e),
    };
    let groups: Vec<_> = groups
        .iter()
        .map(|g| {
            context! {
                key => g.key,
                destination => g.destination,
                dead => g.dead,
                cause => g.cause,
                detail => g.detail,
                messages => g.messages,
                attempts => g.attempts,
                first => time(g.first_at, &tz),
                last => time(g.last_at, &tz),
            }
        })
        .collect();
    state.templates.page(
        StatusCode::OK,
        "errors.html",
        "Errors",
        Some(&caller),
        context! {
            retried,
            groups,
            discarded => notice.discarded.as_deref().and_then(|n| n.parse::<u64>().ok()),
            truncated => notice.truncated.is_some(),
            bulk_limit => BULK_LIMIT,
            filter => filter_values("/errors", &p, &state),
            retry_all => operator && !page_.messages.is_empty(),
            back => here,
            kept,
            messages => message_values(&page_, &tz),
            actions => true,
            operator,
            older => page_.next_before.map(|b| query_string(&p, Some(b))),
        },
    )
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct RetryAllForm {
    #[serde(flatten)]
    pub filter: FilterParams,
    pub back: String,
}

pub async fn retry_matching(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<RetryAllForm>,
) -> Response {
    let filter = match form.filter.filter(&site_tz(&state)) {
        Ok(f) => f,
        Err(e) => return problem(&state, StatusCode::BAD_REQUEST, Some(&caller), &e),
    };
    match control::messages::retry_matching(&state.ops, &caller.actor(), filter).await {
        Ok(BulkOutcome { rows, truncated }) => {
            // Without a back page, the errors page keeps the filter.
            let fallback = match query_string(&form.filter, None) {
                q if q.is_empty() => "/errors".to_string(),
                q => format!("/errors?{q}"),
            };
            let notice = format!(
                "retried={rows}{}",
                if truncated { "&truncated=1" } else { "" }
            );
            back(&form.back, &fallback, Some(&notice))
        }
        Err(e) => refused(&state, Some(&caller), &e),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct GroupForm {
    pub key: String,
    pub reason: String,
    pub back: String,
}

/// Retries one group of the errors page.
pub async fn retry_group(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<GroupForm>,
) -> Response {
    match control::errors::retry_group(&state.ops, &caller.actor(), &form.key).await {
        Ok(BulkOutcome { rows, truncated }) => {
            let notice = format!(
                "retried={rows}{}",
                if truncated { "&truncated=1" } else { "" }
            );
            back(&form.back, "/errors", Some(&notice))
        }
        Err(control::Refusal::NotFound(_)) => back(&form.back, "/errors", Some("retried=0")),
        Err(e) => refused(&state, Some(&caller), &e),
    }
}

/// Discards one group of the errors page.
pub async fn discard_group(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<GroupForm>,
) -> Response {
    match control::errors::discard_group(&state.ops, &caller.actor(), &form.key, &form.reason).await
    {
        Ok(n) => back(&form.back, "/errors", Some(&format!("discarded={n}"))),
        Err(control::Refusal::NotFound(_)) => back(&form.back, "/errors", Some("discarded=0")),
        Err(e) => refused(&state, Some(&caller), &e),
    }
}

/// Retries or discards (`action`) every group ticked on the errors page
/// (`key`, repeated), each as its own audited action; groups gone since
/// the page was drawn are skipped.
pub async fn act_on_groups(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let (action, reason, back_to) = (field("action"), field("reason"), field("back"));
    let keys: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.as_str())
        .collect();
    if keys.is_empty() {
        return problem(
            &state,
            StatusCode::BAD_REQUEST,
            Some(&caller),
            "Tick at least one group.",
        );
    }
    let actor = caller.actor();
    let (mut rows, mut truncated) = (0usize, false);
    for key in keys {
        let done = match action {
            "retry" => control::errors::retry_group(&state.ops, &actor, key)
                .await
                .map(|o| {
                    truncated |= o.truncated;
                    o.rows
                }),
            "discard" => control::errors::discard_group(&state.ops, &actor, key, reason).await,
            _ => {
                return problem(
                    &state,
                    StatusCode::BAD_REQUEST,
                    Some(&caller),
                    "The action is retry or discard.",
                )
            }
        };
        match done {
            Ok(n) => rows += n,
            Err(control::Refusal::NotFound(_)) => {}
            Err(e) => return refused(&state, Some(&caller), &e),
        }
    }
    let notice = match action {
        "retry" => format!(
            "retried={rows}{}",
            if truncated { "&truncated=1" } else { "" }
        ),
        _ => format!("discarded={rows}"),
    };
    back(back_to, "/errors", Some(&notice))
}
