//! Retrying and discarding deliveries a person picked: one message, or every
//! message matching a log filter (the errors page's "retry all"), and the
//! command line's retry of dead letters.
//!
//! A filter selects only rows that need a person (dead, or failing: queued
//! after a failed attempt), of at most [`BULK_LIMIT`] messages, the newest:
//! one click is one transaction in the gateway's writer, and every other job
//! waits for it. The outcome says when it stopped short. Rows being
//! delivered or already delivered are never touched. Discarding does not
//! delete: the row stays dead, marked with who gave up on it and why; the
//! admin page's retry clears the mark, the command line's leaves it.
//!
//! The admin page's changes run in the gateway's writer, which wakes the
//! destinations' workers at once. The command line's [`retry_dead_at`] runs
//! in its own process (see [`super::external`]); the workers find its rows
//! on their next look at the queue.

use super::audit::insert_audit;
use super::browse::{list_messages, MessageFilter};
use super::outbox::record;
use super::schema::{DEAD, DELIVERED, LEASED, QUEUED};
use super::{external, Journal, JournalError};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// Which messages a retry or discard applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Message(i64),
    Matching(MessageFilter),
    /// These deliveries (outbox rows), e.g. one group of the errors page
    /// (`cause` says which, for the audit log).
    Deliveries {
        outbox_ids: Vec<i64>,
        cause: String,
    },
}

/// Most messages one "retry all" or "discard all" touches.
pub const BULK_LIMIT: usize = 10_000;

/// What a retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Outbox rows queued again.
    pub rows: usize,
    /// More messages matched than [`BULK_LIMIT`]; the newest were retried.
    pub truncated: bool,
}

/// Which dead deliveries to put back in the queue.
#[derive(Debug, Clone, Default)]
pub struct DeadSelection {
    /// Only this destination endpoint.
    pub destination: Option<String>,
    /// Only this message's deliveries.
    pub message_id: Option<i64>,
}

/// One delivery put back in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeued {
    pub outbox_id: i64,
    pub message_id: i64,
    pub destination: String,
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
        Selection::Matching(f) => format!("messages matching {}", filter_json(f)),
        Selection::Deliveries { outbox_ids, cause } => {
            format!("{} deliveries failing with: {cause}", outbox_ids.len())
        }
    }
}

