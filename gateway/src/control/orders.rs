//! Analyzer orders: add one for an ASTM endpoint and list them, through
//! the journal's file, beside a running gateway or not (it picks new
//! orders up on its next look); take one the hub sent over the uplink
//! (`from_hub`), through the running gateway's journal.

use super::{Actor, Operations, Refusal, Role};
use crate::config::{Config, EndpointKind};
use crate::journal::external::{add_order_at, read_orders};
use crate::journal::{HubOrder, HubOrderOutcome, NewOrder, StoredOrder};

/// Adds `order` for its analyzer, which must be an ASTM endpoint of
/// `config`. Needs operator; audited as `order.add`.
pub async fn add(config: &Config, actor: &Actor, order: NewOrder) -> Result<i64, Refusal> {
    actor.require(Role::Operator)?;
    check_analyzer(config, &order.analyzer)?;
    let path = crate::config::resolve(&config.journal.path);
    Ok(add_order_at(&path, order, &actor.name).await?)
}

fn check_analyzer(config: &Config, analyzer: &str) -> Result<(), Refusal> {
    if matches!(
        config.endpoint(analyzer).map(|e| &e.kind),
        Some(EndpointKind::AstmSerial(_) | EndpointKind::AstmTcp(_))
    ) {
        return Ok(());
    }
    Err(Refusal::invalid(
        "analyzer",
        format!("`{analyzer}` is not an ASTM endpoint of this configuration"),
    ))
}

/// Every order, of one analyzer or all. Needs viewer.
pub fn list(
    config: &Config,
    actor: &Actor,
    analyzer: Option<&str>,
) -> Result<Vec<StoredOrder>, Refusal> {
    actor.require(Role::Viewer)?;
    let path = crate::config::resolve(&config.journal.path);
    Ok(read_orders(&path, analyzer)?)
}

/// Applies an order (or a cancellation) the hub sent as its message
/// `message_id`: the analyzer must be an ASTM endpoint of the configuration
/// in force. Needs operator; audited as `order.add` or `order.cancel` in
/// the transaction that keeps it, beside the hub event that reports it.
pub async fn from_hub(
    ops: &Operations,
    actor: &Actor,
    message_id: &str,
    change: HubOrder,
) -> Result<HubOrderOutcome, Refusal> {
    actor.require(Role::Operator)?;
    let analyzer = match &change {
        HubOrder::Place { order, .. } => &order.analyzer,
        HubOrder::Cancel { analyzer, .. } => analyzer,
    };
    check_analyzer(&ops.config(), analyzer)?;
    Ok(ops
        .journal()
        .apply_hub_order(&actor.name, message_id, change)
        .await?)
}
