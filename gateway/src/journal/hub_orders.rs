//! Orders that came from the hub over the uplink (`hub/orders` reads them).
//!
//! Each is applied in one transaction with its audit record and the hub
//! event that tells the hub what became of it (`order.accepted`,
//! `order.cancelled`, `order.refused`), so the uplink acknowledges the
//! broker's delivery only once all three are committed, and the hub hears
//! the outcome at least once.
//!
//! The hub's reference (`hub_ref`) is unique per analyzer: an order
//! delivered twice (QoS 1 after a lost PUBACK) finds its first copy and is
//! answered as a duplicate; a cancellation finds the order it cancels. An
//! order once taken is not changed by a second one with its reference: the
//! hub cancels it and sends a new one under a new reference.

use super::audit::insert_audit;
use super::hub_events::insert as insert_event;
use super::orders::{insert_order_ref, OrderState};
use super::{Journal, JournalError, NewOrder};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

/// What the hub asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubOrder {
    /// Keep this order, known to the hub as `hub_ref`.
    Place { order: NewOrder, hub_ref: String },
    /// The order `hub_ref` of `analyzer` is revoked.
    Cancel { analyzer: String, hub_ref: String },
}

/// What became of it; each is also the hub event journalled with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubOrderOutcome {
    /// A new order, pending for its analyzer.
    Placed { order_id: i64 },
    /// The order was taken before (the same delivery again, or the same
    /// reference); nothing changed.
    Duplicate { order_id: i64 },
    /// No longer served; `was_sent`: an analyzer had acknowledged a message
    /// carrying it already.
    Cancelled { order_id: i64, was_sent: bool },
    /// Nothing with that reference to cancel.
    Unknown,
}

fn find(
    conn: &Connection,
    analyzer: &str,
    hub_ref: &str,
) -> Result<Option<(i64, OrderState)>, JournalError> {
    Ok(conn
        .prepare_cached("SELECT id, state FROM astm_order WHERE analyzer = ?1 AND hub_ref = ?2")?
        .query_row(params![analyzer, hub_ref], |r| {
            let state: String = r.get(1)?;
            Ok((r.get(0)?, OrderState::from_db(&state)))
        })
        .optional()?)
}

fn apply(
    conn: &Connection,
    now: i64,
    actor: &str,
    message_id: &str,
    change: &HubOrder,
) -> Result<HubOrderOutcome, JournalError> {
    let (analyzer, hub_ref) = match change {
        HubOrder::Place { order, hub_ref } => (order.analyzer.as_str(), hub_ref.as_str()),
        HubOrder::Cancel { analyzer, hub_ref } => (analyzer.as_str(), hub_ref.as_str()),
    };
    let existing = find(conn, analyzer, hub_ref)?;
    let outcome = match (change, existing) {
        (HubOrder::Place { .. }, Some((order_id, _))) => HubOrderOutcome::Duplicate { order_id },
        (HubOrder::Place { order, hub_ref }, None) => {
            let order_id = insert_order_ref(conn, now, order, Some(hub_ref))?;
            insert_audit(
                conn,
                now,
                actor,
                "order.add",
                Some(&order.analyzer),
                Some(&format!(
                    "order {order_id} (hub {hub_ref}): specimen {}, tests {}",
                    order.specimen_id,
                    order.tests.join(", ")
                )),
            )?;
            HubOrderOutcome::Placed { order_id }
        }
        (HubOrder::Cancel { .. }, None) => HubOrderOutcome::Unknown,
        (HubOrder::Cancel { .. }, Some((order_id, OrderState::Cancelled))) => {
            HubOrderOutcome::Duplicate { order_id }
        }
        (HubOrder::Cancel { analyzer, hub_ref }, Some((order_id, state))) => {
            conn.prepare_cached("UPDATE astm_order SET state = 'cancelled' WHERE id = ?1")?
                .execute([order_id])?;
            insert_audit(
                conn,
                now,
                actor,
                "order.cancel",
                Some(analyzer),
                Some(&format!("order {order_id} (hub {hub_ref})")),
            )?;
            HubOrderOutcome::Cancelled {
                order_id,
                was_sent: state == OrderState::Sent,
            }
        }
    };
    let (kind, detail) = match outcome {
        HubOrderOutcome::Placed { order_id } => (
            "order.accepted",
            json!({"message_id": message_id, "ref": hub_ref, "order_id": order_id, "duplicate": false}),
        ),
        HubOrderOutcome::Duplicate { order_id } => (
            if matches!(change, HubOrder::Cancel { .. }) {
                "order.cancelled"
            } else {
                "order.accepted"
            },
            json!({"message_id": message_id, "ref": hub_ref, "order_id": order_id, "duplicate": true}),
        ),
        HubOrderOutcome::Cancelled { order_id, was_sent } => (
            "order.cancelled",
            json!({"message_id": message_id, "ref": hub_ref, "order_id": order_id, "duplicate": false, "was_sent": was_sent}),
        ),
        HubOrderOutcome::Unknown => (
            "order.refused",
            json!({"message_id": message_id, "ref": hub_ref,
                   "reason": format!("no order `{hub_ref}` of `{analyzer}` to cancel")}),
        ),
    };
    insert_event(conn, now, kind, Some(analyzer), Some(&detail.to_string()))?;
    Ok(outcome)
}

