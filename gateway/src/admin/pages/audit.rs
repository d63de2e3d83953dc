//! The audit log, all of it or one kind of entry (`show`): failed logins
//! and throttles together, so a guessing attack reads as one list; and the
//! same entries as a CSV file (`/audit/export.csv`).
//!
//! The export is for a spreadsheet, so a cell that a spreadsheet would run
//! as a formula (one starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return: a login name is whatever the person at the login form typed) is
//! written with a leading `'`, as OWASP's advice on CSV injection has it.

use crate::admin::api::site_tz;
use crate::admin::auth::Caller;
use crate::admin::format::{rfc3339, time};
use crate::admin::Shared;
use crate::control::audit::{self as audit_log, AuditFilter};
use crate::control::Refusal;
use crate::journal::AuditRecord;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::context;

use super::*;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub before: Option<String>,
    /// `logins`: failed logins, refused logins, throttles and wrong setup
    /// codes; anything else: every entry.
    pub show: Option<String>,
}

pub async fn audit(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Response {
    if let Err(r) = caller.require(audit_log::AUDIT_ROLE) {
        return r;
    }
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(b) => Some(b),
            Err(_) => return bad_request(&state, "before: not an audit entry id"),
        },
    };
    let filter = AuditFilter::from_show(q.show.as_deref());
    let rows = match state
        .journal
        .audit_log_of(before, 100, filter.actions())
        .await
    {
        Ok(r) => r,
        Err(e) => return journal_error(&state, e),
    };
    let tz = site_tz(&state);
    let entries: Vec<_> = rows
        .iter()
        .map(|r| {
            context! {
                at => time(r.at, &tz),
                actor => r.actor,
                action => r.action,
                target => r.target,
                detail => r.detail,
            }
        })
        .collect();
    let older = (rows.len() == 100)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    state.templates.page(
        StatusCode::OK,
        "audit.html",
        "Audit log",
        Some(&caller),
        context! { rows => entries, older, show => filter.show() },
    )
}

/// The entries of the page's filter as one CSV file, newest first: id, time
/// in the site's zone with its offset (RFC 3339), who, what, on what,
/// detail. Streamed a page of entries at a time; `before` is not used.
pub async fn audit_export(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let filter = AuditFilter::from_show(q.show.as_deref());
    let export = match audit_log::export(&state.journal, &caller.actor(), filter).await {
        Ok(e) => e,
        Err(Refusal::Forbidden(role)) => return crate::admin::auth::forbidden(role),
        Err(Refusal::Journal(e)) => return journal_error(&state, e),
        Err(e) => return bad_request(&state, e.to_string()),
    };
    let tz = site_tz(&state);
    let first = Some(csv_rows(&[], &tz, true));
    let pages = futures_util::stream::unfold(
        (first, Some(export), tz),
        |(first, export, tz)| async move {
            if let Some(header_row) = first {
                return Some((Ok(header_row), (None, export, tz)));
            }
            let mut export = export?;
            match export.next_page().await {
                Ok(Some(rows)) => {
                    let chunk = csv_rows(&rows, &tz, false);
                    Some((Ok(chunk), (None, Some(export), tz)))
                }
                Ok(None) => None,
                Err(e) => {
                    // The status line is gone already; cutting the body
                    // short makes the download fail visibly instead of
                    // ending as a file that looks whole.
                    tracing::error!(error = %e, "audit export: journal error");
                    Some((
                        Err(std::io::Error::other("journal error")),
                        (None, None, tz),
                    ))
                }
            }
        },
    );
    let name = match filter {
        AuditFilter::Everything => "audit.csv",
        AuditFilter::LoginFailures => "audit-logins.csv",
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(pages),
    )
        .into_response()
}

/// `rows` as CSV lines; with `header`, the column names only.
fn csv_rows(rows: &[AuditRecord], tz: &jiff::tz::TimeZone, header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let result = if header {
        w.write_record(["id", "time", "actor", "action", "target", "detail"])
    } else {
        rows.iter().try_for_each(|r| {
            w.write_record([
                r.id.to_string(),
                rfc3339(r.at, tz),
                inert(&r.actor),
                inert(&r.action),
                inert(r.target.as_deref().unwrap_or("")),
                inert(r.detail.as_deref().unwrap_or("")),
            ])
        })
    };
    // Writing to a Vec cannot fail; a record is never half written.
    debug_assert!(result.is_ok());
    w.into_inner().unwrap_or_default()
}

/// `cell` as a spreadsheet shows it without running it.
fn inert(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(actor: &str, detail: &str) -> AuditRecord {
        AuditRecord {
            id: 7,
            at: 1_780_000_000_123,
            actor: actor.into(),
            action: "login.failed".into(),
            target: None,
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_is_written_inert() {
        let csv = csv_rows(
            &[record("=HYPERLINK(\"http://x\")", "-1+1")],
            &jiff::tz::TimeZone::UTC,
            false,
        );
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(
            text,
            "7,2026-05-28T20:26:40.123+00:00,\"'=HYPERLINK(\"\"http://x\"\")\",login.failed,,'-1+1\n"
        );
    }

    #[test]
    fn commas_quotes_and_line_breaks_stay_inside_their_cell() {
        let csv = csv_rows(
            &[record("ann", "a, \"b\"\nc")],
            &jiff::tz::TimeZone::UTC,
            false,
        );
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv.as_slice());
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(row.len(), 6);
        assert_eq!(&row[5], "a, \"b\"\nc");
    }
}
