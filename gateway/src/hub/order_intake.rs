//! The worker that takes the hub's orders off `orders`, one at a time in
//! the order they came, and tells the uplink which deliveries to
//! acknowledge.
//!
//! # When an order is acknowledged to the broker
//!
//! - Taken (placed, cancelled, or a duplicate of one taken before): after
//!   the transaction holding it, its audit record and its hub event has
//!   committed.
//! - Refused (unreadable, not FHIR the gateway maps, an analyzer that is
//!   not an ASTM endpoint here, a role that may not add orders): after the
//!   `order.refused` event with the reason has committed. Sending it again
//!   would not make it right, and the hub learns of the refusal from the
//!   event.
//! - Not acknowledged when the journal could not commit either (disk full,
//!   journal closing): the broker sends the order again on the next
//!   connection, so nothing is lost.

use super::command_policy;
use super::orders::{self, Refused};
use crate::config::HubConfig;
use crate::config::PayloadFormat;
use crate::control::{self, Actor, Gateway, Operations, Refusal};
use crate::journal::HubOrderOutcome;
use std::sync::Arc;
use tokio::sync::mpsc;

/// An order message as it came from the broker, with the connection it
/// came on.
pub struct Delivered {
    pub publish: super::mqtt::Delivery,
    pub connection: u64,
}

/// A delivery dealt with: to acknowledge (`ack`) if its connection is
/// still the one up.
pub struct Handled {
    pub delivered: Delivered,
    pub ack: bool,
}

/// Takes orders for the running `gateway` as `[hub]`'s command actor.
pub struct Intake {
    ops: Operations,
    actor: Actor,
    format: PayloadFormat,
}

impl Intake {
    pub fn new(config: &HubConfig, gateway: Arc<dyn Gateway>) -> Intake {
        Intake::over(Operations::running(gateway), config)
    }

    fn over(ops: Operations, config: &HubConfig) -> Intake {
        Intake {
            ops,
            actor: command_policy::actor(&config.commands),
            format: config.format,
        }
    }

    /// Journals the order message `bytes`, or its refusal; `true` once one
    /// of the two is committed.
    pub async fn take(&self, bytes: &[u8]) -> bool {
        if let Some(order) = orders::read_worklist(self.format, bytes) {
            return match order {
                Ok(order) => self.take_worklist(order).await,
                Err(refused) => self.refuse(refused).await,
            };
        }
        let message = match orders::read(self.format, bytes) {
            Ok(m) => m,
            Err(refused) => return self.refuse(refused).await,
        };
        let change = message.change.clone();
        match control::orders::from_hub(&self.ops, &self.actor, &message.id, change).await {
            Ok(outcome) => {
                let (what, order_id) = match outcome {
                    HubOrderOutcome::Placed { order_id } => ("placed", Some(order_id)),
                    HubOrderOutcome::Duplicate { order_id } => ("duplicate", Some(order_id)),
                    HubOrderOutcome::Cancelled { order_id, .. } => ("cancelled", Some(order_id)),
                    HubOrderOutcome::Unknown => ("nothing to cancel", None),
                };
                tracing::info!(message = %message.id, order = ?order_id, "hub order: {what}");
                true
            }
            Err(Refusal::Journal(e)) => {
                tracing::warn!(message = %message.id, error = %e, "a hub order could not be journalled; the broker will send it again");
                false
            }
            Err(r) => {
                let analyzer = match &message.change {
                    crate::journal::HubOrder::Place { order, .. } => order.analyzer.clone(),
                    crate::journal::HubOrder::Cancel { analyzer, .. } => analyzer.clone(),
                };
                self.refuse(Refused {
                    message_id: Some(message.id),
                    analyzer: Some(analyzer),
                    reason: r.to_string(),
                })
                .await
            }
        }
    }

    async fn take_worklist(&self, order: orders::WorklistOrder) -> bool {
        match control::orders::worklist_from_hub(
            &self.ops,
            &self.actor,
            &order.id,
            &order.worklist,
            &order.bundle,
        )
        .await
        {
            Ok(keys) => {
                tracing::info!(message = %order.id, worklist = %order.worklist, entries = keys.len(), "hub order: on the worklist");
                true
            }
            Err(Refusal::Journal(e)) => {
                tracing::warn!(message = %order.id, error = %e, "a hub worklist order could not be journalled; the broker will send it again");
                false
            }
            Err(r) => {
                self.refuse(Refused {
                    message_id: Some(order.id),
                    analyzer: Some(order.worklist),
                    reason: r.to_string(),
                })
                .await
            }
        }
    }

    async fn refuse(&self, refused: Refused) -> bool {
        tracing::warn!(
            message = refused.message_id.as_deref().unwrap_or("?"),
            analyzer = refused.analyzer.as_deref().unwrap_or("?"),
            "hub order refused: {}",
            refused.reason
        );
        match self
            .ops
            .journal()
            .refuse_hub_order(
                refused.message_id.as_deref(),
                refused.analyzer.as_deref(),
                &refused.reason,
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a refused hub order could not be journalled; the broker will send it again");
                false
            }
        }
    }
}

