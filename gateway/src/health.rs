//! Runtime health of each endpoint, as the tasks that run it see it.
//!
//! The journal tells what happened to messages; it cannot tell whether a
//! listener is bound right now, whether a serial port is open, or whether the
//! last delivery attempts to a destination failed. Those facts live here,
//! reported by the task that knows them:
//!
//! - listeners (MLLP, ASTM TCP server): bound, or not bound and why;
//! - ASTM serial: port open or closed;
//! - clients (ASTM TCP client): connected or not;
//! - file drops: the directory readable or not;
//! - delivery workers: each outcome — delivered puts the link up, a retryable
//!   failure makes it failing since the first failure of the run, a refusal
//!   (the far side answered "no") marks it refusing; a tripped circuit
//!   breaker pauses it until an operator resumes it.
//!
//! A failing link is `degraded` until it has failed for longer than
//! [`DOWN_AFTER`] with no delivery since; then it is `down since` its first
//! failure. The registry is in memory only: after a restart every link starts
//! unknown until its task reports. Reports are cheap (one short lock), so
//! tasks report on every transition and every delivery outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How long a destination may keep failing, with no delivery in between,
/// before it counts as down rather than degraded.
pub const DOWN_AFTER_MS: i64 = 5 * 60 * 1000;

/// What a task last said about its link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Bound, open, connected, or last delivery succeeded.
    Up,
    /// Not bound, not open, not connected.
    Down,
    /// Deliveries fail and will be retried.
    Failing,
    /// The far side answers but refuses messages (a permanent error).
    Refusing,
    /// A delivery worker that has not attempted anything since it started.
    Idle,
    /// Its circuit breaker tripped: nothing is sent until an operator
    /// resumes it; the messages wait.
    Paused,
}

/// One endpoint's runtime state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkState {
    pub condition: Condition,
    /// Unix ms when the current condition began.
    pub since: i64,
    /// Why (the error), or what (`listening on 0.0.0.0:2575`).
    pub detail: Option<String>,
    /// Unix ms of the last success: a delivery, a bind, an open.
    pub last_ok_at: Option<i64>,
}

/// The status the admin page shows for an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Up,
    Degraded,
    Down,
    Disabled,
    /// Running, nothing to deliver yet since the start.
    Idle,
    /// Nothing has reported yet (no traffic since the start, or the task
    /// has not started).
    Unknown,
    /// The circuit breaker tripped.
    Paused,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
            Status::Disabled => "disabled",
            Status::Idle => "idle",
            Status::Unknown => "unknown",
            Status::Paused => "paused",
        }
    }
}

impl LinkState {
    /// The status at `now`, and since when it holds.
    pub fn status(&self, now: i64) -> (Status, i64) {
        match self.condition {
            Condition::Up => (Status::Up, self.since),
            Condition::Down => (Status::Down, self.since),
            Condition::Refusing => (Status::Degraded, self.since),
            Condition::Idle => (Status::Idle, self.since),
            Condition::Paused => (Status::Paused, self.since),
            Condition::Failing => {
                let delivered_since = self.last_ok_at.is_some_and(|ok| ok >= self.since);
                if !delivered_since && now - self.since > DOWN_AFTER_MS {
                    (Status::Down, self.since)
                } else {
                    (Status::Degraded, self.since)
                }
            }
        }
    }
}

