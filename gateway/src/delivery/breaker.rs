//! The circuit breaker of one destination: tripped by `failures` permanent
//! failures in a row, all within `window` (a misconfigured mapping or a
//! wrong URL makes every message "invalid"; dead-lettering thousands of
//! them helps nobody).
//!
//! - Only a delivery breaks the streak. A retryable failure does not (the
//!   destination has not accepted anything), nor does a transform failure
//!   (the message's fault, not the destination's; it is not counted).
//! - A failure older than `window` falls out of the streak.
//! - On the trip, the streak's messages (already settled dead as they were
//!   refused, since nobody could know a trip was coming) go back to the
//!   queue, and so does every message refused while tripped (a lane's
//!   batch in flight): the operator resumes once the endpoint is fixed and
//!   they are all delivered. Pure: time is an input.

use crate::config::BreakerPolicy;
use std::collections::VecDeque;

/// What one refusal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The streak is shorter than the policy's: the message stays dead.
    Counted,
    /// This refusal tripped the breaker: these rows (the streak, this one
    /// last) go back to the queue.
    Tripped(Vec<i64>),
    /// Tripped already: this row goes back to the queue.
    WhileTripped(i64),
}

#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    /// (when, outbox row) of the refusals in a row, oldest first.
    streak: VecDeque<(i64, i64)>,
    tripped: bool,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            streak: VecDeque::new(),
            tripped: false,
        }
    }

    /// A tripped breaker that the journal kept across a restart.
    pub fn trip(&mut self) {
        self.tripped = true;
        self.streak.clear();
    }

    pub fn is_tripped(&self) -> bool {
        self.tripped
    }

    /// A delivery went through: the streak is over.
    pub fn delivered(&mut self) {
        self.streak.clear();
    }

    /// Row `outbox_id` was refused for good at `now` (Unix ms).
    pub fn refused(&mut self, outbox_id: i64, now: i64) -> Refused {
        if self.tripped {
            return Refused::WhileTripped(outbox_id);
        }
        let window = i64::try_from(self.policy.window.as_millis()).unwrap_or(i64::MAX);
        while self
            .streak
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > window)
        {
            self.streak.pop_front();
        }
        self.streak.push_back((now, outbox_id));
        if self.streak.len() >= self.policy.failures as usize {
            self.tripped = true;
            Refused::Tripped(self.streak.drain(..).map(|(_, id)| id).collect())
        } else {
            Refused::Counted
        }
    }

    /// An operator resumed the destination.
    pub fn resume(&mut self) {
        self.tripped = false;
        self.streak.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker(failures: u32, window_s: u64) -> Breaker {
        Breaker::new(BreakerPolicy {
            failures,
            window: Duration::from_secs(window_s),
        })
    }

    #[test]
    fn the_nth_refusal_in_a_row_trips_it_and_hands_back_the_whole_streak() {
        let mut b = breaker(3, 60);
        assert_eq!(b.refused(1, 0), Refused::Counted);
        assert_eq!(b.refused(2, 10), Refused::Counted);
        assert_eq!(b.refused(3, 20), Refused::Tripped(vec![1, 2, 3]));
        assert!(b.is_tripped());
        assert_eq!(b.refused(4, 30), Refused::WhileTripped(4));
    }

    #[test]
    fn a_delivery_between_refusals_starts_the_count_again() {
        let mut b = breaker(3, 60);
        b.refused(1, 0);
        b.refused(2, 1);
        b.delivered();
        assert_eq!(b.refused(3, 2), Refused::Counted);
        assert_eq!(b.refused(4, 3), Refused::Counted);
        assert_eq!(b.refused(5, 4), Refused::Tripped(vec![3, 4, 5]));
    }

    #[test]
    fn refusals_older_than_the_window_fall_out_of_the_streak() {
        let mut b = breaker(3, 60);
        b.refused(1, 0);
        b.refused(2, 30_000);
        // Row 1 is 61 s old now: only 2 and 3 count.
        assert_eq!(b.refused(3, 61_000), Refused::Counted);
        assert_eq!(b.refused(4, 62_000), Refused::Tripped(vec![2, 3, 4]));
    }

    #[test]
    fn resuming_closes_it_with_an_empty_streak() {
        let mut b = breaker(2, 60);
        b.refused(1, 0);
        b.refused(2, 0);
        b.resume();
        assert!(!b.is_tripped());
        assert_eq!(b.refused(3, 1), Refused::Counted);
        b.trip();
        assert_eq!(b.refused(4, 2), Refused::WhileTripped(4));
    }
}
