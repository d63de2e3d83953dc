//! Browsing the messages: the log page's list with its filters and keyset
//! paging, and what the message viewer reads beside the message itself.
//!
//! Message lists page by id (newest first, `id < before`), never by offset,
//! so page 10,000 costs what page 1 costs. A status filter is answered from
//! the outbox side (`outbox(state, message_id)`), a type filter from its
//! index on `message`, a control id or patient filter from `search_key`
//! (indexed after the commit, the unindexed tail scanned: `search_keys.rs`);
//! each of those ends in the rowid, so the newest-first walk needs no sort. An endpoint
//! filter merges two such walks: messages from it (`message(source)`) and
//! messages routed to it (`outbox(destination, message_id)`). A time range
//! is checked on `received_at` itself, never assumed from ids (the clock can
//! step back). Alone, it walks `message(received_at)` newest first (the page
//! is then in time order, `before` keyed on the time of that message); with
//! other filters, its index drives the walk only when the range is narrow.
//!
//! Walking an index newest first matters because a sort needs every match
//! before the first row comes out: on a million-message journal that is a
//! whole source or status per page, not one page. The unit test below asks
//! SQLite for the plan of every kind of filter and fails on any sort; a new
//! filter or index change must keep it passing.

use super::schema::{DEAD, DELIVERED, LEASED, QUEUED};
use super::search_keys::indexed_or_tail;
use super::{Journal, JournalError};
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// What a message list may be narrowed to. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Source endpoint, or a destination the message was routed to.
    pub endpoint: Option<String>,
    /// `queued`, `delivered`, `dead`, `failing` (queued after a failed
    /// attempt) or `errors` (dead or failing).
    pub status: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    /// An order or specimen id the message names (accession, placer or
    /// filler order number, specimen or container id), as recorded in
    /// `search_key` after the commit.
    pub key: Option<String>,
    /// Text the payload holds, ASCII letters compared without case. Read
    /// from every message the other filters leave, so the page asks for a
    /// time range with it.
    pub text: Option<String>,
    /// Unix ms, inclusive.
    pub from: Option<i64>,
    /// Unix ms, exclusive.
    pub to: Option<i64>,
}

impl MessageFilter {
    pub const STATUSES: &'static [&'static str] =
        &["queued", "delivered", "dead", "failing", "errors"];

    /// Blank text fields (a form left empty) do not filter.
    pub(super) fn normalized(mut self) -> Self {
        for f in [
            &mut self.endpoint,
            &mut self.status,
            &mut self.message_type,
            &mut self.control_id,
            &mut self.patient_id,
            &mut self.key,
            &mut self.text,
        ] {
            if f.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *f = None;
            }
        }
        self
    }
}

/// One destination's state for one message, as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub outbox_id: i64,
    pub destination: String,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub discarded: bool,
}

/// One row of a message list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    pub id: i64,
    pub received_at: i64,
    pub source: String,
    pub message_type: String,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    pub size: i64,
    /// `delivered`, `queued`, `failing`, `dead` or `discarded`: the worst
    /// state among its destinations.
    pub status: &'static str,
    pub deliveries: Vec<DeliveryState>,
}

/// A page of messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    pub messages: Vec<MessageSummary>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

impl Journal {
    /// A page of messages matching `filter`, newest first, older than
    /// `before`.
    pub async fn list_messages(
        &self,
        filter: MessageFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<MessagePage, JournalError> {
        self.read(move |c| list_messages(c, &filter.normalized(), before, limit.clamp(1, 500)))
            .await
    }

    /// Whether each outbox row of a message was discarded, and why.
    pub async fn discards_of(
        &self,
        message_id: i64,
    ) -> Result<BTreeMap<i64, (i64, String, String)>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT d.outbox_id, d.at, d.actor, d.reason FROM outbox_discard d JOIN outbox o ON o.id = d.outbox_id WHERE o.message_id = ?1",
            )?;
            let rows = s
                .query_map([message_id], |r| {
                    Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
                })?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
    }
}

