//! An endpoint's `rate_limit`: a token bucket of `burst` tokens refilled
//! at `per_second`. A REST listener takes one token per request and answers
//! 429 with the wait when there is none; a delivery worker takes one per
//! message and waits (`delivery`). Pure: time is an input.

use crate::config::RateLimit;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Bucket {
    per_second: f64,
    burst: f64,
    /// Tokens left, as of the instant.
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(limit: RateLimit, now: Instant) -> Bucket {
        let burst = f64::from(limit.burst.max(1));
        Bucket {
            per_second: limit.per_second.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new((burst, now)),
        }
    }

    /// The most tokens the bucket ever holds: no take may ask for more.
    pub fn burst(&self) -> usize {
        self.burst as usize
    }

    /// Takes a token at `now`; without one, how long until there is one.
    pub fn take(&self, now: Instant) -> Result<(), Duration> {
        self.take_n(1, now)
    }

    /// Takes `n` tokens at `now` (at most [`Self::burst`] are ever there);
    /// without them, how long until they are there. Takes nothing then.
    pub fn take_n(&self, n: usize, now: Instant) -> Result<(), Duration> {
        let want = (n as f64).min(self.burst);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *state;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_second)
            .min(self.burst);
        if refilled >= want {
            *state = (refilled - want, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((want - refilled) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_taken_then_requests_wait_for_the_refill() {
        let t0 = Instant::now();
        let b = Bucket::new(
            RateLimit {
                per_second: 2.0,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(499)).is_err());
        assert!(b.take(t0 + Duration::from_millis(1000)).is_ok());
    }

    #[test]
    fn a_batch_takes_as_many_tokens_as_it_has_messages() {
        let t0 = Instant::now();
        let b = Bucket::new(
            RateLimit {
                per_second: 4.0,
                burst: 4,
            },
            t0,
        );
        assert!(b.take_n(4, t0).is_ok());
        // Two more need 500 ms of refill; asking early takes nothing.
        assert_eq!(b.take_n(2, t0), Err(Duration::from_millis(500)));
        assert!(b.take_n(2, t0 + Duration::from_millis(250)).is_err());
        assert!(b.take_n(2, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_long_pause_refills_no_more_than_the_burst() {
        let t0 = Instant::now();
        let b = Bucket::new(
            RateLimit {
                per_second: 10.0,
                burst: 2,
            },
            t0,
        );
        let later = t0 + Duration::from_secs(60);
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_ok());
        assert!(b.take(later).is_err());
    }
}
