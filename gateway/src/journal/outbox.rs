//! Leasing outbox rows to delivery workers and recording what came of them.
//!
//! A lane with any row in flight is not leased from again until that row is
//! settled: one batch per lane at a time keeps the lane's order even when a
//! person puts an older dead row back in the queue.

use super::query::load_message;
use super::schema::{DEAD, DELIVERED, LEASED, QUEUED};
use super::{Journal, JournalError};
use ecko_message::StoredMessage;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;

/// One outbox row handed to a delivery worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub outbox_id: i64,
    pub token: i64,
    pub destination: String,
    pub transform: String,
    pub lane: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the row was queued: the start of its retry age.
    pub queued_at: i64,
    /// Where an application acknowledgement goes once this row settles.
    pub reply_to: Option<String>,
    pub message: Arc<StoredMessage>,
}

/// A message queued in the same transaction as a settlement: the application
/// acknowledgement a sender asked for, so it is journalled (and survives a
/// restart) exactly when the outcome it reports is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The outbound endpoint that delivers it (the lease's `reply_to`).
    pub endpoint: String,
    /// E.g. `ACK^R01`.
    pub message_type: String,
    pub content_type: String,
    /// The reply's own control id.
    pub control_id: String,
    pub payload: Vec<u8>,
    /// For the history, e.g. `AA`.
    pub summary: String,
}

/// What a lease call found.
#[derive(Debug, Default)]
pub struct LeaseBatch {
    /// Per lane, consecutive rows in FIFO order, ready to deliver now.
    pub lanes: Vec<Vec<Lease>>,
    /// The earliest time a lane that is waiting for its backoff becomes due.
    pub next_due: Option<i64>,
}

/// What happened to one leased row.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    Delivered {
        response: Option<String>,
        duration_ms: i64,
    },
    /// Try again at `retry_at` (Unix ms).
    Retry {
        error: String,
        duration_ms: i64,
        retry_at: i64,
    },
    /// Given up on: kept, visible and retryable by a person.
    Dead { error: String, duration_ms: i64 },
    /// Not attempted (its batch stopped before it): back to the queue, no
    /// attempt counted.
    Release,
    /// Sandbox mode: settled without reaching the live system; `request`
    /// is the JSON of what would have been sent (and what a sandbox URL
    /// answered). Never leased again, nor re-sent once promoted to live.
    Captured { request: String, duration_ms: i64 },
}

/// How many lanes one lease call looks at, so a destination with many
/// partitions cannot hold the writer for long.
const LANE_SCAN_LIMIT: usize = 512;

impl Journal {
    /// Leases up to `max_batch` due rows from each of up to `max_lanes` lanes
    /// of `destination` whose head is not already in flight.
    pub async fn lease(
        &self,
        destination: &str,
        max_lanes: usize,
        max_batch: usize,
    ) -> Result<LeaseBatch, JournalError> {
        let destination = destination.to_string();
        self.write(move |conn, cx| lease(conn, cx.now, &destination, max_lanes, max_batch.max(1)))
            .await
    }

    /// Records outcomes. A row whose lease token no longer matches (a
    /// settlement after a restart, or twice) is left alone; the returned
    /// count says how many were recorded.
    pub async fn settle(&self, outcomes: Vec<(Lease, Settlement)>) -> Result<usize, JournalError> {
        self.settle_with_replies(outcomes.into_iter().map(|(l, s)| (l, s, None)).collect())
            .await
    }

    /// Like [`Journal::settle`]; a row that is recorded also queues its
    /// reply, if any, in the same transaction. A stale lease queues nothing.
    pub async fn settle_with_replies(
        &self,
        outcomes: Vec<(Lease, Settlement, Option<Reply>)>,
    ) -> Result<usize, JournalError> {
        let mut woken = Vec::new();
        for (lease, s, reply) in &outcomes {
            if matches!(s, Settlement::Release | Settlement::Retry { .. }) {
                woken.push(lease.destination.clone());
            }
            if let Some(r) = reply {
                woken.push(r.endpoint.clone());
            }
        }
        let n = self
            .write(move |conn, cx| {
                let mut n = 0;
                for (lease, s, reply) in &outcomes {
                    let recorded = settle(conn, cx.now, lease, s)?;
                    if recorded {
                        if let Some(reply) = reply {
                            queue_reply(conn, cx.now, lease, reply)?;
                        }
                    }
                    n += usize::from(recorded);
                }
                Ok(n)
            })
            .await?;
        self.wake(woken);
        Ok(n)
    }

