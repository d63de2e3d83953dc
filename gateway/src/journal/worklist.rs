//! Modality Worklist entries: the scheduled procedure steps `worklist`
//! destinations keep, and DICOM SCPs answer C-FIND from.
//!
//! An entry is keyed by its worklist and the order's key, so a change or
//! a cancellation of an order replaces what the order set before. Its
//! state says whether it is offered (`scheduled`, `started`) or not
//! (`cancelled`, `completed`); `start` (`YYYYMMDDHHMMSS`, local, empty
//! when unknown) orders the answers and cuts a date-bounded query down
//! before the step itself is matched. The step is kept as the JSON the
//! worklist wrote: the journal does not read it.
//!
//! Entries go once `expires_at` has passed (set by the worklist from the
//! scheduled start and its `keep_for`), with the retention pass.

use super::audit::insert_audit;
use super::hub_events::insert as insert_event;
use super::{Journal, JournalError};
use rusqlite::{params, Connection};

/// One entry as a worklist writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorklistEntry {
    pub key: String,
    pub state: String,
    pub start: String,
    /// Milliseconds since the Unix epoch after which the entry is purged.
    pub expires_at: i64,
    /// The scheduled step, as JSON.
    pub item: String,
}

fn upsert(
    conn: &Connection,
    now: i64,
    worklist: &str,
    message_id: Option<i64>,
    entries: &[WorklistEntry],
) -> Result<(), JournalError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO worklist_item (worklist, key, state, start, expires_at, item, message_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (worklist, key) DO UPDATE SET
           state = excluded.state, start = excluded.start, expires_at = excluded.expires_at,
           item = excluded.item, message_id = excluded.message_id, updated_at = excluded.updated_at",
    )?;
    for e in entries {
        stmt.execute(params![
            worklist,
            e.key,
            e.state,
            e.start,
            e.expires_at,
            e.item,
            message_id,
            now
        ])?;
    }
    Ok(())
}

impl Journal {
    /// Sets the entries of `worklist` that message `message_id` carried, in
    /// one transaction.
    pub async fn apply_worklist(
        &self,
        worklist: &str,
        message_id: i64,
        entries: Vec<WorklistEntry>,
    ) -> Result<(), JournalError> {
        let worklist = worklist.to_string();
        self.write(move |conn, cx| upsert(conn, cx.now, &worklist, Some(message_id), &entries))
            .await
    }

    /// Sets the entries of `worklist` that the hub's order message
    /// `hub_message` carried, as `actor`, with its audit record and the
    /// `order.accepted` hub event, in one transaction. A second delivery
    /// of the same message rewrites the same entries.
    pub async fn apply_hub_worklist(
        &self,
        actor: &str,
        hub_message: &str,
        worklist: &str,
        entries: Vec<WorklistEntry>,
    ) -> Result<(), JournalError> {
        let (actor, hub_message, worklist) = (
            actor.to_string(),
            hub_message.to_string(),
            worklist.to_string(),
        );
        self.write(move |conn, cx| {
            upsert(conn, cx.now, &worklist, None, &entries)?;
            let keys: Vec<String> = entries
                .iter()
                .map(|e| format!("{} {}", e.key, e.state))
                .collect();
            insert_audit(
                conn,
                cx.now,
                &actor,
                "worklist.order",
                Some(&worklist),
                Some(&format!("hub message {hub_message}: {}", keys.join(", "))),
            )?;
            let detail = serde_json::json!({
                "message_id": hub_message,
                "worklist": worklist,
                "refs": entries.iter().map(|e| &e.key).collect::<Vec<_>>(),
                "duplicate": false,
            });
            insert_event(
                conn,
                cx.now,
                "order.accepted",
                Some(&worklist),
                Some(&detail.to_string()),
            )?;
            Ok(())
        })
        .await
    }

    /// The offered entries of `worklist` starting within `start` (both ends
    /// inclusive, `YYYYMMDDHHMMSS`) that `keep` reads into a match, soonest
    /// first, at most `most`: each entry is read once, where it is matched.
    pub async fn find_worklist<T, F>(
        &self,
        worklist: &str,
        start: Option<(String, String)>,
        most: usize,
        mut keep: F,
    ) -> Result<Vec<T>, JournalError>
    where
        T: Send + 'static,
        F: FnMut(&str) -> Option<T> + Send + 'static,
    {
        let worklist = worklist.to_string();
        self.read(move |conn| {
            let (lo, hi) = match start {
                Some((lo, hi)) => (Some(lo), Some(hi)),
                None => (None, None),
            };
            let mut stmt = conn.prepare_cached(
                "SELECT item FROM worklist_item
                 WHERE worklist = ?1 AND state IN ('scheduled', 'started')
                   AND (?2 IS NULL OR (start >= ?2 AND start <= ?3))
                 ORDER BY start, id",
            )?;
            let mut rows = stmt.query(params![worklist, lo, hi])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let item: String = row.get(0)?;
                if let Some(m) = keep(&item) {
                    out.push(m);
                    if out.len() >= most {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every entry of `worklist` with its state, soonest first, for the
    /// admin page and tests.
    pub async fn worklist_entries(
        &self,
        worklist: &str,
    ) -> Result<Vec<(String, String, String)>, JournalError> {
        let worklist = worklist.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, state, item FROM worklist_item WHERE worklist = ?1 ORDER BY start, id",
            )?;
            let rows = stmt.query_map([worklist], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
