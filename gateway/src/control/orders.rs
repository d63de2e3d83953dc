//! Analyzer orders: add one for an ASTM endpoint and list them, through
//! the journal's file, beside a running gateway or not (it picks new
//! orders up on its next look); take one the hub sent over the uplink
//! (`from_hub`, or `worklist_from_hub` for a Modality Worklist), through
//! the running gateway's journal.

use super::{Actor, Operations, Refusal, Role};
use crate::config::{Config, EndpointKind};
use crate::journal::external::{add_order_at, read_orders};
use crate::journal::{HubOrder, HubOrderOutcome, NewOrder, StoredOrder, WorklistEntry};

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

/// Puts the FHIR `bundle` the hub sent as its message `message_id` on the
/// Modality Worklist `worklist` (a `worklist` endpoint of the configuration
/// in force), read as a route to it would read it; the keys of the entries
/// set. Needs operator; audited as `worklist.order` in the transaction
/// that keeps the entries, beside the hub event that reports it.
pub async fn worklist_from_hub(
    ops: &Operations,
    actor: &Actor,
    message_id: &str,
    worklist: &str,
    bundle: &serde_json::Value,
) -> Result<Vec<String>, Refusal> {
    actor.require(Role::Operator)?;
    let config = ops.config();
    let Some(EndpointKind::Worklist(settings)) = config.endpoint(worklist).map(|e| &e.kind) else {
        return Err(Refusal::invalid(
            "worklist",
            format!("`{worklist}` is not a worklist endpoint of this configuration"),
        ));
    };
    let tz = jiff::tz::TimeZone::get(&config.site.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let defaults = ecko_fhir::worklist::WorklistDefaults {
        worklist: worklist.to_string(),
        modality: settings.modality.clone(),
        station_ae: settings.station_ae.clone(),
    };
    let changes = ecko_fhir::worklist::from_fhir(bundle, &defaults, &tz)
        .map_err(|e| Refusal::invalid("bundle", e.to_string()))?;
    let now = jiff::Timestamp::now();
    let mut entries = Vec::with_capacity(changes.len());
    for c in &changes {
        entries.push(WorklistEntry {
            key: c.key.clone(),
            state: c.state.as_str().to_string(),
            start: c.start(),
            expires_at: c.expires_at(settings.keep_for.0, &tz, now),
            item: serde_json::to_string(&c.step)
                .map_err(|e| Refusal::invalid("bundle", e.to_string()))?,
        });
    }
    ops.journal()
        .apply_hub_worklist(&actor.name, message_id, worklist, entries)
        .await?;
    Ok(changes.into_iter().map(|c| c.key).collect())
}