    /// Puts a dead row back in the queue, due now, with a fresh attempt
    /// budget; `actor` is recorded.
    pub async fn retry(&self, outbox_id: i64, actor: &str) -> Result<bool, JournalError> {
        let actor = actor.to_string();
        let destination: Option<String> = self
            .write(move |conn, cx| {
                let dest: Option<String> = conn
                    .query_row(
                        "SELECT destination FROM outbox WHERE id = ?1 AND state = ?2",
                        params![outbox_id, DEAD],
                        |r| r.get(0),
                    )
                    .optional()?;
                if dest.is_none() {
                    let exists: bool = conn.query_row(
                        "SELECT EXISTS (SELECT 1 FROM outbox WHERE id = ?1)",
                        [outbox_id],
                        |r| r.get(0),
                    )?;
                    if !exists {
                        return Err(JournalError::UnknownOutboxRow(outbox_id));
                    }
                    return Ok(None);
                }
                conn.execute(
                    "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1",
                    params![outbox_id, QUEUED, cx.now],
                )?;
                record(conn, cx.now, outbox_id, "retried", None, None, None, Some(&actor))?;
                Ok(dest)
            })
            .await?;
        let retried = destination.is_some();
        self.wake(destination);
        Ok(retried)
    }
}

fn lease(
    conn: &Connection,
    now: i64,
    destination: &str,
    max_lanes: usize,
    max_batch: usize,
) -> Result<LeaseBatch, JournalError> {
    let mut found = LeaseBatch::default();
    let mut head = conn.prepare_cached(
        "SELECT lane, id, state, next_attempt_at FROM outbox
         WHERE destination = ?1 AND state IN (0, 1) AND lane > ?2
         ORDER BY lane, id LIMIT 1",
    )?;
    let mut after = String::new();
    let mut first = true;
    let mut due_lanes = Vec::new();
    for _ in 0..LANE_SCAN_LIMIT {
        if due_lanes.len() >= max_lanes {
            break;
        }
        // `lane > ''` would skip the unpartitioned lane itself.
        let row = if first {
            conn.prepare_cached(
                "SELECT lane, id, state, next_attempt_at FROM outbox
                 WHERE destination = ?1 AND state IN (0, 1)
                 ORDER BY lane, id LIMIT 1",
            )?
            .query_row([destination], head_row)
            .optional()?
        } else {
            head.query_row(params![destination, after], head_row)
                .optional()?
        };
        first = false;
        let Some((lane, id, state, next)) = row else {
            break;
        };
        let lane_in_flight = state == LEASED
            || conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE destination = ?1 AND state = 1 AND lane = ?2)",
                )?
                .query_row(params![destination, lane], |r| r.get::<_, bool>(0))?;
        if !lane_in_flight {
            if next <= now {
                due_lanes.push((lane.clone(), id));
            } else {
                found.next_due = Some(found.next_due.map_or(next, |d: i64| d.min(next)));
            }
        }
        after = lane;
    }

    let token: i64 = rand::random::<i64>() & i64::MAX;
    let mut rows = conn.prepare_cached(
        "SELECT id, next_attempt_at, transform, attempts, created_at, message_id, reply_to FROM outbox
         WHERE destination = ?1 AND lane = ?2 AND state = 0 AND id >= ?3
         ORDER BY id LIMIT ?4",
    )?;
    let mut mark = conn.prepare_cached(
        "UPDATE outbox SET state = ?2, lease_token = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    for (lane, head_id) in due_lanes {
        type Row = (i64, i64, String, u32, i64, i64, Option<String>);
        let candidates: Vec<Row> = rows
            .query_map(params![destination, lane, head_id, max_batch as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut batch = Vec::new();
        for (id, next, transform, attempts, created_at, message_id, reply_to) in candidates {
            if next > now {
                // A later row still in backoff: FIFO stops the batch here.
                break;
            }
            let Some(message) = load_message(conn, message_id)? else {
                continue;
            };
            mark.execute(params![id, LEASED, token, now])?;
            batch.push(Lease {
                outbox_id: id,
                token,
                destination: destination.to_string(),
                transform,
                lane: lane.clone(),
                attempts,
                queued_at: created_at,
                reply_to,
                message: Arc::new(message),
            });
        }
        if !batch.is_empty() {
            found.lanes.push(batch);
        }
    }
    Ok(found)
}

fn head_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn settle(
    conn: &Connection,
    now: i64,
    lease: &Lease,
    s: &Settlement,
) -> Result<bool, JournalError> {
    let current: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT state, lease_token FROM outbox WHERE id = ?1")?
        .query_row([lease.outbox_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if current != Some((LEASED, Some(lease.token))) {
        return Ok(false);
    }
    let id = lease.outbox_id;
    match s {
        Settlement::Delivered {
            response,
            duration_ms,
        } => {
            conn.prepare_cached(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_token = NULL, updated_at = ?3, last_error = NULL WHERE id = ?1",
            )?
            .execute(params![id, DELIVERED, now])?;
            record(
                conn,
                now,
                id,
                "attempt",
                Some("delivered"),
                Some(*duration_ms),
                response.as_deref(),
                None,
            )?;
        }
        Settlement::Retry {
            error,
            duration_ms,
            retry_at,
        } => {
            conn.prepare_cached(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_token = NULL, next_attempt_at = ?3, updated_at = ?4, last_error = ?5 WHERE id = ?1",
            )?
            .execute(params![id, QUEUED, retry_at, now, error])?;
            record(
                conn,
                now,
                id,
                "attempt",
                Some("retry"),
                Some(*duration_ms),
                Some(error),
                None,
            )?;
        }
        Settlement::Dead { error, duration_ms } => {
            conn.prepare_cached(
                "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_token = NULL, updated_at = ?3, last_error = ?4 WHERE id = ?1",
            )?
            .execute(params![id, DEAD, now, error])?;
            record(
                conn,
                now,
                id,
                "attempt",
                Some("dead"),
                Some(*duration_ms),
                Some(error),
                None,
            )?;
        }
        Settlement::Captured {
            request,
            duration_ms,
        } => super::breakers::capture(conn, now, id, request, *duration_ms)?,
        Settlement::Release => {
            conn.prepare_cached(
                "UPDATE outbox SET state = ?2, lease_token = NULL, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, QUEUED, now])?;
        }
    }
    Ok(true)
}

/// Stores `reply` as a message of the settled row's source with one outbox
/// row to the reply endpoint, and notes it in both histories.
fn queue_reply(
    conn: &Connection,
    now: i64,
    lease: &Lease,
    reply: &Reply,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO message (source, message_type, content_type, control_id, patient_id, received_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        lease.message.source,
        reply.message_type,
        reply.content_type,
        reply.control_id,
        lease.message.patient_id,
        now,
        reply.payload
    ])?;
    let reply_id = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO outbox (message_id, destination, transform, lane, state, next_attempt_at, created_at, updated_at)
         VALUES (?1, ?2, 'none', '', ?3, ?4, ?4, ?4)",
    )?
    .execute(params![reply_id, reply.endpoint, QUEUED, now])?;
    let mut event = conn.prepare_cached(
        "INSERT INTO event (at, message_id, outbox_id, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    event.execute(params![
        now,
        lease.message.id,
        lease.outbox_id,
        "reply",
        format!(
            "application acknowledgement {} queued for {} as message {reply_id}",
            reply.summary, reply.endpoint
        )
    ])?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn record(
    conn: &Connection,
    now: i64,
    outbox_id: i64,
    kind: &str,
    outcome: Option<&str>,
    duration_ms: Option<i64>,
    detail: Option<&str>,
    actor: Option<&str>,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO event (at, message_id, outbox_id, kind, outcome, duration_ms, detail, actor)
         VALUES (?1, (SELECT message_id FROM outbox WHERE id = ?2), ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        now,
        outbox_id,
        kind,
        outcome,
        duration_ms,
        detail,
        actor
    ])?;
    Ok(())
}

/// After a crash nothing is in flight: every leased row goes back to the
/// queue, due now, and will be delivered again.
pub(super) fn release_all_leases(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    // These rows may have reached their destination before the previous run
    // ended, so the next attempt can be a redelivery: say so in the history.
    tx.execute(
        "INSERT INTO event (at, message_id, outbox_id, kind, detail, actor)
         SELECT ?1, message_id, id, 'requeued', 'leased when the previous run ended; delivering again', 'startup'
         FROM outbox WHERE state = ?2",
        params![now, LEASED],
    )?;
    let released = tx.execute(
        "UPDATE outbox SET state = ?1, lease_token = NULL, next_attempt_at = MIN(next_attempt_at, ?2), updated_at = ?2 WHERE state = ?3",
        params![QUEUED, now, LEASED],
    )?;
    tx.commit()?;
    Ok(released)
}
