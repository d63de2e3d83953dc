//! A destination's tripped circuit breaker, and what a sandboxed
//! destination would have sent.
//!
//! A breaker trips in one transaction with what it does to the messages:
//! the rows whose refusals tripped it, given up on as they were refused,
//! go back to the queue (the breaker's premise is that the destination's
//! configuration is at fault, not the messages), and the hub hears
//! `endpoint.paused`. It stays tripped across restarts until an operator
//! resumes it (`endpoint.resumed`, audited).
//!
//! A capture settles a leased row as delivered-in-sandbox: state delivered
//! (so it is never leased again, nor re-sent when the endpoint is promoted
//! to live, and retention purges it as settled) with its row in
//! `outbox_capture`, which the admin page names `captured`.

use super::hub_events;
use super::outbox::record;
use super::schema::{DEAD, DELIVERED, QUEUED};
use super::{Journal, JournalError};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;
use std::path::Path;

/// A tripped breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrippedBreaker {
    pub endpoint: String,
    pub tripped_at: i64,
    pub failures: u32,
    pub reason: String,
}

/// The actor the audit log names for what the gateway did by itself.
const GATEWAY: &str = "gateway";

impl Journal {
    /// Trips `endpoint`'s breaker (if it is not already) and puts the dead
    /// rows `requeue` back in the queue, due now with their attempts kept.
    /// Returns how many rows went back.
    pub async fn trip_breaker(
        &self,
        endpoint: &str,
        failures: u32,
        reason: &str,
        requeue: Vec<i64>,
    ) -> Result<usize, JournalError> {
        let (endpoint, reason) = (endpoint.to_string(), reason.to_string());
        self.write(move |conn, cx| {
            let new = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO endpoint_breaker (endpoint, tripped_at, failures, reason) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![endpoint, cx.now, failures, reason])?
                > 0;
            let mut back = 0;
            for id in &requeue {
                let n = conn
                    .prepare_cached(
                        "UPDATE outbox SET state = ?2, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = ?4 AND destination = ?5",
                    )?
                    .execute(params![id, QUEUED, cx.now, DEAD, endpoint])?;
                if n > 0 {
                    back += 1;
                    record(
                        conn,
                        cx.now,
                        *id,
                        "requeued",
                        None,
                        None,
                        Some("the destination's circuit breaker tripped: back in the queue until an operator resumes it"),
                        Some(GATEWAY),
                    )?;
                }
            }
            if new {
                let detail = json!({"failures": failures, "reason": reason, "requeued": back});
                super::audit::insert_audit(
                    conn,
                    cx.now,
                    GATEWAY,
                    "endpoint.breaker_tripped",
                    Some(&endpoint),
                    Some(&detail.to_string()),
                )?;
                hub_events::insert(
                    conn,
                    cx.now,
                    "endpoint.paused",
                    Some(&endpoint),
                    Some(&detail.to_string()),
                )?;
            }
            Ok(back)
        })
        .await
    }

    /// `endpoint`'s tripped breaker, if it is tripped.
    pub async fn breaker(&self, endpoint: &str) -> Result<Option<TrippedBreaker>, JournalError> {
        let endpoint = endpoint.to_string();
        self.read(move |c| breaker(c, &endpoint)).await
    }

    /// Resumes `endpoint`: its breaker is reset and its queue delivered
    /// again. `false` when it was not tripped. Audited as
    /// `endpoint.resume` by `actor`.
    pub async fn resume_breaker(&self, endpoint: &str, actor: &str) -> Result<bool, JournalError> {
        let (name, actor) = (endpoint.to_string(), actor.to_string());
        let resumed = self
            .write(move |conn, cx| resume(conn, cx.now, &name, &actor))
            .await?;
        if resumed {
            self.wake([endpoint.to_string()]);
        }
        Ok(resumed)
    }

    /// What each captured outbox row of a message would have sent.
    pub async fn captures_of(
        &self,
        message_id: i64,
    ) -> Result<std::collections::BTreeMap<i64, String>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT k.outbox_id, k.request FROM outbox_capture k JOIN outbox o ON o.id = k.outbox_id WHERE o.message_id = ?1",
            )?;
            let rows = s
                .query_map([message_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// [`Journal::resume_breaker`] from a second process (the `resume`
/// command): the running gateway's worker sees it on its next look (at
/// most a second later).
pub fn resume_breaker_at(path: &Path, endpoint: &str, actor: &str) -> Result<bool, JournalError> {
    super::external::change(path, |tx| {
        resume(tx, jiff::Timestamp::now().as_millisecond(), endpoint, actor)
    })
}

fn resume(conn: &Connection, now: i64, name: &str, actor: &str) -> Result<bool, JournalError> {
    let Some(b) = breaker(conn, name)? else {
        return Ok(false);
    };
    conn.prepare_cached("DELETE FROM endpoint_breaker WHERE endpoint = ?1")?
        .execute([name])?;
    let detail = json!({"tripped_at": b.tripped_at, "reason": b.reason});
    super::audit::insert_audit(
        conn,
        now,
        actor,
        "endpoint.resume",
        Some(name),
        Some(&detail.to_string()),
    )?;
    hub_events::insert(
        conn,
        now,
        "endpoint.resumed",
        Some(name),
        Some(&json!({"by": actor}).to_string()),
    )?;
    Ok(true)
}

/// Settles leased row `id` as captured (the caller checked its lease).
pub(super) fn capture(
    conn: &Connection,
    now: i64,
    id: i64,
    request: &str,
    duration_ms: i64,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "UPDATE outbox SET state = ?2, attempts = attempts + 1, lease_token = NULL, updated_at = ?3, last_error = NULL WHERE id = ?1",
    )?
    .execute(params![id, DELIVERED, now])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO outbox_capture (outbox_id, at, request) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, now, request])?;
    // Its own kind, not an `attempt`: statistics count what reached the
    // live system.
    record(
        conn,
        now,
        id,
        "captured",
        Some("captured"),
        Some(duration_ms),
        Some(request),
        None,
    )
}

fn breaker(c: &Connection, endpoint: &str) -> Result<Option<TrippedBreaker>, JournalError> {
    Ok(c.prepare_cached(
        "SELECT endpoint, tripped_at, failures, reason FROM endpoint_breaker WHERE endpoint = ?1",
    )?
    .query_row([endpoint], |r| {
        Ok(TrippedBreaker {
            endpoint: r.get(0)?,
            tripped_at: r.get(1)?,
            failures: r.get(2)?,
            reason: r.get(3)?,
        })
    })
    .optional()?)
}