/// One page of `f` (already normalized), newest first.
pub(super) fn list_messages(
    c: &Connection,
    f: &MessageFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<MessagePage, JournalError> {
    let PageQuery { sql, args, fetch } = page_query(c, f, before, limit)?;
    let mut ids: Vec<i64> = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args.iter()), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let scanned = ids.len();
    ids.dedup();
    let more = ids.len() > limit || scanned == fetch;
    ids.truncate(limit);
    let mut messages = Vec::with_capacity(ids.len());
    let mut head = c.prepare_cached(
        "SELECT id, received_at, source, message_type, control_id, patient_id, length(payload) FROM message WHERE id = ?1",
    )?;
    let mut deliveries = c.prepare_cached(
        "SELECT o.id, o.destination, o.state, o.attempts, o.last_error, d.outbox_id IS NOT NULL, k.outbox_id IS NOT NULL
         FROM outbox o LEFT JOIN outbox_discard d ON d.outbox_id = o.id LEFT JOIN outbox_capture k ON k.outbox_id = o.id
         WHERE o.message_id = ?1 ORDER BY o.id",
    )?;
    for id in &ids {
        let Some(mut m) = head
            .query_row([id], |r| {
                Ok(MessageSummary {
                    id: r.get(0)?,
                    received_at: r.get(1)?,
                    source: r.get(2)?,
                    message_type: r.get(3)?,
                    control_id: r.get(4)?,
                    patient_id: r.get(5)?,
                    size: r.get(6)?,
                    status: "delivered",
                    deliveries: Vec::new(),
                })
            })
            .optional()?
        else {
            continue;
        };
        m.deliveries = deliveries
            .query_map([id], |r| {
                let state: i64 = r.get(2)?;
                let attempts: u32 = r.get(3)?;
                let discarded: bool = r.get(5)?;
                let captured: bool = r.get(6)?;
                Ok(DeliveryState {
                    outbox_id: r.get(0)?,
                    destination: r.get(1)?,
                    state: if captured {
                        "captured"
                    } else {
                        state_name(state, attempts, discarded)
                    },
                    attempts,
                    last_error: r.get(4)?,
                    discarded,
                })
            })?
            .collect::<Result<_, _>>()?;
        m.status = worst(m.deliveries.iter().map(|d| d.state));
        messages.push(m);
    }
    let next_before = if more {
        messages.last().map(|m| m.id)
    } else {
        None
    };
    Ok(MessagePage {
        messages,
        next_before,
    })
}

/// The statement that finds one page of message ids, newest first: at most
/// `fetch` ids, possibly repeated (one per matching outbox row).
struct PageQuery {
    sql: String,
    args: Vec<rusqlite::types::Value>,
    fetch: usize,
}

