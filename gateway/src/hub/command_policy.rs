//! The device's command policy applied to one command: as whom the hub
//! acts, whether the command is young enough, and whether its id is new.
//!
//! # Age and replay
//!
//! A command carries `issued_at`, the hub's clock when it was made. It is
//! refused as `expired` when older than `max_age` by the gateway's clock,
//! and as `invalid` when issued more than [`FUTURE_SKEW`] ahead of it (a
//! clock that far off would stretch `max_age`). Then its id is recorded in
//! the journal; an id recorded before is refused as `replayed`, whatever
//! became of its first delivery (the first reply on `reply/{id}` is the
//! outcome).
//!
//! Recorded ids are purged once issued more than [`MAX_AGE_LIMIT`] plus
//! [`FUTURE_SKEW`] ago: any `max_age` this version accepts refuses such a
//! command by age already, so forgetting its id lets nothing through, and
//! the table holds at most a day of commands.

use super::reply::{CommandError, ErrorCode};
use crate::config::{CommandPolicy, MAX_AGE_LIMIT};
use crate::control::{Actor, Role};
use std::time::Duration;

/// How far ahead of the gateway's clock a command may be issued.
pub const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The actor the hub's commands run as.
pub fn actor(policy: &CommandPolicy) -> Actor {
    Actor {
        name: policy.actor.clone(),
        // The configuration checked the name; the lowest role otherwise.
        role: Role::parse(&policy.role).unwrap_or(Role::Viewer),
        user_id: None,
    }
}

/// `Ok` when a command issued at `issued_at` may run at `now` (Unix ms).
pub fn check_age(policy: &CommandPolicy, now: i64, issued_at: i64) -> Result<(), CommandError> {
    if issued_at > now + FUTURE_SKEW.as_millis() as i64 {
        return Err(CommandError::new(
            ErrorCode::Invalid,
            format!(
                "issued {} s ahead of the gateway's clock",
                (issued_at - now) / 1000
            ),
        ));
    }
    let max_age = policy.max_age.0.as_millis() as i64;
    if now - issued_at > max_age {
        return Err(CommandError::new(
            ErrorCode::Expired,
            format!(
                "issued {} s ago, more than max_age ({} s)",
                (now - issued_at) / 1000,
                max_age / 1000
            ),
        ));
    }
    Ok(())
}

/// Seen ids issued before this are purged at `now`.
pub fn forget_before(now: i64) -> i64 {
    now - (MAX_AGE_LIMIT + FUTURE_SKEW).as_millis() as i64
}

/// `Ok` when the policy lets the hub give command `name`.
pub fn check_allowed(policy: &CommandPolicy, name: &str) -> Result<(), CommandError> {
    if policy.allows(name) {
        Ok(())
    } else {
        Err(CommandError::new(
            ErrorCode::Forbidden,
            format!("`{name}` is not allowed by this gateway's command policy"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Span;

    fn policy() -> CommandPolicy {
        CommandPolicy {
            max_age: Span(Duration::from_secs(60)),
            ..CommandPolicy::default()
        }
    }

    #[test]
    fn a_command_older_than_max_age_is_expired_and_one_far_ahead_is_invalid() {
        let now = 10_000_000;
        assert!(check_age(&policy(), now, now - 59_000).is_ok());
        assert!(check_age(&policy(), now, now + 30_000).is_ok());
        assert_eq!(
            check_age(&policy(), now, now - 61_000).unwrap_err().code,
            ErrorCode::Expired
        );
        assert_eq!(
            check_age(&policy(), now, now + 61_000).unwrap_err().code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn a_forgotten_id_is_always_too_old_for_the_longest_max_age() {
        let now = 1_000_000_000_000;
        let longest = CommandPolicy {
            max_age: Span(MAX_AGE_LIMIT),
            ..CommandPolicy::default()
        };
        let last_forgotten = forget_before(now) - 1;
        assert_eq!(
            check_age(&longest, now, last_forgotten).unwrap_err().code,
            ErrorCode::Expired
        );
    }

    #[test]
    fn by_default_the_hub_is_an_operator_that_may_not_push_configurations() {
        let p = CommandPolicy::default();
        let a = actor(&p);
        assert_eq!((a.name.as_str(), a.role), ("hub", Role::Operator));
        assert!(check_allowed(&p, "messages.retry").is_ok());
        assert_eq!(
            check_allowed(&p, "config.push").unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert!(!p.patient_data);
    }
}
