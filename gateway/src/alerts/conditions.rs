//! Each rule's condition judged on facts gathered at one moment: a pure
//! function, so what makes an alert hold is tested without a gateway.

use crate::config::{AlertKind, AlertRule};
use crate::health::{Condition, LinkState};
use std::collections::BTreeMap;

/// What the gateway knew at `now`.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub now: i64,
    /// Enabled endpoints and what their task last reported.
    pub endpoints: Vec<(String, Option<LinkState>)>,
    /// Dead letters waiting for a person, per destination.
    pub dead: BTreeMap<String, u64>,
    pub disk_free: Option<u64>,
    /// The journal's `min_free_disk`.
    pub disk_reserve: u64,
    pub clock_synchronised: Option<bool>,
    /// Certificate files and when each expires (Unix ms), or why that is
    /// not known.
    pub certificates: BTreeMap<String, Result<i64, String>>,
    /// `None` without `[update]` or when the boot state cannot be read;
    /// else the update the bootloader fell back from, if any, and when the
    /// gateway first saw it (Unix ms).
    pub update: Option<Option<(crate::update::Failed, Option<i64>)>>,
}

/// One alert's condition at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// What the alert is about (an endpoint, a file); `None` for the box.
    pub subject: Option<String>,
    pub holds: bool,
    /// Since when it has held, where the source knows.
    pub since: Option<i64>,
    /// In plain words, for the notice.
    pub summary: String,
}

/// The samples of `rule`: one per endpoint or file it watches, else one.
pub fn sample(rule: &AlertRule, facts: &Facts) -> Vec<Sample> {
    match rule.when {
        AlertKind::EndpointDown => facts
            .endpoints
            .iter()
            .filter(|(name, _)| rule.endpoint.as_ref().is_none_or(|e| e == name))
            .map(|(name, link)| endpoint_down(name, link.as_ref()))
            .collect(),
        AlertKind::BreakerTripped => facts
            .endpoints
            .iter()
            .filter(|(name, _)| rule.endpoint.as_ref().is_none_or(|e| e == name))
            .map(|(name, link)| breaker_tripped(name, link.as_ref()))
            .collect(),
        AlertKind::DeadLetters => {
            let above = rule.above.unwrap_or(0);
            facts
                .endpoints
                .iter()
                .filter(|(name, _)| rule.endpoint.as_ref().is_none_or(|e| e == name))
                .filter_map(|(name, _)| {
                    let n = *facts.dead.get(name)?;
                    Some(Sample {
                        subject: Some(name.clone()),
                        holds: n > above,
                        since: None,
                        summary: format!("{n} dead letter(s) for `{name}` wait for a person"),
                    })
                })
                .chain(
                    // A destination whose dead letters are gone no longer
                    // has a count: it is clear.
                    facts
                        .endpoints
                        .iter()
                        .filter(|(name, _)| {
                            rule.endpoint.as_ref().is_none_or(|e| e == name)
                                && !facts.dead.contains_key(name)
                        })
                        .map(|(name, _)| Sample {
                            subject: Some(name.clone()),
                            holds: false,
                            since: None,
                            summary: format!("no dead letters for `{name}`"),
                        }),
                )
                .collect()
        }
        AlertKind::DiskLow => {
            let below = rule
                .below
                .map_or(facts.disk_reserve.saturating_mul(2), |b| b.0);
            match facts.disk_free {
                Some(free) => vec![Sample {
                    subject: None,
                    holds: free < below,
                    since: None,
                    summary: format!(
                        "{} MiB free on the journal's disk (alert below {} MiB; messages are refused below {} MiB)",
                        free >> 20,
                        below >> 20,
                        facts.disk_reserve >> 20
                    ),
                }],
                // Unknown is not low: an unreadable disk is not a reason to
                // wake someone, nor to send a recovery.
                None => Vec::new(),
            }
        }
        AlertKind::ClockUnsynchronised => match facts.clock_synchronised {
            Some(synced) => vec![Sample {
                subject: None,
                holds: !synced,
                since: None,
                summary: if synced {
                    "the system clock is synchronised".into()
                } else {
                    "the system clock is not synchronised: times the gateway adds to messages may be wrong".into()
                },
            }],
            None => Vec::new(),
        },
        AlertKind::UpdateFailed => match &facts.update {
            Some(failed) => vec![update_failed(failed.as_ref())],
            // Not known is not failed: neither an alert nor a recovery.
            None => Vec::new(),
        },
        AlertKind::CertificateExpiring => {
            let within = i64::try_from(rule.within().as_millis()).unwrap_or(i64::MAX);
            facts
                .certificates
                .iter()
                .filter(|(path, _)| {
                    rule.certificates.as_ref().is_none_or(|only| {
                        only.iter()
                            .any(|p| crate::config::resolve(p).display().to_string() == **path)
                    })
                })
                .map(|(path, expiry)| match expiry {
                    Ok(at) => Sample {
                        subject: Some(path.clone()),
                        holds: *at - facts.now <= within,
                        since: None,
                        summary: if *at <= facts.now {
                            format!("the certificate {path} expired on {}", day(*at))
                        } else {
                            format!(
                                "the certificate {path} expires on {} ({} days from now)",
                                day(*at),
                                (*at - facts.now) / 86_400_000
                            )
                        },
                    },
                    // A certificate that cannot be read is a problem too.
                    Err(e) => Sample {
                        subject: Some(path.clone()),
                        holds: true,
                        since: None,
                        summary: format!("the certificate {path} cannot be read: {e}"),
                    },
                })
                .collect()
        }
    }
}

