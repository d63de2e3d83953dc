//! Failed logins slow down the pair that failed, never the account.
//!
//! A lock of the account after a few failures lets anyone on the LAN lock
//! the administrator out by typing wrong passwords. Instead each pair of
//! (account name as typed, client address) counts its failures in a row:
//! after `throttle_after` of them it must wait `throttle_delay` before the
//! next attempt, doubling with every further failure up to `throttle_max`.
//! The same administrator from another address is not slowed; a success
//! clears the pair.
//!
//! Names are counted whether or not the account exists, and a throttled
//! pair gets the same answer either way, so the throttle says nothing about
//! which names exist. The pairs live in memory only: a restart forgets
//! them, which costs an attacker a restart of the gateway it cannot cause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most pairs kept; beyond it, pairs no longer waiting are forgotten.
const MAX_PAIRS: usize = 10_000;

/// The throttle's settings (`[admin]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRules {
    pub after: u32,
    pub delay: Duration,
    pub max: Duration,
}

impl ThrottleRules {
    /// The wait imposed after `failures` in a row, if any.
    pub fn delay_after(&self, failures: u32) -> Option<Duration> {
        let after = self.after.max(1);
        if failures < after {
            return None;
        }
        let doublings = (failures - after).min(30);
        Some(self.delay.saturating_mul(1 << doublings).min(self.max))
    }
}

#[derive(Debug, Clone, Copy)]
struct Pair {
    failures: u32,
    until: Instant,
}

/// What a failure did to its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub failures: u32,
    /// The wait now imposed, if any.
    pub delay: Option<Duration>,
    /// This failure is the one that started the wait.
    pub started: bool,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    pairs: Mutex<HashMap<(String, IpAddr), Pair>>,
}

fn key(name: &str, ip: IpAddr) -> (String, IpAddr) {
    (name.chars().take(64).collect(), ip.to_canonical())
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), Pair>> {
        self.pairs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `name` from `ip` must still wait, if at all.
    pub fn wait(&self, name: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        let pairs = self.lock();
        let pair = pairs.get(&key(name, ip))?;
        (pair.until > now).then(|| pair.until - now)
    }

    /// Counts a failed login of `name` from `ip`.
    pub fn failed(&self, name: &str, ip: IpAddr, now: Instant, rules: &ThrottleRules) -> Failure {
        let mut pairs = self.lock();
        if pairs.len() >= MAX_PAIRS {
            pairs.retain(|_, p| p.until > now);
        }
        let pair = pairs.entry(key(name, ip)).or_insert(Pair {
            failures: 0,
            until: now,
        });
        pair.failures = pair.failures.saturating_add(1);
        let delay = rules.delay_after(pair.failures);
        if let Some(d) = delay {
            pair.until = now + d;
        }
        Failure {
            failures: pair.failures,
            delay,
            started: delay.is_some() && pair.failures == rules.after.max(1),
        }
    }

    /// A successful login of `name` from `ip` clears its pair.
    pub fn succeeded(&self, name: &str, ip: IpAddr) {
        self.lock().remove(&key(name, ip));
    }

    /// Whether `name` waits now from some address.
    pub fn throttled(&self, name: &str, now: Instant) -> bool {
        let name: String = name.chars().take(64).collect();
        self.lock()
            .iter()
            .any(|((n, _), p)| *n == name && p.until > now)
    }

    /// Forgets every pair of `name` (an administrator unlocked it).
    pub fn clear(&self, name: &str) {
        let name: String = name.chars().take(64).collect();
        self.lock().retain(|(n, _), _| *n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: ThrottleRules = ThrottleRules {
        after: 3,
        delay: Duration::from_secs(1),
        max: Duration::from_secs(15 * 60),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_wait_starts_after_three_failures_and_doubles_up_to_the_maximum() {
        let delays: Vec<_> = (1..=15).map(|n| RULES.delay_after(n)).collect();
        assert_eq!(delays[..2], [None, None]);
        assert_eq!(delays[2], Some(Duration::from_secs(1)));
        assert_eq!(delays[3], Some(Duration::from_secs(2)));
        assert_eq!(delays[4], Some(Duration::from_secs(4)));
        assert_eq!(delays[12], Some(Duration::from_secs(900)), "2^10 s capped");
        assert_eq!(RULES.delay_after(u32::MAX), Some(RULES.max));
    }

    #[test]
    fn failures_from_one_address_do_not_slow_the_same_account_from_another() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let mut started = Vec::new();
        for _ in 0..5 {
            started.push(t.failed("admin", ip("10.0.0.66"), now, &RULES).started);
        }
        assert_eq!(started, [false, false, true, false, false]);
        assert_eq!(
            t.wait("admin", ip("10.0.0.66"), now),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            t.wait("admin", ip("::ffff:10.0.0.66"), now),
            Some(Duration::from_secs(4))
        );
        assert_eq!(t.wait("admin", ip("10.0.0.1"), now), None);
        assert_eq!(t.wait("operator", ip("10.0.0.66"), now), None);
        assert_eq!(
            t.wait("admin", ip("10.0.0.66"), now + Duration::from_secs(4)),
            None
        );
    }

    #[test]
    fn a_success_or_an_unlock_clears_the_pairs() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..3 {
            t.failed("admin", ip("10.0.0.66"), now, &RULES);
            t.failed("admin", ip("10.0.0.67"), now, &RULES);
        }
        t.succeeded("admin", ip("10.0.0.66"));
        assert_eq!(t.wait("admin", ip("10.0.0.66"), now), None);
        assert!(t.wait("admin", ip("10.0.0.67"), now).is_some());
        assert!(t.throttled("admin", now));
        t.clear("admin");
        assert!(!t.throttled("admin", now));
        assert_eq!(t.wait("admin", ip("10.0.0.67"), now), None);
        assert!(!t.failed("admin", ip("10.0.0.67"), now, &RULES).started);
    }
}