/// Takes orders one at a time until either side goes away.
pub async fn serve(
    intake: Intake,
    mut delivered: mpsc::Receiver<Delivered>,
    handled: mpsc::Sender<Handled>,
) {
    while let Some(d) = delivered.recv().await {
        let ack = intake.take(&d.publish.payload).await;
        if handled.send(Handled { delivered: d, ack }).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::Health;
    use crate::hub::payload;
    use crate::journal::{Journal, JournalOptions};
    use serde_json::json;

    const CONFIG: &str = r#"
        [journal]
        path = "journal.db"
        [[endpoint]]
        name = "chem"
        type = "astm-tcp"
        address = "127.0.0.1:0"
        [[endpoint]]
        name = "archive"
        type = "file"
        path = "out"
        [[endpoint]]
        name = "mr"
        type = "worklist"
        modality = "MR"
        [[route]]
        name = "r"
        from = ["chem"]
        to = ["archive"]
        [hub]
        "#;

    fn intake(dir: &tempfile::TempDir, role: &str) -> Intake {
        let mut config = Config::parse(CONFIG, "t.toml", |_| None).unwrap();
        config.hub.commands.role = role.into();
        let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
        let hub = config.hub.clone();
        Intake::over(
            Operations::fixed(journal, Arc::new(config), Health::new()),
            &hub,
        )
    }

    fn order(id: &str, analyzer: &str) -> Vec<u8> {
        payload::encode(
            PayloadFormat::Cbor,
            &json!({"v": 1, "id": id, "issued_at": 0, "analyzer": analyzer, "bundle": {
                "resourceType": "Bundle", "type": "collection", "entry": [
                    {"resource": {"resourceType": "Specimen", "accessionIdentifier": {"value": "S1"}}},
                    {"resource": {"resourceType": "ServiceRequest", "id": "sr-1", "status": "active",
                        "intent": "order", "code": {"coding": [{"code": "GLU"}]}}}]}}),
        )
    }

    async fn event_kinds(i: &Intake) -> Vec<(String, String)> {
        i.ops
            .journal()
            .hub_events_after(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.detail.unwrap_or_default()))
            .collect()
    }

    #[tokio::test]
    async fn an_order_for_an_endpoint_that_is_not_an_astm_analyzer_is_refused_with_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let i = intake(&dir, "operator");
        assert!(i.take(&order("o-1", "archive")).await);
        assert!(i.take(b"\x00garbage").await);
        assert!(i.take(&order("o-2", "chem")).await);
        let events = event_kinds(&i).await;
        assert_eq!(events[0].0, "order.refused");
        assert!(events[0].1.contains("not an ASTM endpoint"), "{events:?}");
        assert!(events[0].1.contains("o-1"), "{events:?}");
        assert_eq!(events[1].0, "order.refused");
        assert_eq!(events[2].0, "order.accepted");
        assert_eq!(i.ops.journal().orders(Some("chem")).await.unwrap().len(), 1);
        i.ops.journal().close().await;
    }

    #[tokio::test]
    async fn a_hub_acting_as_viewer_may_not_add_orders() {
        let dir = tempfile::tempdir().unwrap();
        let i = intake(&dir, "viewer");
        assert!(i.take(&order("o-1", "chem")).await);
        let events = event_kinds(&i).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "order.refused");
        assert!(i.ops.journal().orders(None).await.unwrap().is_empty());
        i.ops.journal().close().await;
    }

    fn worklist_order(id: &str, worklist: &str, status: &str) -> Vec<u8> {
        payload::encode(
            PayloadFormat::Cbor,
            &json!({"v": 1, "id": id, "issued_at": 0, "worklist": worklist, "bundle": {
                "resourceType": "Bundle", "type": "collection", "entry": [
                    {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient",
                        "identifier": [{"value": "P9"}], "name": [{"family": "Hub", "given": ["Hanna"]}]}},
                    {"resource": {"resourceType": "ServiceRequest", "status": status, "intent": "order",
                        "requisition": {"value": "REQ-9"}, "subject": {"reference": "urn:uuid:p"},
                        "occurrenceDateTime": "2099-12-04T09:00:00Z",
                        "code": {"text": "MR knee"}}}]}}),
        )
    }

    #[tokio::test]
    async fn a_hub_order_for_a_worklist_is_kept_as_its_step_and_a_revocation_takes_it_off() {
        let dir = tempfile::tempdir().unwrap();
        let i = intake(&dir, "operator");
        assert!(i.take(&worklist_order("w-1", "mr", "active")).await);
        let entries = i.ops.journal().worklist_entries("mr").await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].0.as_str(), entries[0].1.as_str()),
            ("REQ-9", "scheduled")
        );
        assert!(
            entries[0].2.contains("Hub^Hanna") && entries[0].2.contains("\"MR\""),
            "{entries:?}"
        );
        // The same delivery again rewrites the same entry.
        assert!(i.take(&worklist_order("w-1", "mr", "active")).await);
        assert!(i.take(&worklist_order("w-2", "mr", "revoked")).await);
        let entries = i.ops.journal().worklist_entries("mr").await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].1, "cancelled");
        let events = event_kinds(&i).await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events.iter().all(|e| e.0 == "order.accepted"), "{events:?}");
        assert!(events[0].1.contains("REQ-9"), "{events:?}");
        i.ops.journal().close().await;
    }

    #[tokio::test]
    async fn a_worklist_order_for_an_endpoint_that_is_no_worklist_or_without_requests_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let i = intake(&dir, "operator");
        assert!(i.take(&worklist_order("w-1", "chem", "active")).await);
        let bare = payload::encode(
            PayloadFormat::Cbor,
            &json!({"v": 1, "id": "w-2", "worklist": "mr", "bundle": {"resourceType": "Bundle", "entry": []}}),
        );
        assert!(i.take(&bare).await);
        let events = event_kinds(&i).await;
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.0 == "order.refused"), "{events:?}");
        assert!(
            events[0].1.contains("not a worklist endpoint"),
            "{events:?}"
        );
        assert!(events[1].1.contains("no ServiceRequest"), "{events:?}");
        assert!(i
            .ops
            .journal()
            .worklist_entries("mr")
            .await
            .unwrap()
            .is_empty());
        i.ops.journal().close().await;
    }
}
