//! Orders for ASTM analyzers, and ASTM transmissions that never became a
//! message.
//!
//! # Orders
//!
//! An order (table `astm_order`) names the analyzer it is for (the ASTM
//! endpoint's name), a specimen id, the patient and the tests. It is kept
//! here so that host queries are answered from the local copy even while the
//! uplink is down. States: `pending` → `sent` (only after the analyzer
//! acknowledged the last frame of the message that carried it) or
//! `cancelled`. A host query is answered with every order for the asked
//! specimens that is not cancelled, sent or not: an analyzer asks again when
//! it lost the answer. Broadcast download sends only `pending` orders.
//!
//! Orders come from upstream through [`Journal::add_order`] (the CLI's
//! `order add` uses [`add_order_at`], which also works while a gateway has
//! the journal open, through [`super::external`]).
//!
//! # Analyzer identity
//!
//! An analyzer is its endpoint plus the sender name of its `H` record
//! (H-5, first component). Several analyzers may share one endpoint (a TCP
//! server they all connect to), so an order may also name a `sender`: it is
//! then given only to a line whose analyzer called itself that (exact,
//! case-sensitive match). An order without a sender goes to any analyzer on
//! its endpoint. Stored ASTM messages keep their sender name beside them
//! (table `astm_sender`, written in the message's own transaction by
//! [`Journal::ingest_astm`]).
//!
//! # Incomplete transmissions
//!
//! Records that arrived but never formed an H..L message (the analyzer
//! stopped before the L record, the receive timer ran out, the message was
//! too large) are kept in `astm_incomplete` for inspection. They are not
//! messages: no route sees them, no transform turns them into results.
//!
//! # Retention
//!
//! Incomplete transmissions, and orders that were sent (or cancelled), go
//! with the retention period like delivered messages; pending orders stay
//! until they are sent.

use super::audit::insert_audit;
use super::ingest::{Destination, IngestError, Receipt};
use super::{external, lock_exclusively, open_reader, Journal, JournalError, JournalOptions};
use ecko_message::Envelope;
use rusqlite::{params, Connection};
use std::path::Path;

/// An order as it reaches the journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewOrder {
    /// The ASTM endpoint (analyzer) it is for.
    pub analyzer: String,
    pub specimen_id: String,
    pub patient_id: String,
    /// Name components (family, given, ...).
    pub patient_name: Vec<String>,
    /// Local test codes as the analyzer knows them.
    pub tests: Vec<String>,
    /// `R` routine, `S` stat.
    pub priority: String,
    /// The analyzer's H-5 sender name when several share the endpoint;
    /// `None`: any analyzer on the endpoint.
    pub sender: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Pending,
    Sent,
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "pending",
            OrderState::Sent => "sent",
            OrderState::Cancelled => "cancelled",
        }
    }
    pub(super) fn from_db(s: &str) -> Self {
        match s {
            "sent" => OrderState::Sent,
            "cancelled" => OrderState::Cancelled,
            _ => OrderState::Pending,
        }
    }
}

/// A journalled order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    pub id: i64,
    pub analyzer: String,
    pub specimen_id: String,
    pub patient_id: String,
    pub patient_name: Vec<String>,
    pub tests: Vec<String>,
    pub priority: String,
    pub state: OrderState,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    /// How many times an analyzer acknowledged a message carrying it.
    pub send_count: u32,
    /// See [`NewOrder::sender`].
    pub sender: Option<String>,
}

/// Which specimens a host query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderSelection {
    /// Everything pending (`ALL`).
    AllPending,
    /// These specimen ids.
    Specimens(Vec<String>),
    /// Specimen ids from `.0` to `.1` inclusive, compared as text.
    Range(String, String),
}

/// A transmission kept for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompleteTransmission {
    pub id: i64,
    pub endpoint: String,
    pub at: i64,
    pub reason: String,
    /// Complete records, each followed by CR.
    pub records: Vec<u8>,
    /// A record whose last frame never came.
    pub partial: Vec<u8>,
}

