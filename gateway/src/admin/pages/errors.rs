//! The errors page: dead letters and failing deliveries, and "retry all
//! matching".

use crate::admin::api::{site_tz, FilterParams};
use crate::admin::auth::{Caller, Role};
use crate::admin::render::{csrf_field, esc, page};
use crate::admin::Shared;
use crate::control::{self};
use crate::journal::{BulkOutcome, BULK_LIMIT};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use std::fmt::Write;

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
    let mut body = String::new();
    if let Some(n) = notice
        .retried
        .as_deref()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let _ = write!(
            body,
            "<p id=\"retried\" class=\"notice\">{n} deliver{} queued again.{}</p>",
            if n == 1 { "y" } else { "ies" },
            if notice.truncated.is_some() {
                format!(" More than {BULK_LIMIT} messages matched: only the newest {BULK_LIMIT} were retried; retry again for the rest.")
            } else {
                String::new()
            }
        );
    }
    body.push_str(&filter_form("/errors", &p, &state));
    let here = match query_string(&p, None) {
        q if q.is_empty() => "/errors".to_string(),
        q => format!("/errors?{q}"),
    };
    if caller.role >= Role::Operator && !page_.messages.is_empty() {
        let mut hidden = csrf_field(&caller);
        hidden.push_str(&back_field(&here));
        for (k, v) in [
            ("endpoint", &p.endpoint),
            ("status", &p.status),
            ("message_type", &p.message_type),
            ("control_id", &p.control_id),
            ("patient_id", &p.patient_id),
            ("from", &p.from),
            ("to", &p.to),
        ] {
            if let Some(v) = v {
                let _ = write!(
                    hidden,
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                    esc(v)
                );
            }
        }
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/errors/retry\" data-confirm=\"Retry every message matching this filter?\">{hidden}<button id=\"retry-all\">Retry all matching</button></form>"
        );
    }
    if page_.messages.is_empty() {
        body.push_str("<p id=\"no-errors\">No failed or dead messages match.</p>");
    } else {
        body.push_str(&message_table(&page_, &tz, Some((&caller, &here))));
    }
    if let Some(b) = page_.next_before {
        let _ = write!(
            body,
            "<p class=\"pager\"><a href=\"/errors?{}\">Older →</a></p>",
            esc(&query_string(&p, Some(b)))
        );
    }
    html(StatusCode::OK, page("Errors", Some(&caller), &body))
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
        Err(e) => return problem(StatusCode::BAD_REQUEST, Some(&caller), &e),
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
        Err(e) => refused(Some(&caller), &e),
    }
}
