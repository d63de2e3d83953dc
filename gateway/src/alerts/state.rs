//! One alert's life, as a pure function of what was observed and when.
//!
//! ```text
//!   clear ── condition holds ──▶ pending ── held for `for` ──▶ firing (notice: fired)
//!     ▲                            │                            │  │
//!     └──── condition gone ────────┘                            │  └─ `repeat` elapsed, not quiet (notice: repeated)
//!     └──── condition gone (notice: recovered) ◀────────────────┘
//! ```
//!
//! - An alert fires once, when its condition has held for the rule's `for`
//!   duration; a condition that clears before that sends nothing.
//! - While it fires it is sent again only when the rule has a `repeat`
//!   interval and that long has passed since it was last sent.
//! - Quiet hours hold back repeats only: a repeat falling due in quiet
//!   hours waits and goes out at the first check after they end (the
//!   interval counts from the last notice actually sent). The first notice
//!   and the recovery are always sent at once: something changed, and a
//!   recovery is the notice that lets someone go back to sleep.
//! - It recovers once, at the first check the condition no longer holds.
//!
//! The state is in memory: after a restart a condition that still holds
//! fires again once its `for` duration has passed.

/// Where one alert (a rule and its subject) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Clear,
    /// The condition holds since `since` (Unix ms) but not yet for long
    /// enough.
    Pending { since: i64 },
    /// Fired; `last_sent` is when a notice last went out.
    Firing { since: i64, last_sent: i64 },
}

/// What a rule says about timing, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub hold: i64,
    pub repeat: Option<i64>,
}

/// A notice to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fired,
    Repeated,
    Recovered,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Fired => "fired",
            Step::Repeated => "repeated",
            Step::Recovered => "recovered",
        }
    }
}

impl Phase {
    /// One observation at `now`: whether the condition holds, since when it
    /// has held as far as its source knows (`None`: since now), and whether
    /// it is quiet hours. Returns the notice to send, if any.
    pub fn observe(
        &mut self,
        holds: bool,
        held_since: Option<i64>,
        now: i64,
        timing: Timing,
        quiet: bool,
    ) -> Option<Step> {
        match (*self, holds) {
            (Phase::Clear, false) => None,
            (Phase::Clear, true) => {
                // A source that knows when the condition began (a link
                // failing since 10:42) counts from then, not from the first
                // look; never from the future.
                let since = held_since.unwrap_or(now).min(now);
                *self = Phase::Pending { since };
                self.observe(true, held_since, now, timing, quiet)
            }
            (Phase::Pending { .. }, false) => {
                *self = Phase::Clear;
                None
            }
            (Phase::Pending { since }, true) => {
                if now - since >= timing.hold {
                    *self = Phase::Firing {
                        since,
                        last_sent: now,
                    };
                    Some(Step::Fired)
                } else {
                    None
                }
            }
            (Phase::Firing { since, last_sent }, true) => {
                let due = timing.repeat.is_some_and(|r| now - last_sent >= r);
                if due && !quiet {
                    *self = Phase::Firing {
                        since,
                        last_sent: now,
                    };
                    Some(Step::Repeated)
                } else {
                    None
                }
            }
            (Phase::Firing { .. }, false) => {
                *self = Phase::Clear;
                Some(Step::Recovered)
            }
        }
    }

    /// Since when the condition has held, while pending or firing.
    pub fn since(&self) -> Option<i64> {
        match *self {
            Phase::Clear => None,
            Phase::Pending { since } | Phase::Firing { since, .. } => Some(since),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn run(phase: &mut Phase, timing: Timing, seen: &[(i64, bool, bool)]) -> Vec<(i64, Step)> {
        seen.iter()
            .filter_map(|&(at, holds, quiet)| {
                phase
                    .observe(holds, None, at, timing, quiet)
                    .map(|s| (at, s))
            })
            .collect()
    }

    #[test]
    fn an_alert_fires_once_after_its_hold_and_recovers_once() {
        let timing = Timing {
            hold: 5 * MIN,
            repeat: None,
        };
        let mut p = Phase::default();
        let seen: Vec<_> = (0..=20)
            .map(|m| (m * MIN, m < 15, false))
            .chain((21..30).map(|m| (m * MIN, false, false)))
            .collect();
        assert_eq!(
            run(&mut p, timing, &seen),
            vec![(5 * MIN, Step::Fired), (15 * MIN, Step::Recovered)]
        );
        assert_eq!(p, Phase::Clear);
    }

    #[test]
    fn a_condition_that_clears_before_its_hold_sends_nothing() {
        let timing = Timing {
            hold: 5 * MIN,
            repeat: Some(10 * MIN),
        };
        let mut p = Phase::default();
        let seen: Vec<_> = (0..40).map(|m| (m * MIN, m % 5 != 4, false)).collect();
        assert!(run(&mut p, timing, &seen).is_empty());
    }

    #[test]
    fn a_link_failing_since_before_the_first_look_fires_at_its_hold_from_then() {
        let timing = Timing {
            hold: 5 * MIN,
            repeat: None,
        };
        let mut p = Phase::default();
        assert_eq!(p.observe(true, Some(0), 4 * MIN, timing, false), None);
        assert_eq!(
            p.observe(true, Some(0), 5 * MIN, timing, false),
            Some(Step::Fired)
        );
        assert_eq!(p.since(), Some(0));
        let mut p = Phase::default();
        assert_eq!(
            p.observe(true, Some(10 * MIN), 0, timing, false),
            None,
            "a since in the future counts from now"
        );
    }

    #[test]
    fn a_firing_alert_repeats_at_its_interval_and_not_without_one() {
        let timing = Timing {
            hold: 0,
            repeat: Some(60 * MIN),
        };
        let mut p = Phase::default();
        let seen: Vec<_> = (0..=150).map(|m| (m * MIN, true, false)).collect();
        assert_eq!(
            run(&mut p, timing, &seen),
            vec![
                (0, Step::Fired),
                (60 * MIN, Step::Repeated),
                (120 * MIN, Step::Repeated)
            ]
        );
        let mut p = Phase::default();
        let once = Timing {
            hold: 0,
            repeat: None,
        };
        assert_eq!(run(&mut p, once, &seen), vec![(0, Step::Fired)]);
    }

    #[test]
    fn quiet_hours_hold_repeats_back_until_they_end_but_never_the_first_notice_or_the_recovery() {
        let timing = Timing {
            hold: 0,
            repeat: Some(60 * MIN),
        };
        let mut p = Phase::default();
        // Quiet from minute 0 to 150: it fires at once, the repeats due at
        // 60 and 120 wait for minute 150, the next is an interval after it.
        let mut seen: Vec<_> = (0..=220).map(|m| (m * MIN, true, m < 150)).collect();
        seen.push((221 * MIN, false, true));
        assert_eq!(
            run(&mut p, timing, &seen),
            vec![
                (0, Step::Fired),
                (150 * MIN, Step::Repeated),
                (210 * MIN, Step::Repeated),
                (221 * MIN, Step::Recovered),
            ]
        );
    }

    #[test]
    fn a_recovered_alert_fires_again_when_its_condition_returns() {
        let timing = Timing {
            hold: MIN,
            repeat: None,
        };
        let mut p = Phase::default();
        let seen = [
            (0, true, false),
            (MIN, true, false),
            (2 * MIN, false, false),
            (3 * MIN, true, false),
            (4 * MIN, true, false),
        ];
        assert_eq!(
            run(&mut p, timing, &seen),
            vec![
                (MIN, Step::Fired),
                (2 * MIN, Step::Recovered),
                (4 * MIN, Step::Fired)
            ]
        );
    }
}
