//! The wait before connecting again: doubling from `min` to `max`, with
//! jitter so that a thousand gateways cut off by one broker restart do not
//! all come back in the same second.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// After a connection was made: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The wait before the next attempt: between half and all of the
    /// current step, which then doubles up to `max`.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        let half = step / 2;
        let jitter = rand::random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_limit_with_jitter_and_start_over_after_a_connection() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let steps: Vec<u64> = [1, 2, 4, 8, 8, 8].to_vec();
        for step in steps {
            let w = b.next_wait();
            let step = Duration::from_secs(step);
            assert!(w >= step / 2 && w <= step, "{w:?} for a step of {step:?}");
        }
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }
}