const ORDER_COLUMNS: &str = "id, analyzer, specimen_id, patient_id, patient_name, tests, priority, state, created_at, sent_at, send_count, sender";

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredOrder> {
    let name: String = r.get(4)?;
    let tests: String = r.get(5)?;
    let state: String = r.get(7)?;
    Ok(StoredOrder {
        id: r.get(0)?,
        analyzer: r.get(1)?,
        specimen_id: r.get(2)?,
        patient_id: r.get(3)?,
        patient_name: split_list(&name),
        tests: split_list(&tests),
        priority: r.get(6)?,
        state: OrderState::from_db(&state),
        created_at: r.get(8)?,
        sent_at: r.get(9)?,
        send_count: r.get::<_, i64>(10)?.max(0) as u32,
        sender: r.get(11)?,
    })
}

/// Lists are stored one item per line: test codes and name parts never
/// contain a line break (the CLI and the API refuse them).
fn join_list(items: &[String]) -> String {
    items.join("\n")
}

fn split_list(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_string).collect()
    }
}

/// Why an order is refused before it reaches the table.
fn check(order: &NewOrder) -> Result<(), JournalError> {
    problem(order).map_or(Ok(()), |what| {
        Err(JournalError::Storage(format!("invalid order: {what}")))
    })
}

/// What makes `order` unfit for the table, if anything.
pub fn problem(order: &NewOrder) -> Option<&'static str> {
    check_fields(order).err()
}

fn check_fields(order: &NewOrder) -> Result<(), &'static str> {
    let bad = Err;
    if order.analyzer.is_empty() || order.specimen_id.is_empty() {
        return bad("analyzer and specimen id are required");
    }
    if order.tests.is_empty() {
        return bad("at least one test is required");
    }
    let all = order.tests.iter().chain(&order.patient_name);
    if all.clone().any(|t| t.contains(['\n', '\r'])) || all.clone().any(String::is_empty) {
        return bad("test codes and name parts must be non-empty single lines");
    }
    if let Some(sender) = &order.sender {
        if sender.trim().is_empty() || sender.chars().any(char::is_control) {
            return bad("the sender name must be printable text");
        }
    }
    Ok(())
}

fn insert_order(conn: &Connection, now: i64, o: &NewOrder) -> Result<i64, JournalError> {
    insert_order_ref(conn, now, o, None)
}

/// [`insert_order`] with the hub's reference of the order (see
/// `hub_orders`).
pub(super) fn insert_order_ref(
    conn: &Connection,
    now: i64,
    o: &NewOrder,
    hub_ref: Option<&str>,
) -> Result<i64, JournalError> {
    check(o)?;
    let priority = if o.priority.is_empty() {
        "R"
    } else {
        &o.priority
    };
    conn.prepare_cached(
        "INSERT INTO astm_order (analyzer, specimen_id, patient_id, patient_name, tests, priority, state, created_at, sender, hub_ref)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9)",
    )?
    .execute(params![
        o.analyzer,
        o.specimen_id,
        o.patient_id,
        join_list(&o.patient_name),
        join_list(&o.tests),
        priority,
        now,
        o.sender.as_deref().map(str::trim),
        hub_ref
    ])?;
    Ok(conn.last_insert_rowid())
}

/// [`insert_order`] with the audit record of the person who added it, in
/// the same transaction: an order nobody can account for is not kept.
pub(super) fn insert_order_audited(
    conn: &Connection,
    now: i64,
    o: &NewOrder,
    actor: &str,
) -> Result<i64, JournalError> {
    let id = insert_order(conn, now, o)?;
    insert_audit(
        conn,
        now,
        actor,
        "order.add",
        Some(&o.analyzer),
        Some(&format!(
            "order {id}: specimen {}, tests {}",
            o.specimen_id,
            o.tests.join(", ")
        )),
    )?;
    Ok(id)
}

