//! Retrying and discarding deliveries a person picked on the admin page: one
//! message, or every message matching a log filter (the errors page's
//! "retry all").
//!
//! A filter selects only rows that need a person (dead, or failing: queued
//! after a failed attempt), of at most [`BULK_LIMIT`] messages, the newest:
//! one click is one transaction in the gateway's writer, and every other job
//! waits for it. The outcome says when it stopped short. Rows being
//! delivered or already delivered are never touched. Discarding does not
//! delete: the row stays dead, marked with who gave up on it and why; a
//! retry clears the mark. The changes run in the gateway's writer, which
//! wakes the destinations' workers at once.

use super::audit::insert_audit;
use super::browse::{list_messages, MessageFilter};
use super::schema::{DEAD, DELIVERED, LEASED, QUEUED};
use super::{Journal, JournalError};
use rusqlite::{params, Connection};

/// Which messages a retry or discard applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Message(i64),
    Matching(MessageFilter),
}

/// Most messages one "retry all" or "discard all" touches.
pub const BULK_LIMIT: usize = 10_000;

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BulkOutcome {
    /// Outbox rows queued again.
    pub rows: usize,
    /// More messages matched than [`BULK_LIMIT`]; the newest were retried.
    pub truncated: bool,
}

impl Journal {
    /// Puts the dead or failing outbox rows of the selection back in the
    /// queue, due now, with a fresh attempt budget. Returns the rows retried.
    pub async fn admin_retry(
        &self,
        selection: Selection,
        actor: &str,
    ) -> Result<BulkOutcome, JournalError> {
        self.admin_retry_at_most(selection, actor, BULK_LIMIT).await
    }

    /// [`Journal::admin_retry`] touching at most `limit` messages of a
    /// filter (the newest).
    pub async fn admin_retry_at_most(
        &self,
        selection: Selection,
        actor: &str,
        limit: usize,
    ) -> Result<BulkOutcome, JournalError> {
        let actor = actor.to_string();
        let (destinations, truncated) = self
            .write(move |conn, cx| {
                let (rows, truncated) = selected_rows(conn, &selection, limit)?;
                let mut destinations = Vec::new();
                for (outbox_id, destination, state) in &rows {
                    if *state == DELIVERED || *state == LEASED {
                        continue;
                    }
                    conn.prepare_cached(
                        "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1",
                    )?
                    .execute(params![outbox_id, QUEUED, cx.now])?;
                    conn.prepare_cached("DELETE FROM outbox_discard WHERE outbox_id = ?1")?
                        .execute([outbox_id])?;
                    conn.prepare_cached(
                        "INSERT INTO event (at, message_id, outbox_id, kind, actor)
                         VALUES (?1, (SELECT message_id FROM outbox WHERE id = ?2), ?2, 'retried', ?3)",
                    )?
                    .execute(params![cx.now, outbox_id, actor])?;
                    destinations.push(destination.clone());
                }
                insert_audit(
                    conn,
                    cx.now,
                    &actor,
                    "message.retry",
                    Some(&describe(&selection)),
                    Some(&format!(
                        "{} deliveries queued again{}",
                        destinations.len(),
                        if truncated { format!(" (stopped at {limit} messages)") } else { String::new() }
                    )),
                )?;
                Ok((destinations, truncated))
            })
            .await?;
        let rows = destinations.len();
        let mut unique = destinations;
        unique.sort();
        unique.dedup();
        self.wake(unique);
        Ok(BulkOutcome { rows, truncated })
    }

    /// Gives up on the undelivered outbox rows of the selection: they become
    /// dead and are marked discarded with `reason`, so the errors page no
    /// longer lists them. They stay in the journal and can still be retried.
    pub async fn admin_discard(
        &self,
        selection: Selection,
        reason: &str,
        actor: &str,
    ) -> Result<usize, JournalError> {
        let (actor, reason) = (actor.to_string(), reason.to_string());
        self.write(move |conn, cx| {
            let (rows, _) = selected_rows(conn, &selection, BULK_LIMIT)?;
            let mut n = 0;
            for (outbox_id, _, state) in &rows {
                if *state == DELIVERED || *state == LEASED {
                    continue;
                }
                conn.prepare_cached(
                    "UPDATE outbox SET state = ?2, updated_at = ?3 WHERE id = ?1",
                )?
                .execute(params![outbox_id, DEAD, cx.now])?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO outbox_discard (outbox_id, at, actor, reason) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![outbox_id, cx.now, actor, reason])?;
                conn.prepare_cached(
                    "INSERT INTO event (at, message_id, outbox_id, kind, detail, actor)
                     VALUES (?1, (SELECT message_id FROM outbox WHERE id = ?2), ?2, 'discarded', ?3, ?4)",
                )?
                .execute(params![cx.now, outbox_id, reason, actor])?;
                n += 1;
            }
            insert_audit(
                conn,
                cx.now,
                &actor,
                "message.discard",
                Some(&describe(&selection)),
                Some(&format!("{n} deliveries discarded: {reason}")),
            )?;
            Ok(n)
        })
        .await
    }
}

fn describe(selection: &Selection) -> String {
    match selection {
        Selection::Message(id) => format!("message {id}"),
        Selection::Matching(f) => format!(
            "messages matching {}",
            serde_json::to_string(f).unwrap_or_default()
        ),
    }
}

/// (outbox id, destination, state).
type SelectedRow = (i64, String, i64);

/// The selection's rows that a person may act on: all rows of one message;
/// for a filter, the dead or failing rows of up to `limit` matching messages
/// (the newest), and whether more matched.
fn selected_rows(
    conn: &Connection,
    selection: &Selection,
    limit: usize,
) -> Result<(Vec<SelectedRow>, bool), JournalError> {
    let mut truncated = false;
    let message_ids: Vec<i64> = match selection {
        Selection::Message(id) => vec![*id],
        Selection::Matching(filter) => {
            let mut filter = filter.clone().normalized();
            if filter.status.is_none() {
                filter.status = Some("errors".into());
            }
            let mut ids = Vec::new();
            let mut before = None;
            loop {
                if ids.len() >= limit {
                    truncated = true;
                    break;
                }
                let page = list_messages(conn, &filter, before, 500)?;
                ids.extend(page.messages.iter().map(|m| m.id));
                match page.next_before {
                    Some(b) => before = Some(b),
                    None => break,
                }
            }
            if ids.len() > limit {
                ids.truncate(limit);
                truncated = true;
            }
            ids
        }
    };
    let mut out = Vec::new();
    let mut s = conn.prepare_cached(
        "SELECT id, destination, state FROM outbox WHERE message_id = ?1 AND (?2 OR state = 3 OR (state = 0 AND attempts > 0)) ORDER BY id",
    )?;
    let whole = matches!(selection, Selection::Message(_));
    for id in message_ids {
        let rows = s
            .query_map(params![id, whole], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.extend(rows);
    }
    Ok((out, truncated))
}
