//! The task that runs once per start with `[update]`:
//!
//! 1. an update the bootloader fell back from is recorded once (audit and
//!    the hub's `update.rolled_back` event, `journal::updates`);
//! 2. when the running slot is pending, the gateway's own readiness
//!    (`readiness`) is judged every second, and the slot is marked good
//!    the first time it passes (audit and `update.installed`). Until then
//!    nothing is written: a gateway that never gets ready leaves the slot
//!    to use up its boot tries and the bootloader to fall back.

use super::readiness::{self, Verdict};
use crate::config::{Config, UpdateConfig};
use crate::control::Gateway;
use crate::endpoints::Role;
use ecko_image::slots::{self, SlotState};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often readiness is judged while the slot is pending.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The longest the journal may take to answer a ping.
const JOURNAL_ANSWER: Duration = Duration::from_secs(5);

pub async fn run(gateway: Arc<dyn Gateway>, update: UpdateConfig, stop: CancellationToken) {
    let journal = gateway.journal().clone();
    let booted_at = journal.now_ms();
    let state = match super::load(&update).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "firmware update: the boot state cannot be read; no slot is marked good");
            return;
        }
    };
    if let Some(f) = super::failed(&state) {
        match journal
            .record_failed_update(f.slot, &f.version, state.last_result.as_deref())
            .await
        {
            Ok((_, true)) => tracing::warn!(
                slot = f.slot,
                version = %f.version,
                "firmware update failed: the bootloader fell back to the previous slot"
            ),
            Ok((_, false)) => {}
            Err(e) => {
                tracing::error!(error = %e, "firmware update: the fallback cannot be journalled")
            }
        }
    }
    let active = state.active;
    let info = state.slot(active);
    if info.state != SlotState::Pending {
        return;
    }
    let version = info.version.clone().unwrap_or_else(|| "?".into());
    tracing::info!(
        slot = active.as_str(),
        version = %version,
        tries_left = info.tries_left,
        "firmware update: running a pending slot; it is marked good once the gateway is ready"
    );
    let mut said = String::new();
    loop {
        let config = gateway.config();
        let verdict = readiness::judge(&facts(&*gateway, &config, &update, booted_at).await);
        match verdict {
            Verdict::Ready { contact } => {
                let b = update.clone();
                let marked =
                    tokio::task::spawn_blocking(move || slots::mark_good(&super::backend(&b)))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                match marked {
                    Ok(slot) => {
                        tracing::info!(
                            slot = slot.as_str(),
                            version = %version,
                            upstream_contact = contact,
                            "firmware update: ready, slot marked good"
                        );
                        if let Err(e) = journal
                            .record_update_installed(slot.as_str(), &version)
                            .await
                        {
                            tracing::error!(error = %e, "firmware update: marking good cannot be journalled");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "firmware update: mark-good failed; the bootloader will fall back")
                    }
                }
                return;
            }
            Verdict::NotYet(why) => {
                // Once per reason, not every second.
                if why != said {
                    tracing::info!(reason = %why, "firmware update: not ready yet, slot still pending");
                    said = why;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

async fn facts(
    gateway: &dyn Gateway,
    config: &Config,
    update: &UpdateConfig,
    booted_at: i64,
) -> readiness::Facts {
    let journal = gateway.journal();
    let journal_answers = matches!(
        tokio::time::timeout(JOURNAL_ANSWER, journal.ping()).await,
        Ok(Ok(()))
    ) && !journal.unwritable();
    let health = gateway.health();
    let (mut sources, mut destinations) = (Vec::new(), Vec::new());
    for e in config.endpoints.iter().filter(|e| e.enabled) {
        let fact = (e.name.clone(), health.get(&e.name));
        match crate::endpoints::of(&e.kind).role(&e.kind) {
            Role::Source => sources.push(fact),
            Role::Destination => destinations.push(fact),
        }
    }
    readiness::Facts {
        journal_answers,
        sources,
        destinations,
        booted_at,
        now: journal.now_ms(),
        grace: update.grace.0,
    }
}