/// Orders of `analyzer` for a line whose analyzer called itself `sender`
/// (`None`: not known yet, so only orders for any analyzer qualify).
fn select_orders(
    conn: &Connection,
    analyzer: &str,
    sender: Option<&str>,
    selection: &OrderSelection,
) -> Result<Vec<StoredOrder>, JournalError> {
    const FOR_LINE: &str = "analyzer = ?1 AND (sender IS NULL OR sender = ?2)";
    let mut out = Vec::new();
    match selection {
        OrderSelection::AllPending => {
            let mut s = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM astm_order WHERE {FOR_LINE} AND state = 'pending' ORDER BY id"
            ))?;
            for row in s.query_map(params![analyzer, sender], order_row)? {
                out.push(row?);
            }
        }
        OrderSelection::Specimens(ids) => {
            let mut s = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM astm_order WHERE {FOR_LINE} AND specimen_id = ?3 AND state != 'cancelled' ORDER BY id"
            ))?;
            for id in ids {
                for row in s.query_map(params![analyzer, sender, id], order_row)? {
                    out.push(row?);
                }
            }
        }
        OrderSelection::Range(from, to) => {
            let mut s = conn.prepare_cached(&format!(
                "SELECT {ORDER_COLUMNS} FROM astm_order WHERE {FOR_LINE} AND specimen_id BETWEEN ?3 AND ?4 AND state != 'cancelled' ORDER BY id"
            ))?;
            for row in s.query_map(params![analyzer, sender, from, to], order_row)? {
                out.push(row?);
            }
        }
    }
    Ok(out)
}

