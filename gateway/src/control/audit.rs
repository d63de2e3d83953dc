//! Reading the audit log out of the box: the export an administrator hands
//! to the hospital's security team.
//!
//! An export is itself audited (`audit.export`, with the filter), before the
//! first entry is read, so the log shows who took a copy of it. Entries are
//! read a page at a time, newest first, so an export of years of entries
//! never holds them all in memory.

use super::{Actor, Refusal, Role};
use crate::journal::{AuditRecord, Journal, JournalError};

/// The actions of the "failed logins and throttles" filter: failed and
/// refused logins, throttles, locks and wrong setup codes, so a guessing
/// attack reads as one list.
pub const LOGIN_FAILURES: &[&str] = &[
    "login.failed",
    "login.refused",
    "login.throttle",
    "user.lock",
    "setup.refused",
];

/// Which entries a view or an export of the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditFilter {
    #[default]
    Everything,
    LoginFailures,
}

impl AuditFilter {
    /// The filter named `show` in the page's query (`logins`); anything
    /// else is every entry.
    pub fn from_show(show: Option<&str>) -> AuditFilter {
        match show {
            Some("logins") => AuditFilter::LoginFailures,
            _ => AuditFilter::Everything,
        }
    }

    pub fn show(self) -> &'static str {
        match self {
            AuditFilter::Everything => "",
            AuditFilter::LoginFailures => "logins",
        }
    }

    /// The actions the filter keeps; empty for every entry.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            AuditFilter::Everything => &[],
            AuditFilter::LoginFailures => LOGIN_FAILURES,
        }
    }
}

/// The role reading the audit log needs.
pub const AUDIT_ROLE: Role = Role::Admin;

/// Entries read per page of an export.
pub const EXPORT_PAGE: usize = 1000;

/// An export under way: the entries of its filter, newest first, one page
/// per [`AuditExport::next_page`].
pub struct AuditExport {
    journal: Journal,
    filter: AuditFilter,
    before: Option<i64>,
    done: bool,
}

/// Starts an export of the entries `filter` keeps. Admin role; audited as
/// `audit.export` with the filter's name as its detail.
pub async fn export(
    journal: &Journal,
    actor: &Actor,
    filter: AuditFilter,
) -> Result<AuditExport, Refusal> {
    actor.require(AUDIT_ROLE)?;
    let detail = match filter {
        AuditFilter::Everything => "every entry",
        AuditFilter::LoginFailures => "failed logins and throttles",
    };
    journal
        .audit(&actor.name, "audit.export", None, Some(detail))
        .await?;
    Ok(AuditExport {
        journal: journal.clone(),
        filter,
        before: None,
        done: false,
    })
}

impl AuditExport {
    /// The next page of entries, or `None` once every entry was given.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>, JournalError> {
        if self.done {
            return Ok(None);
        }
        let rows = self
            .journal
            .audit_log_of(self.before, EXPORT_PAGE, self.filter.actions())
            .await?;
        self.done = rows.len() < EXPORT_PAGE;
        match rows.last() {
            Some(last) => {
                self.before = Some(last.id);
                Ok(Some(rows))
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}
