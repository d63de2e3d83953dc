//! Factory reset asked for on a running gateway: the admin page, and the
//! reset button (`app::reset_button`, as the admin `reset-button`).
//!
//! Admin role; the page has checked the password again first. The audit
//! record (`device.factory_reset`) is written before the request, though
//! the reset wipes it with the journal: it is there for a reset that is
//! then interrupted and for the hub event and the log line that outlive
//! the journal (see `cli::run`).

use super::{Actor, Operations, Refusal, Role};
use crate::factory_reset::Plan;

/// Plans the reset of the gateway behind `ops`, audits it and hands it to
/// the running gateway, which stops, wipes and restarts. Nothing is
/// touched when the plan cannot be made (no file, a file that no longer
/// reads).
pub async fn request(ops: &Operations, actor: &Actor) -> Result<Plan, Refusal> {
    actor.require(Role::Admin)?;
    if ops.gateway().is_none() {
        return Err(Refusal::Conflict(
            "no running gateway here to reset; use `ecko-gateway factory-reset`".into(),
        ));
    }
    let config = ops.config();
    let plan =
        Plan::for_config(&config, &actor.name).map_err(|e| Refusal::Internal(e.to_string()))?;
    let detail = serde_json::json!({
        "wiped": plan.wipe.len(),
        "kept": plan.kept,
    })
    .to_string();
    ops.journal()
        .audit(&actor.name, "device.factory_reset", None, Some(&detail))
        .await?;
    tracing::warn!(
        target: "ecko_gateway",
        requested_by = actor.name,
        config = %plan.config_file.display(),
        "factory reset requested: the gateway stops, wipes its journal and configuration, and restarts"
    );
    ops.service().factory_reset.request(plan.clone());
    Ok(plan)
}
