//! Turning a failed attempt into "try again at T" or "dead".

use crate::config::RetryPolicy;
use crate::journal::Settlement;
use std::time::Duration;

/// The wait before attempt `failures + 1`, after `failures` failed attempts:
/// exponential from `initial`, capped at `max`, with up to `jitter` of it
/// randomised away. `unit` is a random number in [0, 1).
pub fn backoff(policy: &RetryPolicy, failures: u32, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(64) as i32;
    let base = policy.initial.as_secs_f64() * policy.multiplier.powi(exponent);
    let capped = base.min(policy.max.as_secs_f64());
    let jittered = capped * (1.0 - policy.jitter * unit.clamp(0.0, 1.0));
    Duration::from_secs_f64(jittered.max(0.001))
}

/// What a retryable failure means under `policy`.
///
/// `attempts_before` failed attempts preceded this one; the row was queued at
/// `queued_at`. A `retry_after` from the destination lengthens the wait but
/// never shortens it below our own backoff.
#[allow(clippy::too_many_arguments)]
pub fn after_failure(
    policy: &RetryPolicy,
    attempts_before: u32,
    queued_at: i64,
    now: i64,
    error: String,
    duration_ms: i64,
    retry_after: Option<Duration>,
    unit: f64,
) -> Settlement {
    let failures = attempts_before + 1;
    if policy.max_attempts.is_some_and(|max| failures >= max) {
        return Settlement::Dead {
            error: format!("{error} (gave up after {failures} attempts)"),
            duration_ms,
        };
    }
    let wait = backoff(policy, failures, unit).max(retry_after.unwrap_or_default());
    let retry_at = now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
    if let Some(max_age) = policy.max_age {
        let deadline = queued_at.saturating_add(max_age.as_millis().min(i64::MAX as u128) as i64);
        if retry_at > deadline {
            return Settlement::Dead {
                error: format!("{error} (gave up: older than {}s)", max_age.as_secs()),
                duration_ms,
            };
        }
    }
    Settlement::Retry {
        error,
        duration_ms,
        retry_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
            max_age: None,
        }
    }

    #[test]
    fn backoff_doubles_from_initial_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=8).map(|n| backoff(&p, n, 0.0).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_only_ever_shortens_the_wait_by_at_most_its_fraction() {
        let p = policy();
        assert_eq!(backoff(&p, 3, 0.999).as_millis(), 2002);
        assert!(backoff(&p, 3, 0.5) < backoff(&p, 3, 0.0));
    }

    #[test]
    fn the_last_allowed_attempt_makes_the_message_dead() {
        let mut p = policy();
        p.max_attempts = Some(3);
        let s = after_failure(&p, 2, 0, 1000, "boom".into(), 5, None, 0.0);
        assert!(
            matches!(s, Settlement::Dead { ref error, .. } if error.contains("after 3 attempts"))
        );
        let s = after_failure(&p, 1, 0, 1000, "boom".into(), 5, None, 0.0);
        assert!(matches!(s, Settlement::Retry { retry_at: 3000, .. }));
    }

    #[test]
    fn a_retry_that_would_pass_the_maximum_age_is_dead_instead() {
        let mut p = policy();
        p.max_age = Some(Duration::from_secs(10));
        let s = after_failure(&p, 0, 0, 9_500, "x".into(), 1, None, 0.0);
        assert!(matches!(s, Settlement::Dead { .. }));
    }

    #[test]
    fn the_destinations_retry_after_lengthens_but_never_shortens_the_wait() {
        let p = policy();
        let s = after_failure(
            &p,
            0,
            0,
            0,
            "x".into(),
            1,
            Some(Duration::from_secs(30)),
            0.0,
        );
        assert!(matches!(
            s,
            Settlement::Retry {
                retry_at: 30_000,
                ..
            }
        ));
        let s = after_failure(
            &p,
            3,
            0,
            0,
            "x".into(),
            1,
            Some(Duration::from_millis(1)),
            0.0,
        );
        assert!(matches!(
            s,
            Settlement::Retry {
                retry_at: 8_000,
                ..
            }
        ));
    }
}
