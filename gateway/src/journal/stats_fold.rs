//! Statistics counted from the rows themselves, off the acknowledgement's
//! path.
//!
//! A message row is its `received` count, an `attempt` event its attempt
//! (and, delivered, its duration), an `astm_incomplete` row its rejection.
//! Nothing is counted when they are written: a fold, run every few seconds
//! and before a purge, adds the rows past the watermarks in
//! `stats_progress` to `stats_minute` and `stats_duration` and moves the
//! watermarks, in one transaction. A crash loses nothing and counts
//! nothing twice: the counts and their watermark commit together, and what
//! was not folded is still in the rows.
//!
//! A read adds the unfolded tail ([`TAIL_MINUTES`], [`TAIL_DURATIONS`]) to
//! the folded minutes, so the figures are exact at any moment; the tail is
//! a few seconds of rows, found by rowid.
//!
//! Ids only grow, except that SQLite gives the ids of deleted newest rows
//! out again: whatever deletes rows brings each watermark down to the
//! newest id left ([`lower_watermarks`]), in the same transaction and after
//! a fold, so every row past a watermark is one not counted yet.

use super::{Journal, JournalError};
use rusqlite::Connection;

/// The delivery-duration bucket of an attempt event `e`, as
/// [`super::schema::DURATION_BUCKETS_MS`] bounds them.
const BUCKET: &str = "CASE
    WHEN coalesce(e.duration_ms, 0) <= 1 THEN 0
    WHEN e.duration_ms <= 2 THEN 1
    WHEN e.duration_ms <= 5 THEN 2
    WHEN e.duration_ms <= 10 THEN 3
    WHEN e.duration_ms <= 20 THEN 4
    WHEN e.duration_ms <= 50 THEN 5
    WHEN e.duration_ms <= 100 THEN 6
    WHEN e.duration_ms <= 200 THEN 7
    WHEN e.duration_ms <= 500 THEN 8
    WHEN e.duration_ms <= 1000 THEN 9
    WHEN e.duration_ms <= 2000 THEN 10
    WHEN e.duration_ms <= 5000 THEN 11
    WHEN e.duration_ms <= 10000 THEN 12
    WHEN e.duration_ms <= 30000 THEN 13
    WHEN e.duration_ms <= 60000 THEN 14
    ELSE 15 END";

/// The rows past the watermarks, up to the ids `?1` (messages), `?2`
/// (events) and `?3` (incomplete ASTM transmissions), as `stats_minute` rows
/// (endpoint, minute, received, rejected, attempts, delivered, failed,
/// duration_sum, duration_max, last_received_at, last_delivered_at); one
/// endpoint and minute may appear more than once.
pub const TAIL_MINUTES: &str = "
    SELECT source, received_at / 60000, count(*), 0, 0, 0, 0, 0, 0, max(received_at), 0
    FROM message WHERE id > (SELECT message_to FROM stats_progress WHERE id = 1) AND id <= ?1
    GROUP BY 1, 2
    UNION ALL
    SELECT o.destination, e.at / 60000, 0, 0, count(*),
           sum(e.outcome IS 'delivered'), sum(e.outcome IS NOT 'delivered'),
           sum(iif(e.outcome IS 'delivered', coalesce(e.duration_ms, 0), 0)),
           max(iif(e.outcome IS 'delivered', coalesce(e.duration_ms, 0), 0)),
           0, max(iif(e.outcome IS 'delivered', e.at, 0))
    FROM event e JOIN outbox o ON o.id = e.outbox_id
    WHERE e.id > (SELECT event_to FROM stats_progress WHERE id = 1) AND e.id <= ?2
      AND e.kind = 'attempt'
    GROUP BY 1, 2
    UNION ALL
    SELECT endpoint, at / 60000, 0, count(*), 0, 0, 0, 0, 0, 0, 0
    FROM astm_incomplete WHERE id > (SELECT incomplete_to FROM stats_progress WHERE id = 1) AND id <= ?3
    GROUP BY 1, 2";

