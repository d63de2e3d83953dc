//! The audit log: who changed or looked at what, for the admin page's
//! administrators.
//!
//! A change writes its audit row with [`insert_audit`] inside the change's
//! own transaction, so the log cannot miss a change that committed nor show
//! one that rolled back. Views of patient data (a payload) are recorded
//! with [`Journal::audit`] before the data is shown. Rows are never updated
//! or deleted here; retention does not touch them.

use super::{Journal, JournalError};
use rusqlite::{params, Connection};

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

/// Writes one audit row in the caller's transaction.
pub(super) fn insert_audit(
    conn: &Connection,
    now: i64,
    actor: &str,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![now, actor, action, target, detail])?;
    Ok(())
}

impl Journal {
    /// Records that `actor` did (or saw) something.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), JournalError> {
        let (actor, action) = (actor.to_string(), action.to_string());
        let (target, detail) = (target.map(str::to_string), detail.map(str::to_string));
        self.write(move |conn, cx| {
            insert_audit(
                conn,
                cx.now,
                &actor,
                &action,
                target.as_deref(),
                detail.as_deref(),
            )
        })
        .await
    }

    /// Audit entries older than `before` (all when `None`), newest first.
    pub async fn audit_log(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, JournalError> {
        self.audit_log_of(before, limit, &[]).await
    }

    /// Like [`Journal::audit_log`], of the entries whose action is one of
    /// `actions` (every entry when it is empty).
    pub async fn audit_log_of(
        &self,
        before: Option<i64>,
        limit: usize,
        actions: &[&str],
    ) -> Result<Vec<AuditRecord>, JournalError> {
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        self.read(move |c| {
            let only = if actions.is_empty() {
                String::new()
            } else {
                let marks = (0..actions.len())
                    .map(|i| format!("?{}", i + 3))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(" AND action IN ({marks})")
            };
            let mut s = c.prepare_cached(&format!(
                "SELECT id, at, actor, action, target, detail FROM audit WHERE id < ?1{only} ORDER BY id DESC LIMIT ?2"
            ))?;
            let mut values: Vec<rusqlite::types::Value> = vec![
                before.unwrap_or(i64::MAX).into(),
                (limit as i64).into(),
            ];
            values.extend(actions.iter().cloned().map(rusqlite::types::Value::from));
            let rows = s
                .query_map(rusqlite::params_from_iter(values), |r| {
                    Ok(AuditRecord {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        detail: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}