fn endpoint_down(name: &str, link: Option<&LinkState>) -> Sample {
    let down = link.filter(|l| matches!(l.condition, Condition::Down | Condition::Failing));
    let detail = link
        .and_then(|l| l.detail.as_deref())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    Sample {
        subject: Some(name.to_string()),
        holds: down.is_some(),
        since: down.map(|l| l.since),
        summary: match down {
            Some(l) if l.condition == Condition::Failing => {
                format!("deliveries to `{name}` are failing{detail}")
            }
            Some(_) => format!("`{name}` is down{detail}"),
            None => format!("`{name}` is up"),
        },
    }
}

fn breaker_tripped(name: &str, link: Option<&LinkState>) -> Sample {
    let paused = link.filter(|l| l.condition == Condition::Paused);
    Sample {
        subject: Some(name.to_string()),
        holds: paused.is_some(),
        since: paused.map(|l| l.since),
        summary: match paused {
            Some(l) => format!(
                "`{name}` is paused by its circuit breaker ({}); its messages wait until an operator resumes it",
                l.detail.as_deref().unwrap_or("refusals in a row")
            ),
            None => format!("`{name}` is not paused"),
        },
    }
}

fn update_failed(failed: Option<&(crate::update::Failed, Option<i64>)>) -> Sample {
    Sample {
        subject: None,
        holds: failed.is_some(),
        since: failed.and_then(|(_, at)| *at),
        summary: match failed {
            Some((f, at)) => format!(
                "the firmware update to {} in slot {} failed: it never passed the readiness check and the bootloader fell back{}",
                f.version,
                f.slot,
                at.map(|at| format!(" (seen {})", day(at))).unwrap_or_default()
            ),
            None => "no failed firmware update: the slots are as installed".into(),
        },
    }
}

fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> AlertRule {
        toml::from_str(&format!("name = \"r\"\nchannels = [\"c\"]\n{toml}")).unwrap()
    }

    fn link(condition: Condition, since: i64) -> Option<LinkState> {
        Some(LinkState {
            condition,
            since,
            detail: Some("connection refused".into()),
            last_ok_at: None,
        })
    }

    #[test]
    fn a_failed_update_holds_until_another_is_installed_and_an_unknown_boot_state_says_nothing() {
        let r = rule("when = \"update_failed\"");
        let failed = crate::update::Failed {
            slot: "a",
            version: "2.0".into(),
        };
        let mut facts = Facts {
            update: Some(Some((failed, Some(1_800_000_000_000)))),
            ..Facts::default()
        };
        let s = sample(&r, &facts);
        assert!(s[0].holds);
        assert!(s[0].summary.contains("2.0"), "{}", s[0].summary);
        assert_eq!(s[0].since, Some(1_800_000_000_000));
        facts.update = Some(None);
        assert!(!sample(&r, &facts)[0].holds);
        facts.update = None;
        assert!(sample(&r, &facts).is_empty());
    }

    #[test]
    fn a_tripped_breaker_holds_for_the_paused_destination_only() {
        let facts = Facts {
            now: 10_000,
            endpoints: vec![
                ("a".into(), link(Condition::Paused, 3_000)),
                ("b".into(), link(Condition::Refusing, 2_000)),
                ("c".into(), None),
            ],
            ..Default::default()
        };
        let s = sample(&rule("when = \"breaker_tripped\""), &facts);
        let held: Vec<_> = s.iter().map(|s| (s.holds, s.since)).collect();
        assert_eq!(
            held,
            vec![(true, Some(3_000)), (false, None), (false, None)]
        );
        assert!(
            s[0].summary.contains("paused by its circuit breaker"),
            "{}",
            s[0].summary
        );
    }

    #[test]
    fn an_endpoint_is_down_when_unbound_or_failing_and_not_when_idle_up_or_unreported() {
        let facts = Facts {
            now: 10_000,
            endpoints: vec![
                ("a".into(), link(Condition::Down, 1_000)),
                ("b".into(), link(Condition::Failing, 2_000)),
                ("c".into(), link(Condition::Idle, 0)),
                ("d".into(), link(Condition::Up, 0)),
                ("e".into(), None),
            ],
            ..Default::default()
        };
        let s = sample(&rule("when = \"endpoint_down\""), &facts);
        let held: Vec<_> = s.iter().map(|s| (s.holds, s.since)).collect();
        assert_eq!(
            held,
            vec![
                (true, Some(1_000)),
                (true, Some(2_000)),
                (false, None),
                (false, None),
                (false, None)
            ]
        );
        assert!(s[1].summary.contains("failing: connection refused"));
        let only = sample(&rule("when = \"endpoint_down\"\nendpoint = \"b\""), &facts);
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].subject.as_deref(), Some("b"));
    }

    #[test]
    fn dead_letters_hold_above_the_threshold_and_clear_when_none_are_left() {
        let mut facts = Facts {
            endpoints: vec![("lis".into(), None)],
            ..Default::default()
        };
        facts.dead.insert("lis".into(), 3);
        assert!(sample(&rule("when = \"dead_letters\""), &facts)[0].holds);
        assert!(!sample(&rule("when = \"dead_letters\"\nabove = 3"), &facts)[0].holds);
        facts.dead.clear();
        let s = sample(&rule("when = \"dead_letters\""), &facts);
        assert_eq!(s.len(), 1);
        assert!(!s[0].holds);
    }

    #[test]
    fn the_disk_is_low_below_twice_the_reserve_unless_the_rule_says_otherwise() {
        let mut facts = Facts {
            disk_free: Some(300 << 20),
            disk_reserve: 256 << 20,
            ..Default::default()
        };
        assert!(sample(&rule("when = \"disk_low\""), &facts)[0].holds);
        assert!(!sample(&rule("when = \"disk_low\"\nbelow = \"100 MiB\""), &facts)[0].holds);
        facts.disk_free = None;
        assert!(sample(&rule("when = \"disk_low\""), &facts).is_empty());
    }

    #[test]
    fn a_certificate_expiring_within_the_window_or_unreadable_holds() {
        let day = 86_400_000;
        let mut facts = Facts {
            now: 100 * day,
            ..Default::default()
        };
        facts.certificates.insert("/a.pem".into(), Ok(120 * day));
        facts.certificates.insert("/b.pem".into(), Ok(200 * day));
        facts
            .certificates
            .insert("/c.pem".into(), Err("not PEM".into()));
        let s = sample(&rule("when = \"certificate_expiring\""), &facts);
        let held: Vec<_> = s.iter().map(|s| s.holds).collect();
        assert_eq!(held, vec![true, false, true]);
        assert!(s[0].summary.contains("20 days"), "{}", s[0].summary);
        let only = sample(
            &rule(
                "when = \"certificate_expiring\"\ncertificates = [\"/b.pem\"]\nwithin = \"120d\"",
            ),
            &facts,
        );
        assert_eq!(only.len(), 1);
        assert!(only[0].holds);
    }

    #[test]
    fn an_unsynchronised_clock_holds_and_an_unknown_one_says_nothing() {
        let mut facts = Facts {
            clock_synchronised: Some(false),
            ..Default::default()
        };
        assert!(sample(&rule("when = \"clock_unsynchronised\""), &facts)[0].holds);
        facts.clock_synchronised = None;
        assert!(sample(&rule("when = \"clock_unsynchronised\""), &facts).is_empty());
    }
}
