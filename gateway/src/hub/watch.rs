//! Turns what the gateway notices into journalled events: an endpoint
//! going down and coming back, the disk holding the journal running low
//! and recovering. Runs whether or not the broker is reachable; the events
//! wait in the journal.
//!
//! Dead letters are journalled by the journal itself, in the transaction
//! that gives up on them; configuration changes by `control::config`.

use crate::control::Gateway;
use crate::health::Status;
use ecko_hal::Storage;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often endpoint states and free disk are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What was last reported, so each change is journalled once.
#[derive(Debug, Default)]
pub struct Watched {
    down: BTreeMap<String, bool>,
    disk_low: bool,
}

/// One event to journal: kind, subject, detail.
pub type Noticed = (&'static str, Option<String>, serde_json::Value);

impl Watched {
    /// The changes between what was reported and `endpoints` (name and
    /// status, with the detail the endpoint gave) and the free disk.
    pub fn changes(
        &mut self,
        endpoints: &[(String, Status, Option<String>)],
        disk: Option<(u64, u64)>,
    ) -> Vec<Noticed> {
        let mut out = Vec::new();
        for (name, status, detail) in endpoints {
            let down = *status == Status::Down;
            let was = self.down.insert(name.clone(), down);
            let kind = match (was, down) {
                (None | Some(false), true) => "endpoint.down",
                (Some(true), false) if *status == Status::Up => "endpoint.up",
                (Some(true), false) => {
                    // Degraded or idle is not "up" yet: keep it down.
                    self.down.insert(name.clone(), true);
                    continue;
                }
                _ => continue,
            };
            out.push((
                kind,
                Some(name.clone()),
                json!({"status": status.as_str(), "detail": detail}),
            ));
        }
        if let Some((available, reserve)) = disk {
            let low = available < reserve;
            if low != self.disk_low {
                self.disk_low = low;
                out.push((
                    if low { "disk.low" } else { "disk.ok" },
                    None,
                    json!({"free_bytes": available, "reserve_bytes": reserve}),
                ));
            }
        }
        out
    }
}

/// Journals changes until `stop`; `journalled` is woken after each.
pub async fn run(
    gateway: Arc<dyn Gateway>,
    storage: Arc<dyn Storage>,
    journalled: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut watched = Watched::default();
    let journal = gateway.journal().clone();
    let dir = journal
        .path()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into());
    loop {
        let now = journal.now_ms();
        let config = gateway.config();
        let health = gateway.health();
        let endpoints: Vec<_> = config
            .endpoints
            .iter()
            .filter(|e| e.enabled)
            .filter_map(|e| {
                let state = health.get(&e.name)?;
                Some((e.name.clone(), state.status(now).0, state.detail))
            })
            .collect();
        let disk = storage
            .available_bytes(&dir)
            .ok()
            .map(|a| (a, journal.limits().1));
        for (kind, subject, detail) in watched.changes(&endpoints, disk) {
            let detail = detail.to_string();
            match journal
                .record_hub_event(kind, subject.as_deref(), Some(&detail))
                .await
            {
                Ok(_) => journalled.notify_one(),
                Err(e) => tracing::warn!(error = %e, kind, "a hub event could not be journalled"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, s: Status) -> (String, Status, Option<String>) {
        (name.into(), s, None)
    }

    #[test]
    fn an_endpoint_is_reported_down_once_and_up_once_it_delivers_again() {
        let mut w = Watched::default();
        assert!(w.changes(&[ep("hub", Status::Up)], None).is_empty());
        let c = w.changes(&[ep("hub", Status::Down)], None);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "endpoint.down");
        assert!(w.changes(&[ep("hub", Status::Down)], None).is_empty());
        assert!(w.changes(&[ep("hub", Status::Degraded)], None).is_empty());
        let c = w.changes(&[ep("hub", Status::Up)], None);
        assert_eq!(c[0].0, "endpoint.up");
        assert_eq!(c[0].1.as_deref(), Some("hub"));
    }

    #[test]
    fn low_disk_is_reported_when_it_falls_below_the_reserve_and_when_it_recovers() {
        let mut w = Watched::default();
        assert!(w.changes(&[], Some((500, 100))).is_empty());
        assert_eq!(w.changes(&[], Some((50, 100)))[0].0, "disk.low");
        assert!(w.changes(&[], Some((40, 100))).is_empty());
        assert_eq!(w.changes(&[], Some((500, 100)))[0].0, "disk.ok");
    }
}