/// The delivered attempts past the watermark, up to the event id `?1`, as
/// `stats_duration` rows (endpoint, minute, bucket, n).
pub fn tail_durations() -> String {
    format!(
        "SELECT o.destination, e.at / 60000, {BUCKET}, count(*)
         FROM event e JOIN outbox o ON o.id = e.outbox_id
         WHERE e.id > (SELECT event_to FROM stats_progress WHERE id = 1) AND e.id <= ?1
           AND e.kind = 'attempt' AND e.outcome IS 'delivered'
         GROUP BY 1, 2, 3"
    )
}

/// Rows of each table one fold adds up: a long backlog (a journal whose
/// folds failed for hours) is folded a chunk per transaction, so the
/// writer is never held for long.
const FOLD_CHUNK: i64 = 20_000;

/// Adds up to [`FOLD_CHUNK`] rows of each kind past the watermarks to the
/// per-minute statistics and moves the watermarks past them, inside the
/// caller's transaction; whether it caught up with the newest rows.
pub(super) fn fold(conn: &Connection) -> rusqlite::Result<bool> {
    let (message_to, event_to, incomplete_to): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT message_to, event_to, incomplete_to FROM stats_progress WHERE id = 1",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let newest = |table: &str| newest_id(conn, table);
    let (messages, events, incomplete) = (
        newest("message")?,
        newest("event")?,
        newest("astm_incomplete")?,
    );
    let upto = |newest: i64, mark: i64| newest.min(mark.saturating_add(FOLD_CHUNK));
    let bounds = [
        upto(messages, message_to),
        upto(events, event_to),
        upto(incomplete, incomplete_to),
    ];
    if bounds == [message_to, event_to, incomplete_to] {
        return Ok(true);
    }
    conn.prepare_cached(&format!(
        "INSERT INTO stats_minute (endpoint, minute, received, rejected, attempts, delivered, failed,
                                   duration_sum, duration_max, last_received_at, last_delivered_at)
         SELECT * FROM ({TAIL_MINUTES}) WHERE true
         ON CONFLICT (endpoint, minute) DO UPDATE SET
             received = received + excluded.received,
             rejected = rejected + excluded.rejected,
             attempts = attempts + excluded.attempts,
             delivered = delivered + excluded.delivered,
             failed = failed + excluded.failed,
             duration_sum = duration_sum + excluded.duration_sum,
             duration_max = max(duration_max, excluded.duration_max),
             last_received_at = max(last_received_at, excluded.last_received_at),
             last_delivered_at = max(last_delivered_at, excluded.last_delivered_at)"
    ))?
    .execute(bounds)?;
    conn.prepare_cached(&format!(
        "INSERT INTO stats_duration (endpoint, minute, bucket, n)
         SELECT * FROM ({}) WHERE true
         ON CONFLICT (endpoint, minute, bucket) DO UPDATE SET n = n + excluded.n",
        tail_durations()
    ))?
    .execute([bounds[1]])?;
    conn.prepare_cached(
        "UPDATE stats_progress SET message_to = ?1, event_to = ?2, incomplete_to = ?3 WHERE id = 1",
    )?
    .execute(bounds)?;
    Ok(bounds == [messages, events, incomplete])
}

/// The largest id in `table` (0 when it is empty).
pub(super) fn newest_id(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!("SELECT coalesce(max(id), 0) FROM {table}"))?
        .query_row([], |r| r.get(0))
}

/// Brings each watermark down to the newest row left, after a deletion in
/// the same transaction (which must have folded first).
pub(super) fn lower_watermarks(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE stats_progress SET
             message_to = min(message_to, (SELECT coalesce(max(id), 0) FROM message)),
             event_to = min(event_to, (SELECT coalesce(max(id), 0) FROM event)),
             incomplete_to = min(incomplete_to, (SELECT coalesce(max(id), 0) FROM astm_incomplete))
         WHERE id = 1",
    )?
    .execute([])?;
    Ok(())
}

impl Journal {
    /// Folds the rows written since the last fold into the statistics (see
    /// the module's note). Called every few seconds.
    pub async fn fold_stats(&self) -> Result<(), JournalError> {
        while !self.write(|conn, _| Ok(fold(conn)?)).await? {}
        Ok(())
    }
}
