//! Whether a gateway just booted on a pending slot keeps it: a pure
//! function of facts its caller gathers.
//!
//! Ready means all of:
//!
//! - the journal's writer answers (a gateway that cannot store is useless);
//! - every enabled source reported itself up (listeners bound, ports open,
//!   directories watched);
//! - some enabled destination delivered since the boot, or `grace` has
//!   passed since it: a box whose upstream is down for reasons of its own
//!   (the hospital network, the hub) still keeps a working image, but a
//!   box that can reach its upstream proves so at once.
//!
//! Not ready is never a verdict to act on: the gateway only ever marks
//! good. A slot that never passes is left to the bootloader, which falls
//! back once its tries are used up.

use crate::health::{Condition, LinkState};
use std::time::Duration;

/// What is known at one moment after the boot.
#[derive(Debug, Clone)]
pub struct Facts {
    pub journal_answers: bool,
    /// Each enabled source and what its task last reported.
    pub sources: Vec<(String, Option<LinkState>)>,
    /// Each enabled destination and what its task last reported.
    pub destinations: Vec<(String, Option<LinkState>)>,
    /// Unix ms of the boot (the gateway's start).
    pub booted_at: i64,
    pub now: i64,
    pub grace: Duration,
}

/// Ready, or the first reason it is not, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready { contact: bool },
    NotYet(String),
}

pub fn judge(f: &Facts) -> Verdict {
    if !f.journal_answers {
        return Verdict::NotYet("the journal does not answer".into());
    }
    for (name, link) in &f.sources {
        match link {
            Some(l) if l.condition == Condition::Up => {}
            Some(l) => {
                return Verdict::NotYet(format!(
                    "source `{name}` is not up{}",
                    l.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ))
            }
            None => return Verdict::NotYet(format!("source `{name}` has not started")),
        }
    }
    let contact = f
        .destinations
        .iter()
        .filter_map(|(_, l)| l.as_ref()?.last_ok_at)
        .any(|at| at >= f.booted_at);
    let grace = i64::try_from(f.grace.as_millis()).unwrap_or(i64::MAX);
    if contact || f.now.saturating_sub(f.booted_at) >= grace {
        Verdict::Ready { contact }
    } else {
        Verdict::NotYet("no destination reached yet, within the grace time".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(condition: Condition, last_ok_at: Option<i64>) -> Option<LinkState> {
        Some(LinkState {
            condition,
            since: 0,
            detail: None,
            last_ok_at,
        })
    }

    fn facts() -> Facts {
        Facts {
            journal_answers: true,
            sources: vec![("lab".into(), link(Condition::Up, Some(1_000)))],
            destinations: vec![("hub".into(), link(Condition::Idle, None))],
            booted_at: 1_000,
            now: 2_000,
            grace: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_delivery_since_the_boot_makes_it_ready_before_the_grace_time() {
        let mut f = facts();
        assert!(matches!(judge(&f), Verdict::NotYet(_)));
        f.destinations[0].1 = link(Condition::Up, Some(1_500));
        assert_eq!(judge(&f), Verdict::Ready { contact: true });
        // A delivery from before the boot is not this image's.
        f.destinations[0].1 = link(Condition::Up, Some(500));
        assert!(matches!(judge(&f), Verdict::NotYet(_)));
    }

    #[test]
    fn without_contact_it_is_ready_once_the_grace_time_passed() {
        let mut f = facts();
        f.now = 61_000;
        assert_eq!(judge(&f), Verdict::Ready { contact: false });
    }

    #[test]
    fn a_source_not_up_or_a_silent_journal_is_never_ready_even_after_the_grace_time() {
        let mut f = facts();
        f.now = 1_000_000;
        f.sources[0].1 = link(Condition::Down, None);
        let Verdict::NotYet(why) = judge(&f) else {
            panic!("ready with a source down")
        };
        assert!(why.contains("`lab`"), "{why}");
        f.sources[0].1 = None;
        assert!(matches!(judge(&f), Verdict::NotYet(_)));
        f.sources.clear();
        f.journal_answers = false;
        assert!(matches!(judge(&f), Verdict::NotYet(_)));
    }
}