/// The shared registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    links: Arc<Mutex<HashMap<String, LinkState>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    fn update(&self, endpoint: &str, f: impl FnOnce(Option<&LinkState>) -> LinkState) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let next = f(links.get(endpoint));
        links.insert(endpoint.to_string(), next);
    }

    fn transition(&self, endpoint: &str, now: i64, condition: Condition, detail: Option<String>) {
        let ok = condition == Condition::Up;
        self.update(endpoint, |prev| {
            let since = match prev {
                Some(p) if p.condition == condition => p.since,
                _ => now,
            };
            LinkState {
                condition,
                since,
                detail,
                last_ok_at: if ok {
                    Some(now)
                } else {
                    prev.and_then(|p| p.last_ok_at)
                },
            }
        });
    }

    /// Bound, open or connected; `detail` says what (`listening on …`).
    pub fn up(&self, endpoint: &str, now: i64, detail: impl Into<String>) {
        self.transition(endpoint, now, Condition::Up, Some(detail.into()));
    }

    /// Not bound, closed or disconnected, and why.
    pub fn down(&self, endpoint: &str, now: i64, reason: impl Into<String>) {
        self.transition(endpoint, now, Condition::Down, Some(reason.into()));
    }

    /// A delivery worker started; says nothing if something was reported
    /// already (a restarted worker keeps its link's history).
    pub fn started(&self, endpoint: &str, now: i64) {
        self.update(endpoint, |prev| {
            prev.cloned().unwrap_or(LinkState {
                condition: Condition::Idle,
                since: now,
                detail: Some("no delivery attempted yet".into()),
                last_ok_at: None,
            })
        });
    }

    /// A delivery succeeded.
    pub fn delivered(&self, endpoint: &str, now: i64) {
        self.transition(endpoint, now, Condition::Up, None);
    }

    /// A delivery failed and will be retried: failing since the first such
    /// failure after the last success.
    pub fn failed(&self, endpoint: &str, now: i64, error: impl Into<String>) {
        self.transition(endpoint, now, Condition::Failing, Some(error.into()));
    }

    /// The far side refused a message for good.
    pub fn refused(&self, endpoint: &str, now: i64, error: impl Into<String>) {
        self.transition(endpoint, now, Condition::Refusing, Some(error.into()));
    }

    /// Its circuit breaker tripped (at `since`, when the journal says so).
    pub fn paused(&self, endpoint: &str, since: i64, reason: impl Into<String>) {
        self.transition(endpoint, since, Condition::Paused, Some(reason.into()));
    }

    /// An operator resumed it: idle again until the next attempt.
    pub fn resumed(&self, endpoint: &str, now: i64) {
        self.transition(
            endpoint,
            now,
            Condition::Idle,
            Some("resumed; no delivery attempted since".into()),
        );
    }

    pub fn is_paused(&self, endpoint: &str) -> bool {
        self.get(endpoint)
            .is_some_and(|l| l.condition == Condition::Paused)
    }

    /// What was last reported for `endpoint`.
    pub fn get(&self, endpoint: &str) -> Option<LinkState> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_listener_is_up_since_it_was_bound_and_down_once_it_is_not() {
        let h = Health::new();
        assert_eq!(h.get("mllp"), None);
        h.up("mllp", 1_000, "listening on 127.0.0.1:2575");
        h.up("mllp", 2_000, "listening on 127.0.0.1:2575");
        let s = h.get("mllp").unwrap();
        assert_eq!(s.status(5_000), (Status::Up, 1_000));
        h.down("mllp", 3_000, "stopped");
        assert_eq!(h.get("mllp").unwrap().status(9_000), (Status::Down, 3_000));
        assert_eq!(h.get("mllp").unwrap().last_ok_at, Some(2_000));
    }

    #[test]
    fn a_failing_destination_is_degraded_then_down_after_the_threshold() {
        let h = Health::new();
        h.delivered("hub", 1_000);
        h.failed("hub", 2_000, "connection refused");
        h.failed("hub", 3_000, "connection refused");
        let s = h.get("hub").unwrap();
        assert_eq!(s.since, 2_000, "failing since the first failure");
        assert_eq!(s.status(2_000 + DOWN_AFTER_MS), (Status::Degraded, 2_000));
        assert_eq!(s.status(2_001 + DOWN_AFTER_MS), (Status::Down, 2_000));
        assert_eq!(s.detail.as_deref(), Some("connection refused"));
    }

    #[test]
    fn one_delivery_brings_a_failing_destination_back_up() {
        let h = Health::new();
        h.failed("hub", 1_000, "timeout");
        h.delivered("hub", 10 * DOWN_AFTER_MS);
        let s = h.get("hub").unwrap();
        assert_eq!(
            s.status(11 * DOWN_AFTER_MS),
            (Status::Up, 10 * DOWN_AFTER_MS)
        );
        // A new failure starts a new failing period.
        h.failed("hub", 12 * DOWN_AFTER_MS, "timeout");
        assert_eq!(h.get("hub").unwrap().since, 12 * DOWN_AFTER_MS);
    }

    #[test]
    fn a_started_worker_is_idle_until_its_first_attempt() {
        let h = Health::new();
        h.started("hub", 1_000);
        assert_eq!(h.get("hub").unwrap().status(2_000), (Status::Idle, 1_000));
        h.failed("hub", 3_000, "timeout");
        h.started("hub", 4_000);
        assert_eq!(h.get("hub").unwrap().condition, Condition::Failing);
    }

    #[test]
    fn a_paused_destination_stays_paused_until_resumed() {
        let h = Health::new();
        h.refused("hub", 1_000, "HTTP 400");
        h.paused("hub", 2_000, "20 refusals in a row");
        assert!(h.is_paused("hub"));
        assert_eq!(
            h.get("hub").unwrap().status(99_000),
            (Status::Paused, 2_000)
        );
        h.resumed("hub", 3_000);
        assert!(!h.is_paused("hub"));
        assert_eq!(h.get("hub").unwrap().status(4_000), (Status::Idle, 3_000));
    }

    #[test]
    fn a_refusing_destination_is_degraded_not_down() {
        let h = Health::new();
        h.refused("hub", 1_000, "HTTP 422");
        let s = h.get("hub").unwrap();
        assert_eq!(
            s.status(1_000 + 100 * DOWN_AFTER_MS),
            (Status::Degraded, 1_000)
        );
    }
}
