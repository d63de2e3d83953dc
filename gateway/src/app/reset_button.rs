//! The reset button `[service.reset_button]` names, watched while the
//! gateway runs: held down for `hold` it asks for the factory reset
//! through [`control::factory_reset`], as the admin page does, acting as
//! `reset-button` with the admin role (whoever holds the box's button owns
//! the box). A shorter press is logged and does nothing else. A source
//! that cannot be opened or stops sending is logged; the gateway runs on
//! without the button.

use crate::config::{ResetButtonConfig, ResetButtonSource};
use crate::control::{self, Actor, Operations, Role};
use ecko_hal::{long_press, Press, PressTiming, ResetButton, ResetButtonError};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The name the audit log and the hub event give the button.
pub const ACTOR: &str = "reset-button";

/// Watches the configured button until `stop`.
pub async fn watch(
    gateway: Arc<dyn control::Gateway>,
    button: ResetButtonConfig,
    stop: CancellationToken,
) {
    let timing = PressTiming {
        hold: button.hold.0,
        debounce: button.debounce.0,
    };
    let ops = Operations::running(gateway);
    let watched = async {
        match button.source {
            ResetButtonSource::Input => {
                let mut source =
                    ecko_hal::InputEventButton::open(&button.device, button.key).await?;
                presses(&ops, &mut source, timing).await
            }
            ResetButtonSource::Gpio => {
                let mut source =
                    ecko_hal::GpioButton::open(&button.chip, button.line, button.active_low)?;
                presses(&ops, &mut source, timing).await
            }
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        Err(e) = watched => {
            tracing::error!(error = %e, "the reset button is not watched");
        }
    }
}

async fn presses<B: ResetButton>(
    ops: &Operations,
    source: &mut B,
    timing: PressTiming,
) -> Result<(), ResetButtonError> {
    tracing::info!(hold = ?timing.hold, "reset button watched");
    loop {
        match long_press(source, timing).await? {
            Press::Short(held) => {
                tracing::info!(held = ?held, hold = ?timing.hold, "reset button: a short press does nothing; hold it for the factory reset");
            }
            Press::Long => {
                let actor = Actor {
                    name: ACTOR.into(),
                    role: Role::Admin,
                    user_id: None,
                };
                match control::factory_reset::request(ops, &actor).await {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        tracing::error!(error = %e, "reset button: the factory reset cannot be done")
                    }
                }
            }
        }
    }
}
