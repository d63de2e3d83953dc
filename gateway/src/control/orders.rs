//! Analyzer orders: add one for an ASTM endpoint and list them, through
//! the journal's file, beside a running gateway or not (it picks new
//! orders up on its next look).

use super::{Actor, Refusal, Role};
use crate::config::{Config, EndpointKind};
use crate::journal::external::{add_order_at, read_orders};
use crate::journal::NewOrder;
use crate::journal::StoredOrder;

/// Adds `order` for its analyzer, which must be an ASTM endpoint of
/// `config`. Needs operator; audited as `order.add`.
pub async fn add(config: &Config, actor: &Actor, order: NewOrder) -> Result<i64, Refusal> {
    actor.require(Role::Operator)?;
    if !matches!(
        config.endpoint(&order.analyzer).map(|e| &e.kind),
        Some(EndpointKind::AstmSerial(_) | EndpointKind::AstmTcp(_))
    ) {
        return Err(Refusal::invalid(
            "analyzer",
            format!(
                "`{}` is not an ASTM endpoint of this configuration",
                order.analyzer
            ),
        ));
    }
    let path = crate::config::resolve(&config.journal.path);
    Ok(add_order_at(&path, order, &actor.name).await?)
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