impl Journal {
    /// Applies the hub's order message `message_id` as `actor`, with its
    /// audit record and its hub event, in one transaction.
    pub async fn apply_hub_order(
        &self,
        actor: &str,
        message_id: &str,
        change: HubOrder,
    ) -> Result<HubOrderOutcome, JournalError> {
        let actor = actor.to_string();
        let message_id = message_id.to_string();
        self.write(move |conn, cx| apply(conn, cx.now, &actor, &message_id, &change))
            .await
    }

    /// Journals that the hub's order message `message_id` (`None` when it
    /// could not be read that far) was refused, and why; about analyzer
    /// `analyzer` when known.
    pub async fn refuse_hub_order(
        &self,
        message_id: Option<&str>,
        analyzer: Option<&str>,
        reason: &str,
    ) -> Result<i64, JournalError> {
        let detail = json!({"message_id": message_id, "reason": reason}).to_string();
        self.record_hub_event("order.refused", analyzer, Some(&detail))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{JournalOptions, OrderSelection};

    fn order(specimen: &str) -> NewOrder {
        NewOrder {
            analyzer: "chem".into(),
            specimen_id: specimen.into(),
            patient_id: "P1".into(),
            patient_name: vec!["Doe".into()],
            tests: vec!["GLU".into()],
            priority: "R".into(),
            sender: None,
        }
    }

    fn place(specimen: &str, hub_ref: &str) -> HubOrder {
        HubOrder::Place {
            order: order(specimen),
            hub_ref: hub_ref.into(),
        }
    }

    #[tokio::test]
    async fn a_hub_order_delivered_twice_is_one_order_and_its_cancellation_stops_it_being_served() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        let first = j
            .apply_hub_order("hub", "m-1", place("S1", "SR-1"))
            .await
            .unwrap();
        let HubOrderOutcome::Placed { order_id } = first else {
            panic!("{first:?}")
        };
        let again = j
            .apply_hub_order("hub", "m-1", place("S1", "SR-1"))
            .await
            .unwrap();
        assert_eq!(again, HubOrderOutcome::Duplicate { order_id });
        assert_eq!(j.orders(Some("chem")).await.unwrap().len(), 1);
        let served = |j: Journal| async move {
            j.orders_for("chem", None, OrderSelection::Specimens(vec!["S1".into()]))
                .await
                .unwrap()
                .len()
        };
        assert_eq!(served(j.clone()).await, 1);

        let cancel = HubOrder::Cancel {
            analyzer: "chem".into(),
            hub_ref: "SR-1".into(),
        };
        let cancelled = j
            .apply_hub_order("hub", "m-2", cancel.clone())
            .await
            .unwrap();
        assert_eq!(
            cancelled,
            HubOrderOutcome::Cancelled {
                order_id,
                was_sent: false
            }
        );
        assert_eq!(served(j.clone()).await, 0);
        assert_eq!(
            j.apply_hub_order("hub", "m-2", cancel).await.unwrap(),
            HubOrderOutcome::Duplicate { order_id }
        );
        let unknown = HubOrder::Cancel {
            analyzer: "chem".into(),
            hub_ref: "SR-9".into(),
        };
        assert_eq!(
            j.apply_hub_order("hub", "m-3", unknown).await.unwrap(),
            HubOrderOutcome::Unknown
        );

        let events = j.hub_events_after(0, 100).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "order.accepted",
                "order.accepted",
                "order.cancelled",
                "order.cancelled",
                "order.refused"
            ]
        );
        let audit = j.audit_log(None, 10).await.unwrap();
        assert_eq!(audit.iter().filter(|a| a.action == "order.add").count(), 1);
        assert_eq!(
            audit.iter().filter(|a| a.action == "order.cancel").count(),
            1
        );
        j.close().await;
    }

    #[tokio::test]
    async fn the_same_reference_on_another_analyzer_is_another_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
        j.apply_hub_order("hub", "m-1", place("S1", "SR-1"))
            .await
            .unwrap();
        let mut other = order("S1");
        other.analyzer = "haem".into();
        let second = j
            .apply_hub_order(
                "hub",
                "m-2",
                HubOrder::Place {
                    order: other,
                    hub_ref: "SR-1".into(),
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(second, HubOrderOutcome::Placed { .. }),
            "{second:?}"
        );
        j.close().await;
    }
}