/// The filter as JSON with every field, in the order of [`MessageFilter`]:
/// what the audit log has always recorded, so old and new rows read alike
/// (the search by key and text, newer, only when used).
fn filter_json(f: &MessageFilter) -> String {
    use serde_json::Value;
    let text = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::from).to_string();
    let time = |v: Option<i64>| v.map_or(Value::Null, Value::from).to_string();
    let mut searched = String::new();
    for (name, v) in [("key", &f.key), ("text", &f.text)] {
        if v.is_some() {
            searched.push_str(&format!(r#","{name}":{}"#, text(v)));
        }
    }
    format!(
        r#"{{"endpoint":{},"status":{},"message_type":{},"control_id":{},"patient_id":{},"from":{},"to":{}{searched}}}"#,
        text(&f.endpoint),
        text(&f.status),
        text(&f.message_type),
        text(&f.control_id),
        text(&f.patient_id),
        time(f.from),
        time(f.to),
    )
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
    if let Selection::Deliveries { outbox_ids, .. } = selection {
        let mut s = conn.prepare_cached(
            "SELECT id, destination, state FROM outbox WHERE id = ?1 AND (state = 3 OR (state = 0 AND attempts > 0))",
        )?;
        let mut out = Vec::new();
        for id in outbox_ids.iter().take(limit) {
            let row = s
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            out.extend(row);
        }
        return Ok((out, outbox_ids.len() > limit));
    }
    let message_ids: Vec<i64> = match selection {
        Selection::Message(id) => vec![*id],
        Selection::Deliveries { .. } => Vec::new(),
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

/// The audit log's words for a command-line selection of dead letters.
fn describe_dead(selection: &DeadSelection) -> String {
    match (&selection.destination, selection.message_id) {
        (None, None) => "dead deliveries".to_string(),
        (Some(d), None) => format!("dead deliveries to {d}"),
        (None, Some(m)) => format!("dead deliveries of message {m}"),
        (Some(d), Some(m)) => format!("dead deliveries of message {m} to {d}"),
    }
}

/// Puts the selected dead deliveries back in the queue, due now, with a
/// fresh attempt budget and without a discard mark, recording `actor` on
/// each and in the audit log; returns what was
/// requeued. With `dry_run` nothing changes and the same list comes back.
/// Works beside a running gateway (the `retry` command).
pub fn retry_dead_at(
    path: &Path,
    selection: &DeadSelection,
    actor: &str,
    dry_run: bool,
) -> Result<Vec<Requeued>, JournalError> {
    external::change(path, |tx| {
        let rows: Vec<Requeued> = tx
            .prepare(
                "SELECT id, message_id, destination FROM outbox
                 WHERE state = ?1 AND (?2 IS NULL OR destination = ?2) AND (?3 IS NULL OR message_id = ?3)
                 ORDER BY id",
            )?
            .query_map(
                params![DEAD, selection.destination, selection.message_id],
                |r| {
                    Ok(Requeued {
                        outbox_id: r.get(0)?,
                        message_id: r.get(1)?,
                        destination: r.get(2)?,
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
        if dry_run {
            return Ok(rows);
        }
        let now = jiff::Timestamp::now().as_millisecond();
        for row in &rows {
            tx.execute(
                "UPDATE outbox SET state = ?2, attempts = 0, next_attempt_at = ?3, updated_at = ?3 WHERE id = ?1",
                params![row.outbox_id, QUEUED, now],
            )?;
            tx.execute(
                "DELETE FROM outbox_discard WHERE outbox_id = ?1",
                [row.outbox_id],
            )?;
            record(
                tx,
                now,
                row.outbox_id,
                "retried",
                None,
                None,
                None,
                Some(actor),
            )?;
        }
        insert_audit(
            tx,
            now,
            actor,
            "message.retry",
            Some(&describe_dead(selection)),
            Some(&format!("{} deliveries queued again", rows.len())),
        )?;
        Ok(rows)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Destination, Journal, JournalOptions, Settlement};
    use ecko_message::Envelope;

    #[test]
    fn a_filter_is_described_in_the_audit_log_as_json_with_every_field() {
        let f = MessageFilter {
            message_type: Some("ORU^R01".into()),
            patient_id: Some("say \"hi\"".into()),
            from: Some(1_700_000_000_000),
            ..Default::default()
        };
        assert_eq!(
            describe(&Selection::Matching(f)),
            concat!(
                r#"messages matching {"endpoint":null,"status":null,"message_type":"ORU^R01","#,
                r#""control_id":null,"patient_id":"say \"hi\"","from":1700000000000,"to":null}"#
            )
        );
        assert_eq!(describe(&Selection::Message(7)), "message 7");
    }

    async fn dead_message(j: &Journal, key: &str, dest: &str) -> i64 {
        let m = Envelope {
            source: "lab".into(),
            dedup_key: Some(key.into()),
            message_type: "ORU^R01".into(),
            content_type: "x".into(),
            payload: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let d = vec![Destination {
            endpoint: dest.into(),
            transform: "none".into(),
            lane: String::new(),
            reply_to: None,
        }];
        let id = j.ingest(m, d).await.unwrap().message_id;
        let lease = j.lease(dest, 1, 1).await.unwrap().lanes.remove(0).remove(0);
        j.settle(vec![(
            lease,
            Settlement::Dead {
                error: "refused".into(),
                duration_ms: 1,
            },
        )])
        .await
        .unwrap();
        id
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn dead_deliveries_are_requeued_beside_a_running_gateway_and_the_actor_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let a = dead_message(&j, "1", "hub").await;
        let b = dead_message(&j, "2", "archive").await;

        let only_hub = DeadSelection {
            destination: Some("hub".into()),
            message_id: None,
        };
        let planned = retry_dead_at(&path, &only_hub, "cli:ann", true).unwrap();
        assert_eq!(planned.len(), 1);
        assert_eq!(
            j.outbox_of(a).await.unwrap()[0].state,
            crate::journal::OutboxState::Dead,
            "a dry run changes nothing"
        );

        let done = retry_dead_at(&path, &only_hub, "cli:ann", false).unwrap();
        assert_eq!(done, planned);
        assert_eq!(done[0].message_id, a);
        let row = &j.outbox_of(a).await.unwrap()[0];
        assert_eq!(row.state, crate::journal::OutboxState::Queued);
        assert_eq!(row.attempts, 0);
        assert!(j
            .events_of(a)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "retried" && e.actor.as_deref() == Some("cli:ann")));
        assert_eq!(
            j.outbox_of(b).await.unwrap()[0].state,
            crate::journal::OutboxState::Dead,
            "another destination's dead delivery stays dead"
        );
        // The running journal can lease it again.
        assert_eq!(j.lease("hub", 1, 1).await.unwrap().lanes.len(), 1);
        j.close().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_discarded_dead_letter_requeued_from_the_command_line_loses_its_discard_mark_and_is_audited(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let a = dead_message(&j, "1", "hub").await;
        j.admin_discard(Selection::Message(a), "patient merged", "admin")
            .await
            .unwrap();
        assert_eq!(j.discards_of(a).await.unwrap().len(), 1);

        let all = DeadSelection::default();
        retry_dead_at(&path, &all, "cli:ann", false).unwrap();

        assert!(
            j.discards_of(a).await.unwrap().is_empty(),
            "a requeued delivery is no longer discarded"
        );
        let audit = j.audit_log(None, 10).await.unwrap();
        let retry = audit
            .iter()
            .find(|r| r.action == "message.retry")
            .expect("the command line's retry is audited");
        assert_eq!(retry.actor, "cli:ann");
        assert_eq!(retry.target.as_deref(), Some("dead deliveries"));
        assert_eq!(retry.detail.as_deref(), Some("1 deliveries queued again"));
        j.close().await;
    }
}