fn page_query(
    c: &Connection,
    f: &MessageFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<PageQuery, JournalError> {
    let upper = before.unwrap_or(i64::MAX);
    // Conditions on the message itself (alias `m`), whichever side drives.
    let mut conditions: Vec<String> = Vec::new();
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    // The time range is checked on `received_at` itself (the clock may have
    // stepped back, so ids need not grow with it). Whether its index drives
    // the walk depends on how many rows the range roughly holds.
    let narrow_range = (f.from.is_some() || f.to.is_some()) && range_is_narrow(c, f.from, f.to)?;
    let at = if narrow_range {
        "m.received_at"
    } else {
        "+m.received_at"
    };
    if let Some(from) = f.from {
        conditions.push(format!("{at} >= ?"));
        args.push(from.into());
    }
    if let Some(to) = f.to {
        conditions.push(format!("{at} < ?"));
        args.push(to.into());
    }
    if let Some(t) = &f.message_type {
        conditions.push("m.message_type = ?".into());
        args.push(t.clone().into());
    }
    if let Some(t) = &f.control_id {
        conditions.push(indexed_or_tail("control_id"));
        args.extend(std::iter::repeat_n(t.clone().into(), 3));
    }
    if let Some(t) = &f.patient_id {
        conditions.push(indexed_or_tail("patient_id"));
        args.extend(std::iter::repeat_n(t.clone().into(), 3));
    }
    if let Some(k) = &f.key {
        conditions.push("m.id IN (SELECT k.message_id FROM search_key k WHERE k.value = ?)".into());
        args.push(k.clone().into());
    }
    if let Some(t) = &f.text {
        conditions.push("instr(lower(CAST(m.payload AS TEXT)), lower(?)) > 0".into());
        args.push(t.clone().into());
    }
    // One condition per outbox state the status covers, each an equality on
    // `outbox(state, message_id)`: walked one by one and merged, the ids come
    // newest first without sorting every row in the status.
    let dead = format!(
        "o.state = {DEAD} AND NOT EXISTS (SELECT 1 FROM outbox_discard d WHERE d.outbox_id = o.id)"
    );
    let failing = format!("o.state = {QUEUED} AND o.attempts > 0");
    let status_parts: Option<Vec<String>> = match f.status.as_deref() {
        None => None,
        Some("queued") => Some(vec![
            format!("o.state = {QUEUED}"),
            format!("o.state = {LEASED}"),
        ]),
        Some("delivered") => Some(vec![format!("o.state = {DELIVERED}")]),
        Some("dead") => Some(vec![dead]),
        Some("failing") => Some(vec![failing]),
        Some("errors") => Some(vec![dead, failing]),
        Some(other) => return Err(JournalError::Storage(format!("unknown status `{other}`"))),
    };
    let status_rows = status_parts.as_ref().map(|parts| {
        let any: Vec<String> = parts.iter().map(|p| format!("({p})")).collect();
        format!("({})", any.join(" OR "))
    });
    let and: String = conditions.iter().map(|x| format!(" AND {x}")).collect();
    let raw_limit = limit + 1;
    // The status filter may yield one message several times (one per
    // matching outbox row): read a few pages' worth and de-duplicate.
    let fetch = if status_rows.is_some() {
        raw_limit * 4
    } else {
        raw_limit
    };
    let mut all_args: Vec<rusqlite::types::Value> = Vec::new();
    let sql = match (&f.endpoint, &status_rows) {
        // A time range alone walks `message(received_at)` newest first,
        // whatever the ids did: a page costs what it shows, however wide or
        // old the range. `before` is still a message id; its time is the
        // keyset.
        (None, None)
            if (f.from.is_some() || f.to.is_some())
                && f.message_type.is_none()
                && f.control_id.is_none()
                && f.patient_id.is_none()
                && f.key.is_none() =>
        {
            let before_at: Option<i64> = match before {
                Some(id) => c
                    .prepare_cached("SELECT received_at FROM message WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))
                    .optional()?,
                None => None,
            };
            let keyset = match before_at {
                Some(at) => {
                    all_args.push(at.into());
                    all_args.push(at.into());
                    all_args.push(upper.into());
                    "(m.received_at < ? OR (m.received_at = ? AND m.id < ?))"
                }
                None => {
                    all_args.push(upper.into());
                    "m.id < ?"
                }
            };
            all_args.extend(args);
            let and = and.replace("+m.received_at", "m.received_at");
            format!(
                "SELECT m.id FROM message m INDEXED BY message_received WHERE {keyset}{and}
                 ORDER BY m.received_at DESC, m.id DESC LIMIT {fetch}"
            )
        }
        (None, None) => {
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.id < ?{and} ORDER BY m.id DESC LIMIT {fetch}"
            )
        }
        // A patient or a control id holds few messages: walk those newest
        // first and keep the ones with a row in the status.
        (None, Some(rows))
            if f.patient_id.is_some() || f.control_id.is_some() || f.key.is_some() =>
        {
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.id < ?{and}
                 AND EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND {rows})
                 ORDER BY m.id DESC LIMIT {fetch}"
            )
        }
        (None, Some(_)) => {
            let walks: Vec<String> = status_parts
                .iter()
                .flatten()
                .map(|part| {
                    all_args.push(upper.into());
                    all_args.extend(args.iter().cloned());
                    format!(
                        "SELECT o.message_id FROM outbox o JOIN message m ON m.id = o.message_id
                         WHERE o.message_id < ? AND {part}{and}"
                    )
                })
                .collect();
            format!("{} ORDER BY 1 DESC LIMIT {fetch}", walks.join(" UNION "))
        }
        // An endpoint is the message's source or one of its destinations:
        // two walks newest first (by source on `message`, by destination on
        // `outbox(destination, message_id)`), merged. With a status, the
        // destination's own row must be in it; for the source, any row.
        (Some(e), rows) => {
            let from_source = rows
                .as_ref()
                .map(|r| {
                    format!(
                        " AND EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND {r})"
                    )
                })
                .unwrap_or_default();
            let to_destination = rows
                .as_ref()
                .map(|r| format!(" AND {r}"))
                .unwrap_or_default();
            all_args.push(e.clone().into());
            all_args.push(upper.into());
            all_args.extend(args.iter().cloned());
            all_args.push(e.clone().into());
            all_args.push(upper.into());
            all_args.extend(args);
            format!(
                "SELECT m.id FROM message m WHERE m.source = ? AND m.id < ?{and}{from_source}
                 UNION
                 SELECT o.message_id FROM outbox o JOIN message m ON m.id = o.message_id
                 WHERE o.destination = ? AND o.message_id < ?{and}{to_destination}
                 ORDER BY 1 DESC LIMIT {fetch}"
            )
        }
    };
    Ok(PageQuery {
        sql,
        args: all_args,
        fetch,
    })
}

/// Rows a time range may hold before its index stops being the cheaper
/// walk (it needs a sort by id; the walk by id does not).
const NARROW_RANGE: i64 = 50_000;