fn all_orders(conn: &Connection, analyzer: Option<&str>) -> Result<Vec<StoredOrder>, JournalError> {
    let mut s = conn.prepare_cached(&format!(
        "SELECT {ORDER_COLUMNS} FROM astm_order WHERE ?1 IS NULL OR analyzer = ?1 ORDER BY id"
    ))?;
    let rows = s.query_map(params![analyzer], order_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn incomplete(
    conn: &Connection,
    endpoint: &str,
) -> Result<Vec<IncompleteTransmission>, JournalError> {
    let mut s = conn.prepare_cached(
        "SELECT id, endpoint, at, reason, records, partial FROM astm_incomplete WHERE endpoint = ?1 ORDER BY id",
    )?;
    let rows = s.query_map(params![endpoint], |r| {
        Ok(IncompleteTransmission {
            id: r.get(0)?,
            endpoint: r.get(1)?,
            at: r.get(2)?,
            reason: r.get(3)?,
            records: r.get(4)?,
            partial: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Journal {
    /// Stores an order for an analyzer; resolves after the commit.
    pub async fn add_order(&self, order: NewOrder) -> Result<i64, JournalError> {
        self.write(move |conn, cx| insert_order(conn, cx.now, &order))
            .await
    }

    /// Orders a host query asks for (see [`OrderSelection`]), for the
    /// analyzer `sender` on endpoint `analyzer` (see the module notes on
    /// identity).
    pub async fn orders_for(
        &self,
        analyzer: &str,
        sender: Option<&str>,
        selection: OrderSelection,
    ) -> Result<Vec<StoredOrder>, JournalError> {
        let analyzer = analyzer.to_string();
        let sender = sender.map(str::to_string);
        self.read(move |conn| select_orders(conn, &analyzer, sender.as_deref(), &selection))
            .await
    }

    /// Orders not yet sent to analyzer `sender` on endpoint `analyzer`,
    /// oldest first.
    pub async fn pending_orders(
        &self,
        analyzer: &str,
        sender: Option<&str>,
    ) -> Result<Vec<StoredOrder>, JournalError> {
        self.orders_for(analyzer, sender, OrderSelection::AllPending)
            .await
    }

    /// Like [`Journal::ingest`] for an ASTM message, keeping the analyzer's
    /// sender name (H-5) beside it in the same transaction. A duplicate
    /// keeps the sender name of its first copy.
    pub async fn ingest_astm(
        &self,
        message: Envelope,
        destinations: Vec<Destination>,
        sender: Option<String>,
    ) -> Result<Receipt, IngestError> {
        let sender = sender.filter(|s| !s.trim().is_empty());
        self.ingest_then(message, destinations, move |conn, receipt| {
            if let Some(sender) = &sender {
                conn.prepare_cached("INSERT INTO astm_sender (message_id, sender) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![receipt.message_id, sender.trim()]))
                    .map_err(|e| IngestError::Journal(JournalError::from(e)))?;
            }
            Ok(())
        })
        .await
    }

    /// The ASTM sender name kept with a message, if any.
    pub async fn astm_sender(&self, message_id: i64) -> Result<Option<String>, JournalError> {
        self.read(move |conn| sender_of(conn, message_id)).await
    }

    /// Every order (of one analyzer, or all), oldest first.
    pub async fn orders(&self, analyzer: Option<&str>) -> Result<Vec<StoredOrder>, JournalError> {
        let analyzer = analyzer.map(str::to_string);
        self.read(move |conn| all_orders(conn, analyzer.as_deref()))
            .await
    }

    /// Records that the analyzer acknowledged the last frame of a message
    /// carrying these orders.
    pub async fn mark_orders_sent(&self, ids: Vec<i64>) -> Result<(), JournalError> {
        self.write(move |conn, cx| {
            let mut s = conn.prepare_cached(
                "UPDATE astm_order SET state = CASE state WHEN 'cancelled' THEN state ELSE 'sent' END,
                 sent_at = ?2, send_count = send_count + 1 WHERE id = ?1",
            )?;
            for id in &ids {
                s.execute(params![id, cx.now])?;
            }
            Ok(())
        })
        .await
    }

    /// Keeps records that never became a message, for inspection.
    pub async fn record_incomplete(
        &self,
        endpoint: &str,
        reason: &str,
        records: &[Vec<u8>],
        partial: Vec<u8>,
    ) -> Result<i64, JournalError> {
        let endpoint = endpoint.to_string();
        let reason = reason.to_string();
        let mut text = Vec::new();
        for r in records {
            text.extend_from_slice(r);
            text.push(b'\r');
        }
        self.write(move |conn, cx| {
            conn.prepare_cached(
                "INSERT INTO astm_incomplete (endpoint, at, reason, records, partial) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![endpoint, cx.now, reason, text, partial])?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    /// Incomplete transmissions kept for an endpoint, oldest first.
    pub async fn incomplete_transmissions(
        &self,
        endpoint: &str,
    ) -> Result<Vec<IncompleteTransmission>, JournalError> {
        let endpoint = endpoint.to_string();
        self.read(move |conn| incomplete(conn, &endpoint)).await
    }

    /// Whether the journal would take a new message now (not over its size
    /// cap, enough free disk). Sources that had to refuse a sender ask this
    /// to know when to accept again.
    pub async fn accepts_messages(&self) -> Result<bool, JournalError> {
        self.write(|_, cx| Ok(cx.refusal.is_none())).await
    }
}

fn sender_of(conn: &Connection, message_id: i64) -> Result<Option<String>, JournalError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .prepare_cached("SELECT sender FROM astm_sender WHERE message_id = ?1")?
        .query_row([message_id], |r| r.get(0))
        .optional()?)
}

/// The ASTM sender name kept with a message in the journal file at `path`.
pub fn read_astm_sender(path: &Path, message_id: i64) -> Result<Option<String>, JournalError> {
    sender_of(&open_reader(path)?, message_id)
}

/// Every order (of one analyzer, or all) in the journal file at `path`,
/// read without a running gateway (the CLI, tests).
pub fn read_orders(path: &Path, analyzer: Option<&str>) -> Result<Vec<StoredOrder>, JournalError> {
    all_orders(&open_reader(path)?, analyzer)
}

/// Incomplete transmissions of an endpoint in the journal file at `path`.
pub fn read_incomplete(
    path: &Path,
    endpoint: &str,
) -> Result<Vec<IncompleteTransmission>, JournalError> {
    incomplete(&open_reader(path)?, endpoint)
}

/// Adds an order to the journal file at `path`, whether or not a gateway
/// has it open: without a gateway the journal is opened (and created or
/// migrated) as usual; with one, the order is written in a transaction of
/// its own beside the gateway's writer (SQLite serialises the two), which
/// picks it up on its next look for orders. Audited as `order.add` by
/// `actor`.
pub async fn add_order_at(path: &Path, order: NewOrder, actor: &str) -> Result<i64, JournalError> {
    check(&order)?;
    let free = path.exists().then(|| lock_exclusively(path));
    match free {
        Some(Err(_)) => {
            let path = path.to_path_buf();
            let actor = actor.to_string();
            tokio::task::spawn_blocking(move || {
                external::change(&path, |tx| {
                    let now = jiff::Timestamp::now().as_millisecond();
                    insert_order_audited(tx, now, &order, &actor)
                })
            })
            .await
            .map_err(|e| JournalError::Storage(format!("order task failed: {e}")))?
        }
        free => {
            drop(free);
            let journal = Journal::open(JournalOptions::new(path))?;
            let actor = actor.to_string();
            let id = journal
                .write(move |conn, cx| insert_order_audited(conn, cx.now, &order, &actor))
                .await;
            journal.close().await;
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(analyzer: &str, specimen: &str) -> NewOrder {
        NewOrder {
            analyzer: analyzer.into(),
            specimen_id: specimen.into(),
            patient_id: "P1".into(),
            patient_name: vec!["Doe".into(), "Jane".into()],
            tests: vec!["GLU".into(), "NA".into()],
            priority: String::new(),
            sender: None,
        }
    }

    #[tokio::test]
    async fn orders_are_pending_until_marked_sent_and_queries_still_find_sent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let a = j.add_order(order("chem", "S1")).await.unwrap();
        j.add_order(order("chem", "S3")).await.unwrap();
        j.add_order(order("haem", "S1")).await.unwrap();
        let pending = j.pending_orders("chem", None).await.unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].tests, ["GLU", "NA"]);
        assert_eq!(pending[0].patient_name, ["Doe", "Jane"]);
        assert_eq!(pending[0].priority, "R");
        j.mark_orders_sent(vec![a]).await.unwrap();
        assert_eq!(j.pending_orders("chem", None).await.unwrap().len(), 1);
        let asked = j
            .orders_for("chem", None, OrderSelection::Specimens(vec!["S1".into()]))
            .await
            .unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].state, OrderState::Sent);
        assert_eq!(asked[0].send_count, 1);
        let range = j
            .orders_for(
                "chem",
                None,
                OrderSelection::Range("S0".into(), "S9".into()),
            )
            .await
            .unwrap();
        assert_eq!(range.len(), 2);
        j.close().await;
    }

    #[tokio::test]
    async fn an_order_can_be_added_while_a_gateway_holds_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let id = add_order_at(&path, order("chem", "S1"), "cli:ann")
            .await
            .unwrap();
        let seen = j.pending_orders("chem", None).await.unwrap();
        assert_eq!(seen.iter().map(|o| o.id).collect::<Vec<_>>(), [id]);
        j.close().await;
        // And without one, the journal is opened (and created) for it.
        let other = dir.path().join("new.db");
        add_order_at(&other, order("chem", "S2"), "cli:ann")
            .await
            .unwrap();
        assert_eq!(read_orders(&other, Some("chem")).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_added_order_is_audited_with_who_added_it_with_or_without_a_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let beside = add_order_at(&path, order("chem", "S1"), "cli:ann")
            .await
            .unwrap();
        let audit = j.audit_log(None, 10).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].actor.as_str(), audit[0].action.as_str()),
            ("cli:ann", "order.add")
        );
        assert_eq!(audit[0].target.as_deref(), Some("chem"));
        assert_eq!(
            audit[0].detail.as_deref(),
            Some(format!("order {beside}: specimen S1, tests GLU, NA").as_str())
        );
        j.close().await;

        let alone = add_order_at(&path, order("chem", "S2"), "otto")
            .await
            .unwrap();
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let audit = j.audit_log(None, 10).await.unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0].actor, "otto");
        assert!(audit[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with(&format!("order {alone}:")));
        j.close().await;
    }

    #[tokio::test]
    async fn an_order_without_tests_or_with_a_line_break_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let mut o = order("chem", "S1");
        o.tests.clear();
        assert!(j.add_order(o).await.is_err());
        let mut o = order("chem", "S1");
        o.tests = vec!["GL\nU".into()];
        assert!(j.add_order(o).await.is_err());
        assert!(j.orders(None).await.unwrap().is_empty());
        j.close().await;
    }

    #[tokio::test]
    async fn incomplete_transmissions_are_kept_per_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        j.record_incomplete(
            "chem",
            "ReceiveTimeout",
            &[b"H|\\^&".to_vec()],
            b"P|1".to_vec(),
        )
        .await
        .unwrap();
        let kept = j.incomplete_transmissions("chem").await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].records, b"H|\\^&\r");
        assert_eq!(kept[0].partial, b"P|1");
        assert!(j.incomplete_transmissions("haem").await.unwrap().is_empty());
        assert_eq!(read_incomplete(&path, "chem").unwrap().len(), 1);
        assert!(j.accepts_messages().await.unwrap());
        j.close().await;
    }

    #[tokio::test]
    async fn an_order_for_one_sender_is_given_only_to_that_analyzer_on_a_shared_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let for_a = NewOrder {
            sender: Some("ANALYZER-A".into()),
            ..order("shared", "SA")
        };
        let for_b = NewOrder {
            sender: Some("ANALYZER-B".into()),
            ..order("shared", "SB")
        };
        let a = j.add_order(for_a).await.unwrap();
        let b = j.add_order(for_b).await.unwrap();
        let any = j.add_order(order("shared", "SX")).await.unwrap();
        let ids = |orders: Vec<StoredOrder>| orders.iter().map(|o| o.id).collect::<Vec<_>>();
        let pending = |sender: Option<&'static str>| {
            let j = j.clone();
            async move { ids(j.pending_orders("shared", sender).await.unwrap()) }
        };
        assert_eq!(pending(Some("ANALYZER-A")).await, [a, any]);
        assert_eq!(pending(Some("ANALYZER-B")).await, [b, any]);
        // A line whose analyzer has not said who it is gets only the orders
        // meant for any analyzer.
        assert_eq!(pending(None).await, [any]);
        let asked = j
            .orders_for(
                "shared",
                Some("ANALYZER-B"),
                OrderSelection::Specimens(vec!["SA".into(), "SB".into()]),
            )
            .await
            .unwrap();
        assert_eq!(ids(asked), [b]);
        let all = j.orders(Some("shared")).await.unwrap();
        assert_eq!(all[0].sender.as_deref(), Some("ANALYZER-A"));
        assert_eq!(all[2].sender, None);
        j.close().await;
    }

    #[tokio::test]
    async fn an_astm_message_keeps_its_sender_name_and_loses_it_with_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(JournalOptions::new(&path)).unwrap();
        let message = |payload: &[u8]| Envelope {
            source: "chem".into(),
            dedup_key: Some(hex::encode(payload)),
            message_type: "ASTM".into(),
            content_type: "application/x-astm".into(),
            payload: payload.to_vec(),
            ..Envelope::default()
        };
        let to = || {
            vec![Destination {
                endpoint: "archive".into(),
                transform: "none".into(),
                lane: String::new(),
                reply_to: None,
            }]
        };
        let first = j
            .ingest_astm(message(b"one"), to(), Some("cobas c311".into()))
            .await
            .unwrap();
        let again = j
            .ingest_astm(message(b"one"), to(), Some("renamed".into()))
            .await
            .unwrap();
        assert!(again.duplicate);
        let unnamed = j.ingest_astm(message(b"two"), to(), None).await.unwrap();
        assert_eq!(
            j.astm_sender(first.message_id).await.unwrap().as_deref(),
            Some("cobas c311")
        );
        assert_eq!(j.astm_sender(unnamed.message_id).await.unwrap(), None);
        assert_eq!(
            read_astm_sender(&path, first.message_id)
                .unwrap()
                .as_deref(),
            Some("cobas c311")
        );
        // Retention deletes messages; the sender row goes with its message.
        let id = first.message_id;
        j.write(move |conn, _| {
            conn.execute("DELETE FROM event WHERE message_id = ?1", [id])?;
            conn.execute("DELETE FROM outbox WHERE message_id = ?1", [id])?;
            conn.execute("DELETE FROM message WHERE id = ?1", [id])?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(j.astm_sender(id).await.unwrap(), None);
        j.close().await;
    }
}
