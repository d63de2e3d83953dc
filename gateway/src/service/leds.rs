//! The box's status LEDs follow the readiness verdict.
//!
//! Four roles, each mapped to a kernel LED name by `[service.leds]` (an
//! unmapped role is simply not shown):
//!
//! | role | on | blinking | off |
//! | --- | --- | --- | --- |
//! | `ready` | ready | running, not ready | — |
//! | `uplink` | every destination delivers (or has nothing to) | some fail | all fail |
//! | `analyzer` | a source is bound, open or connected | — | none is |
//! | `error` | a component is failing, or the disk or flash warn | — | all well |
//!
//! LEDs are set only when their state changes, so a kernel trigger set by
//! hand (while debugging) is not fought every second.

use super::readiness::{Check, Readiness};
use crate::config::LedConfig;
use ecko_hal::{LedState, StatusLeds};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the LEDs look at readiness.
const EVERY: Duration = Duration::from_secs(1);

/// What each role shows for `r`.
pub fn states(r: &Readiness) -> [(&'static str, LedState); 4] {
    let ready = if r.ready {
        LedState::On
    } else {
        LedState::Blinking
    };
    let failing = r
        .destinations
        .values()
        .filter(|c| c.status == Check::Failing)
        .count();
    let uplink = match failing {
        0 => LedState::On,
        n if n == r.destinations.len() => LedState::Off,
        _ => LedState::Blinking,
    };
    let analyzer = if r.sources.values().any(|c| c.status == Check::Ok) {
        LedState::On
    } else {
        LedState::Off
    };
    let error = if !r.ready
        || r.disk.status != Check::Ok
        || r.flash.status != Check::Ok
        || r.destinations.values().any(|c| c.status != Check::Ok)
    {
        LedState::On
    } else {
        LedState::Off
    };
    [
        ("ready", ready),
        ("uplink", uplink),
        ("analyzer", analyzer),
        ("error", error),
    ]
}

fn led_name<'a>(config: &'a LedConfig, role: &str) -> Option<&'a str> {
    match role {
        "ready" => config.ready.as_deref(),
        "uplink" => config.uplink.as_deref(),
        "analyzer" => config.analyzer.as_deref(),
        _ => config.error.as_deref(),
    }
}

/// What the LEDs follow: the readiness of the running gateway now.
pub type ReadinessNow = Box<dyn Fn() -> BoxFuture<'static, Readiness> + Send + Sync>;

/// Sets the mapped LEDs from `readiness` every second until `stop`; on the
/// way out every mapped LED goes off.
pub async fn follow(
    leds: Arc<dyn StatusLeds>,
    config: LedConfig,
    readiness: ReadinessNow,
    stop: CancellationToken,
) {
    let mut shown: BTreeMap<&'static str, LedState> = BTreeMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let r = readiness().await;
        for (role, state) in states(&r) {
            let Some(name) = led_name(&config, role) else {
                continue;
            };
            if shown.get(role) == Some(&state) {
                continue;
            }
            match leds.set(name, state) {
                Ok(()) => {
                    shown.insert(role, state);
                }
                Err(e) => tracing::debug!(error = %e, "cannot set a status LED"),
            }
        }
    }
    for (role, _) in shown {
        if let Some(name) = led_name(&config, role) {
            let _ = leds.set(name, LedState::Off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Condition, LinkState};
    use crate::service::readiness::{assess, DeviceFacts, EndpointFact, EndpointRole, Facts};
    use ecko_hal::SimLeds;

    fn readiness(hub: Condition, lab: Condition) -> Readiness {
        let link = |condition| {
            Some(LinkState {
                condition,
                since: 0,
                detail: None,
                last_ok_at: None,
            })
        };
        assess(&Facts {
            journal_answers: true,
            journal_unwritable: None,
            device: DeviceFacts::all_well(),
            endpoints: vec![
                EndpointFact {
                    name: "hub".into(),
                    role: EndpointRole::Destination,
                    link: link(hub),
                },
                EndpointFact {
                    name: "lab".into(),
                    role: EndpointRole::Source,
                    link: link(lab),
                },
            ],
        })
    }

    #[test]
    fn the_leds_show_ready_uplink_analyzer_and_error_from_readiness() {
        assert_eq!(
            states(&readiness(Condition::Up, Condition::Up)),
            [
                ("ready", LedState::On),
                ("uplink", LedState::On),
                ("analyzer", LedState::On),
                ("error", LedState::Off)
            ]
        );
        assert_eq!(
            states(&readiness(Condition::Failing, Condition::Down)),
            [
                ("ready", LedState::Blinking),
                ("uplink", LedState::Off),
                ("analyzer", LedState::Off),
                ("error", LedState::On)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn mapped_leds_follow_readiness_and_go_off_on_the_way_out() {
        let leds = SimLeds::default();
        let config = LedConfig {
            ready: Some("ecko:green:ready".into()),
            error: Some("ecko:red:error".into()),
            ..LedConfig::default()
        };
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = down.clone();
        let now: ReadinessNow = Box::new(move || {
            let hub = if flag.load(std::sync::atomic::Ordering::SeqCst) {
                Condition::Failing
            } else {
                Condition::Up
            };
            Box::pin(async move { readiness(hub, Condition::Up) })
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(Arc::new(leds.clone()), config, now, stop.clone()));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(leds.state("ecko:green:ready"), Some(LedState::On));
        assert_eq!(leds.state("ecko:red:error"), Some(LedState::Off));
        down.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(leds.state("ecko:green:ready"), Some(LedState::Blinking));
        assert_eq!(leds.state("ecko:red:error"), Some(LedState::On));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(leds.state("ecko:green:ready"), Some(LedState::Off));
    }
}