/// Whether `[from, to)` holds few messages, estimated from the ids at its
/// ends in `received_at` order. The estimate is exact while ids grow with
/// time; after a clock step only the choice of walk can suffer, never the
/// answer, which always checks `received_at` itself.
fn range_is_narrow(
    c: &Connection,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<bool, JournalError> {
    let mut first = c.prepare_cached(
        "SELECT id FROM message WHERE received_at >= ?1 ORDER BY received_at, id LIMIT 1",
    )?;
    let Some(start) = first
        .query_row([from.unwrap_or(i64::MIN)], |r| r.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(true); // nothing at or after `from`
    };
    let end = match to {
        Some(t) => first.query_row([t], |r| r.get::<_, i64>(0)).optional()?,
        None => None,
    };
    let end = match end {
        Some(e) => e,
        None => c.query_row("SELECT coalesce(max(id), 0) FROM message", [], |r| r.get(0))?,
    };
    Ok((end - start).abs() <= NARROW_RANGE)
}

/// The name the admin page uses for an outbox state.
pub fn state_name(state: i64, attempts: u32, discarded: bool) -> &'static str {
    match state {
        QUEUED if attempts > 0 => "failing",
        QUEUED => "queued",
        LEASED => "in-flight",
        DELIVERED => "delivered",
        _ if discarded => "discarded",
        _ => "dead",
    }
}

fn worst<'a>(states: impl Iterator<Item = &'a str>) -> &'static str {
    let rank = |s: &str| match s {
        "dead" => 6,
        "failing" => 5,
        "in-flight" => 4,
        "queued" => 3,
        "discarded" => 2,
        "captured" => 1,
        _ => 0,
    };
    let names = [
        "delivered",
        "captured",
        "discarded",
        "queued",
        "in-flight",
        "failing",
        "dead",
    ];
    names[states.map(rank).max().unwrap_or(0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite plans for the page query of `f`, one line per step.
    fn plan(f: &MessageFilter) -> String {
        let mut c = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut c).unwrap();
        let q = page_query(&c, f, Some(1_000_000), 50).unwrap();
        let mut s = c.prepare(&format!("EXPLAIN QUERY PLAN {}", q.sql)).unwrap();
        let steps: Vec<String> = s
            .query_map(params_from_iter(q.args.iter()), |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        steps.join("\n")
    }

    #[test]
    fn every_log_page_filter_walks_an_index_newest_first_instead_of_sorting_its_matches() {
        let filters = [
            MessageFilter::default(),
            MessageFilter {
                endpoint: Some("lab".into()),
                ..Default::default()
            },
            MessageFilter {
                endpoint: Some("lab".into()),
                status: Some("dead".into()),
                ..Default::default()
            },
            MessageFilter {
                status: Some("errors".into()),
                ..Default::default()
            },
            MessageFilter {
                status: Some("queued".into()),
                ..Default::default()
            },
            MessageFilter {
                message_type: Some("ORU^R01".into()),
                status: Some("dead".into()),
                ..Default::default()
            },
            MessageFilter {
                control_id: Some("C1".into()),
                status: Some("delivered".into()),
                ..Default::default()
            },
            MessageFilter {
                patient_id: Some("P1".into()),
                status: Some("queued".into()),
                ..Default::default()
            },
            MessageFilter {
                message_type: Some("ORU^R01".into()),
                ..Default::default()
            },
            MessageFilter {
                control_id: Some("C1".into()),
                ..Default::default()
            },
            MessageFilter {
                from: Some(0),
                to: Some(3_600_000),
                ..Default::default()
            },
            MessageFilter {
                key: Some("ACC-1".into()),
                ..Default::default()
            },
            MessageFilter {
                key: Some("ACC-1".into()),
                status: Some("dead".into()),
                ..Default::default()
            },
            MessageFilter {
                key: Some("ACC-1".into()),
                endpoint: Some("lab".into()),
                ..Default::default()
            },
            MessageFilter {
                text: Some("glucose".into()),
                from: Some(0),
                to: Some(3_600_000),
                ..Default::default()
            },
            MessageFilter {
                text: Some("glucose".into()),
                from: Some(0),
                to: Some(3_600_000),
                endpoint: Some("lab".into()),
                ..Default::default()
            },
        ];
        for f in filters {
            let plan = plan(&f);
            // A sort needs every match first: on a million-message journal
            // that is a whole source or status, not one page.
            assert!(!plan.contains("TEMP B-TREE"), "{f:?} sorts:\n{plan}");
        }
    }
}
