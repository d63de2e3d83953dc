//! Purging delivered messages after the retention period and giving the
//! space back to the filesystem.

use super::schema::DELIVERED;
use super::{Journal, JournalError};
use rusqlite::params;

/// Messages deleted per transaction, so a large purge never holds the writer
/// (and every sender waiting for an ACK) for long.
const PURGE_CHUNK: i64 = 500;
/// Pages returned to the filesystem per transaction.
const VACUUM_CHUNK: i64 = 2048;

impl Journal {
    /// Deletes messages received before `cutoff_ms` whose every destination
    /// has delivered them, then shrinks the file. Queued, leased and dead
    /// messages stay. Returns the number of messages purged.
    pub async fn purge_delivered_before(&self, cutoff_ms: i64) -> Result<u64, JournalError> {
        let mut purged = 0u64;
        // Statistics, ASTM transmissions kept for inspection, settled orders
        // and the purges' own records go with the messages; pending orders
        // wait for their analyzer however old they are.
        self.write(move |conn, cx| {
            // What is deleted must be counted first (`stats_fold.rs`).
            while !super::stats_fold::fold(conn)? {}
            let minute = cutoff_ms.div_euclid(60_000);
            conn.prepare_cached("DELETE FROM worklist_item WHERE expires_at < ?1")?
                .execute([cx.now])?;
            conn.prepare_cached("DELETE FROM stats_minute WHERE minute < ?1")?
                .execute([minute])?;
            conn.prepare_cached("DELETE FROM stats_duration WHERE minute < ?1")?
                .execute([minute])?;
            conn.prepare_cached("DELETE FROM stats_queue WHERE minute < ?1")?
                .execute([minute])?;
            conn.prepare_cached("DELETE FROM astm_incomplete WHERE at < ?1")?
                .execute([cutoff_ms])?;
            conn.prepare_cached(
                "DELETE FROM astm_order WHERE state != 'pending' AND coalesce(sent_at, created_at) < ?1",
            )?
            .execute([cutoff_ms])?;
            conn.prepare_cached(
                "DELETE FROM event WHERE message_id IS NULL AND kind = 'purged' AND at < ?1",
            )?
            .execute([cutoff_ms])?;
            // A study announced and idle since before the cutoff is
            // forgotten once none of its objects is left.
            conn.prepare_cached(
                "DELETE FROM dicom_study WHERE version <= announced AND last_object_at < ?1
                 AND NOT EXISTS (SELECT 1 FROM dicom_study_object o
                                 WHERE o.source = dicom_study.source AND o.study_uid = dicom_study.study_uid)",
            )?
            .execute([cutoff_ms])?;
            super::stats_fold::lower_watermarks(conn)?;
            Ok(())
        })
        .await?;
        loop {
            let n = self
                .write(move |conn, cx| {
                    while !super::stats_fold::fold(conn)? {}
                    let ids: Vec<i64> = conn
                        .prepare_cached(
                            "SELECT m.id FROM message m WHERE m.received_at < ?1
                             AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.state != ?2)
                             ORDER BY m.id LIMIT ?3",
                        )?
                        .query_map(params![cutoff_ms, DELIVERED, PURGE_CHUNK], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    for id in &ids {
                        conn.prepare_cached("DELETE FROM event WHERE message_id = ?1")?.execute([id])?;
                        conn.prepare_cached("DELETE FROM dicom_study_object WHERE message_id = ?1")?.execute([id])?;
                        conn.prepare_cached("DELETE FROM outbox_capture WHERE outbox_id IN (SELECT id FROM outbox WHERE message_id = ?1)")?.execute([id])?;
                        conn.prepare_cached("DELETE FROM search_key WHERE message_id = ?1")?.execute([id])?;
                        conn.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?.execute([id])?;
                        conn.prepare_cached("DELETE FROM message WHERE id = ?1")?.execute([id])?;
                    }
                    if !ids.is_empty() {
                        // Ids freed at the top are given out again: the
                        // search keys' watermark must stay below them.
                        super::search_keys::lower_watermark(conn)?;
                        super::stats_fold::lower_watermarks(conn)?;
                        conn.prepare_cached(
                            "INSERT INTO event (at, kind, detail, actor) VALUES (?1, 'purged', ?2, 'retention')",
                        )?
                        .execute(params![cx.now, format!("{} delivered messages received before {cutoff_ms}", ids.len())])?;
                    }
                    Ok(ids.len() as u64)
                })
                .await?;
            purged += n;
            if n < PURGE_CHUNK as u64 {
                break;
            }
        }
        self.shrink().await?;
        Ok(purged)
    }

    /// Returns free pages to the filesystem, a chunk per transaction. Stops
    /// when the free list no longer shrinks: a file made without incremental
    /// auto-vacuum keeps its free pages, and that must not spin the writer.
    pub async fn shrink(&self) -> Result<(), JournalError> {
        let mut before = i64::MAX;
        loop {
            let remaining = self
                .write(|conn, _| {
                    conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_CHUNK})"))?;
                    Ok(conn.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))?)
                })
                .await?;
            if remaining == 0 || remaining >= before {
                if remaining > 0 {
                    tracing::warn!(
                        free_pages = remaining,
                        "the journal file cannot give free pages back (auto_vacuum is not incremental)"
                    );
                }
                return self.checkpoint().await;
            }
            before = remaining;
        }
    }
}
