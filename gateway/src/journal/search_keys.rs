//! The order and specimen ids of each message, for the log page's search
//! by accession or specimen id.
//!
//! They are read from the payload after the commit, never on the
//! acknowledgement's path: a task hands the messages past the watermark
//! (`search_key_progress.indexed_to`) to a reader of keys and records what
//! it found together with the new watermark in one job. Ids only grow, so
//! the watermark is every message not yet read; SQLite gives the ids of
//! purged newest messages out again, so a purge brings the watermark down
//! to the newest id left in the same transaction. A search may miss a
//! message for the second or so before its keys are recorded.
//!
//! The same rows index each message's control id and patient id, under
//! values whose first character no id holds (`column_key`), which keeps
//! them apart from order and specimen ids. Those are columns
//! of the message: a filter on them reads the index below the watermark
//! and the rows above it ([`indexed_or_tail`]), so it misses nothing.

use super::{Journal, JournalError};
use ecko_message::StoredMessage;
use rusqlite::{params, OptionalExtension};

/// The `search_key` value, in SQL, that indexes the message column
/// `column` (`control_id` or `patient_id`) holding `value`: a first
/// character no id holds, then a letter for the column.
fn column_key(column: &str, value: &str) -> String {
    let tag = if column == "control_id" { 'c' } else { 'p' };
    format!("char(1) || '{tag}' || {value}")
}

/// A condition on message `m`: its `column` equal to a value, found by the
/// indexed ids below the watermark and by scanning the unindexed tail above
/// it by rowid. Its three anonymous parameters are the value, three times.
pub(super) fn indexed_or_tail(column: &str) -> String {
    format!(
        "m.{column} = ? AND m.id IN (
            SELECT k.message_id FROM search_key k WHERE k.value = {}
            UNION ALL
            SELECT t.id FROM message t
            WHERE t.id > (SELECT indexed_to FROM search_key_progress WHERE id = 1) AND t.{column} = ?)",
        column_key(column, "?")
    )
}

/// Messages past the watermark, as handed to the reader of keys.
#[derive(Debug)]
pub struct Unindexed {
    /// The watermark they follow: recording succeeds only from it.
    pub after: i64,
    pub messages: Vec<StoredMessage>,
}

impl Journal {
    /// Up to `limit` messages whose keys are not recorded yet, oldest first.
    pub async fn unindexed_messages(&self, limit: usize) -> Result<Unindexed, JournalError> {
        self.read(move |c| {
            let mark: i64 = c
                .prepare_cached("SELECT indexed_to FROM search_key_progress WHERE id = 1")?
                .query_row([], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let after = mark;
            let ids: Vec<i64> = c
                .prepare_cached("SELECT id FROM message WHERE id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after, limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut messages = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(m) = super::query::load_message(c, id)? {
                    messages.push(m);
                }
            }
            Ok(Unindexed { after, messages })
        })
        .await
    }

    /// Records `keys` (message id, value) and moves the watermark from
    /// `after` to `up_to`; a no-op when another call moved it first.
    /// Returns whether it recorded.
    pub async fn record_search_keys(
        &self,
        after: i64,
        up_to: i64,
        keys: Vec<(i64, String)>,
    ) -> Result<bool, JournalError> {
        self.write(move |conn, _| {
            let mark: i64 = conn
                .prepare_cached("SELECT indexed_to FROM search_key_progress WHERE id = 1")?
                .query_row([], |r| r.get(0))?;
            if mark != after {
                return Ok(false);
            }
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO search_key (value, message_id)
                 SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM message WHERE id = ?2)",
            )?;
            for (id, value) in &keys {
                insert.execute(params![value, id])?;
            }
            // Control and patient ids are columns: indexed here in bulk
            // rather than on the acknowledgement's path.
            for column in ["control_id", "patient_id"] {
                conn.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO search_key (value, message_id)
                     SELECT {}, id FROM message
                     WHERE id > ?1 AND id <= ?2 AND {column} IS NOT NULL",
                    column_key(column, column)
                ))?
                .execute([after, up_to])?;
            }
            conn.prepare_cached("UPDATE search_key_progress SET indexed_to = ?1 WHERE id = 1")?
                .execute([up_to])?;
            Ok(true)
        })
        .await
    }
}

/// Brings the watermark down to the newest message left, in the purge's
/// transaction.
pub(super) fn lower_watermark(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE search_key_progress
         SET indexed_to = min(indexed_to, (SELECT coalesce(max(id), 0) FROM message)) WHERE id = 1",
    )?
    .execute([])?;
    Ok(())
}
