//! The live log: events as they are committed, for the admin page's
//! server-sent event stream.
//!
//! A message received is its row, not an event (`ingest.rs`), so the live
//! log reads two runs, messages and events, each after the id it was last
//! sent ([`LiveCursor`]). That misses nothing because ids grow in commit
//! order: every row is written under the database's write lock (by the
//! gateway's writer, or by a command beside it), a new id is one more than
//! the largest committed, and only old rows are ever deleted. Filters are
//! applied here, on the event, rather than in SQL: a page of events is
//! small, and the statuses of the log page mean something else for events
//! (see [`LiveEvent::matches`]).

use super::browse::MessageFilter;
use super::{Journal, JournalError};
use rusqlite::params;

/// One entry of the live log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub outcome: Option<String>,
    pub duration_ms: Option<i64>,
    pub message_id: Option<i64>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub actor: Option<String>,
    /// For filtering only: the live log does not show it.
    pub patient_id: Option<String>,
}

impl LiveEvent {
    /// Whether the event belongs in a live log filtered by `f`. Statuses
    /// map to events: `queued` is a message received; `delivered`, `dead`
    /// and `failing` are attempts with that outcome; `errors` either
    /// failure.
    pub fn matches(&self, f: &MessageFilter) -> bool {
        // An event carries neither the payload nor its order and specimen
        // ids: those searches are the list's, never the live log's.
        if f.key.is_some() || f.text.is_some() {
            return false;
        }
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_deref().is_none_or(|w| have.as_deref() == Some(w))
        };
        if let Some(e) = f.endpoint.as_deref() {
            if self.source.as_deref() != Some(e) && self.destination.as_deref() != Some(e) {
                return false;
            }
        }
        if !same(&f.message_type, &self.message_type)
            || !same(&f.control_id, &self.control_id)
            || !same(&f.patient_id, &self.patient_id)
        {
            return false;
        }
        if f.from.is_some_and(|from| self.at < from) || f.to.is_some_and(|to| self.at >= to) {
            return false;
        }
        let outcome = self.outcome.as_deref();
        let attempt = self.kind == "attempt";
        match f.status.as_deref() {
            None => true,
            Some("queued") => self.kind == "received",
            Some("delivered") => attempt && outcome == Some("delivered"),
            Some("dead") => attempt && outcome == Some("dead"),
            Some("failing") => attempt && outcome == Some("retry"),
            Some("errors") => attempt && matches!(outcome, Some("retry") | Some("dead")),
            Some(_) => false,
        }
    }
}

/// Where a live log is: the newest message and the newest event it has
/// been sent. Written `MESSAGE.EVENT` as the stream's event id, so a
/// reconnecting browser resumes where it was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCursor {
    pub message: i64,
    pub event: i64,
}

impl LiveCursor {
    pub fn parse(text: &str) -> Option<LiveCursor> {
        let (message, event) = text.split_once('.')?;
        Some(LiveCursor {
            message: message.parse().ok()?,
            event: event.parse().ok()?,
        })
    }
}

impl std::fmt::Display for LiveCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.message, self.event)
    }
}

impl Journal {
    /// What happened after `after`, in time order: each message received
    /// (its row is that record, `ingest.rs`) and each event, up to `limit`
    /// of each. Every entry carries the cursor to resume after it: each
    /// kind is read in id order and wholly up to its last, so resuming
    /// from any entry's cursor repeats nothing and misses nothing.
    pub async fn events_after(
        &self,
        after: LiveCursor,
        limit: usize,
    ) -> Result<Vec<(LiveCursor, LiveEvent)>, JournalError> {
        self.read(move |c| {
            let mut received = c.prepare_cached(
                "SELECT m.id, m.received_at, m.source, m.message_type, m.control_id, m.patient_id
                 FROM message m WHERE m.id > ?1 ORDER BY m.id LIMIT ?2",
            )?;
            let messages: Vec<LiveEvent> = received
                .query_map(params![after.message, limit as i64], |r| {
                    Ok(LiveEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: "received".to_string(),
                        outcome: None,
                        duration_ms: None,
                        message_id: Some(r.get(0)?),
                        source: r.get(2)?,
                        destination: None,
                        message_type: r.get(3)?,
                        control_id: r.get(4)?,
                        actor: None,
                        patient_id: r.get(5)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut s = c.prepare_cached(
                "SELECT e.id, e.at, e.kind, e.outcome, e.duration_ms, e.message_id, m.source, o.destination, m.message_type, m.control_id, e.actor, m.patient_id
                 FROM event e LEFT JOIN message m ON m.id = e.message_id LEFT JOIN outbox o ON o.id = e.outbox_id
                 WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
            )?;
            let events: Vec<LiveEvent> = s
                .query_map(params![after.event, limit as i64], |r| {
                    Ok(LiveEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        outcome: r.get(3)?,
                        duration_ms: r.get(4)?,
                        message_id: r.get(5)?,
                        source: r.get(6)?,
                        destination: r.get(7)?,
                        message_type: r.get(8)?,
                        control_id: r.get(9)?,
                        actor: r.get(10)?,
                        patient_id: r.get(11)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(merge(after, messages, events))
        })
        .await
    }

    /// The cursor of a live log that starts now.
    pub async fn live_cursor(&self) -> Result<LiveCursor, JournalError> {
        self.read(|c| {
            Ok(LiveCursor {
                message: super::stats_fold::newest_id(c, "message")?,
                event: super::stats_fold::newest_id(c, "event")?,
            })
        })
        .await
    }
}

/// Interleaves the two id-ordered runs by time, a message before an event
/// of the same instant (a message is received before anything happens to
/// it).
fn merge(
    mut cursor: LiveCursor,
    messages: Vec<LiveEvent>,
    events: Vec<LiveEvent>,
) -> Vec<(LiveCursor, LiveEvent)> {
    let mut out = Vec::with_capacity(messages.len() + events.len());
    let mut messages = messages.into_iter().peekable();
    let mut events = events.into_iter().peekable();
    loop {
        let take_message = match (messages.peek(), events.peek()) {
            (Some(m), Some(e)) => m.at <= e.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return out,
        };
        let next = if take_message {
            messages.next()
        } else {
            events.next()
        };
        let Some(next) = next else { return out };
        if take_message {
            cursor.message = next.id;
        } else {
            cursor.event = next.id;
        }
        out.push((cursor, next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, at: i64, kind: &str) -> LiveEvent {
        LiveEvent {
            id,
            at,
            kind: kind.into(),
            outcome: None,
            duration_ms: None,
            message_id: None,
            source: None,
            destination: None,
            message_type: None,
            control_id: None,
            actor: None,
            patient_id: None,
        }
    }

    #[test]
    fn messages_and_events_interleave_by_time_and_each_cursor_resumes_after_its_entry() {
        let start = LiveCursor {
            message: 10,
            event: 100,
        };
        let merged = merge(
            start,
            vec![entry(11, 5, "received"), entry(12, 9, "received")],
            vec![entry(101, 5, "attempt"), entry(102, 7, "attempt")],
        );
        let order: Vec<(i64, String)> = merged.iter().map(|(c, e)| (e.id, c.to_string())).collect();
        assert_eq!(
            order,
            [
                (11, "11.100".to_string()),
                (101, "11.101".to_string()),
                (102, "11.102".to_string()),
                (12, "12.102".to_string()),
            ]
        );
        assert_eq!(LiveCursor::parse("12.102"), Some(merged[3].0));
        assert_eq!(LiveCursor::parse("12"), None);
    }
}
