//! Whether the gateway is ready to do its job, component by component:
//! the body of `/readyz`.
//!
//! Ready means every component is `ok` or `warning`; one `failing`
//! component makes the whole gateway not ready (HTTP 503):
//!
//! - `journal`: the writer answers; otherwise nothing can be stored.
//! - `disk`: failing below the journal's free-disk reserve (new messages
//!   are refused there) or when the kernel remounted it read-only, a
//!   warning below twice the reserve, so the alert comes before the
//!   refusals.
//! - `flash`: a warning when an eMMC card reports its pre-EOL warning or
//!   urgent state, or 90 % or more of its rated life used.
//! - `clock`: a warning only: an unsynchronised clock still moves messages,
//!   but the times the gateway adds to them are suspect.
//! - each enabled source: failing unless up (bound, open, connected,
//!   watching).
//! - each enabled destination: failing while its deliveries fail (or it is
//!   down, or its worker does not run); refusing (the far side answers "no")
//!   is a warning, the messages are dead and visible, the link works.
//!
//! The body is shown without a session, so it carries states and times
//! only: no error texts, which may quote a destination's answer.

use crate::health::{Condition, LinkState};
use std::collections::BTreeMap;

/// The state of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Ok,
    Warning,
    Failing,
}

/// One component's state and what it is about.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Component {
    pub status: Check,
    /// A short text (`not answering`, `below the reserve`; why the journal
    /// refuses writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<std::borrow::Cow<'static, str>>,
    /// Unix ms since when an endpoint's link is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Free bytes, for the disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bytes: Option<u64>,
    /// Whether a real-time clock exists, for the clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtc: Option<bool>,
}

impl Component {
    fn new(status: Check, detail: Option<&'static str>) -> Self {
        Self {
            status,
            detail: detail.map(std::borrow::Cow::Borrowed),
            since: None,
            free_bytes: None,
            rtc: None,
        }
    }
}

/// Whether an enabled endpoint takes messages in or delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRole {
    Source,
    Destination,
}

/// What is known of one enabled endpoint.
#[derive(Debug, Clone)]
pub struct EndpointFact {
    pub name: String,
    pub role: EndpointRole,
    /// What its task last reported; `None` before it reported anything.
    pub link: Option<LinkState>,
}

/// What the box itself says: disk, flash, clock.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceFacts {
    pub disk_free: Option<u64>,
    pub disk_reserve: u64,
    /// The journal's filesystem is mounted read-only.
    pub read_only: bool,
    pub wear: Vec<ecko_hal::Wear>,
    /// `None` when the clock's state could not be read.
    pub clock_synchronised: Option<bool>,
    pub rtc_present: bool,
}

#[cfg(test)]
impl DeviceFacts {
    /// A box with 10 GiB free over a 256 MiB reserve, unworn flash and a
    /// synchronised clock.
    pub(crate) fn all_well() -> Self {
        DeviceFacts {
            disk_free: Some(10 << 30),
            disk_reserve: 256 << 20,
            read_only: false,
            wear: Vec::new(),
            clock_synchronised: Some(true),
            rtc_present: true,
        }
    }
}

/// The facts readiness is judged on, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Facts {
    pub journal_answers: bool,
    /// Why the journal refuses every write (a full disk at start, a newer
    /// gateway's schema), if it does.
    pub journal_unwritable: Option<String>,
    pub device: DeviceFacts,
    pub endpoints: Vec<EndpointFact>,
}

/// The verdict and its reasons; serialised as the `/readyz` body.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub journal: Component,
    pub disk: Component,
    pub flash: Component,
    pub clock: Component,
    pub sources: BTreeMap<String, Component>,
    pub destinations: BTreeMap<String, Component>,
}

/// How every listener's health reason begins when its bind failed.
pub const LISTEN_FAILED: &str = "cannot listen on ";

fn source(link: Option<&LinkState>) -> Component {
    let Some(link) = link else {
        return Component::new(Check::Failing, Some("not started"));
    };
    let mut c = match link.condition {
        Condition::Up => Component::new(Check::Ok, None),
        _ => Component::new(Check::Failing, Some("not bound, open or connected")),
    };
    // A listener that cannot bind says why (a port in use, a low port
    // without the capability and its fix, `net::low_port`). Other reasons
    // stay off this unauthenticated page: they may name files or peers.
    if let (Condition::Down, Some(why)) = (&link.condition, &link.detail) {
        if why.starts_with(LISTEN_FAILED) {
            c.detail = Some(why.clone().into());
        }
    }
    c.since = Some(link.since);
    c
}

fn destination(link: Option<&LinkState>) -> Component {
    let Some(link) = link else {
        return Component::new(Check::Failing, Some("worker not running"));
    };
    let mut c = match link.condition {
        Condition::Up => Component::new(Check::Ok, None),
        Condition::Idle => Component::new(Check::Ok, Some("nothing delivered yet")),
        Condition::Refusing => Component::new(Check::Warning, Some("refusing messages")),
        Condition::Paused => Component::new(
            Check::Warning,
            Some("paused by its circuit breaker; messages wait for an operator"),
        ),
        Condition::Failing => Component::new(Check::Failing, Some("deliveries failing")),
        Condition::Down => Component::new(Check::Failing, Some("down")),
    };
    c.since = Some(link.since);
    c
}

fn disk(d: &DeviceFacts) -> Component {
    let mut c = match d.disk_free {
        _ if d.read_only => Component::new(Check::Failing, Some("mounted read-only")),
        None => Component::new(Check::Warning, Some("free space unknown")),
        Some(free) if free < d.disk_reserve => Component::new(
            Check::Failing,
            Some("below the reserve: messages are refused"),
        ),
        Some(free) if free < d.disk_reserve.saturating_mul(2) => {
            Component::new(Check::Warning, Some("low: close to the reserve"))
        }
        Some(_) => Component::new(Check::Ok, None),
    };
    c.free_bytes = d.disk_free;
    c
}

/// A card near the end of its life: pre-EOL warning or urgent, or 90 % or
/// more of its rated erase cycles used (life time estimate 0x0A or above).
fn worn(w: &ecko_hal::Wear) -> bool {
    matches!(
        w.pre_eol,
        ecko_hal::PreEol::Warning | ecko_hal::PreEol::Urgent
    ) || w.life_time.is_some_and(|(a, b)| a.max(b) >= 0x0A)
}

fn clock(d: &DeviceFacts) -> Component {
    let mut c = match d.clock_synchronised {
        Some(true) => Component::new(Check::Ok, None),
        Some(false) => Component::new(Check::Warning, Some("not synchronised")),
        None => Component::new(Check::Warning, Some("state unknown")),
    };
    c.rtc = Some(d.rtc_present);
    c
}

/// What the dashboard says about the box itself, one line per problem.
pub fn device_alerts(d: &DeviceFacts) -> Vec<String> {
    let mut alerts = Vec::new();
    if d.clock_synchronised == Some(false) {
        alerts.push(
            "the system clock is not synchronised: times the gateway adds to messages may be wrong"
                .to_string(),
        );
    }
    if d.read_only {
        alerts.push("the journal's filesystem is mounted read-only: messages are refused".into());
    }
    match d.disk_free {
        Some(free) if free < d.disk_reserve.saturating_mul(2) => alerts.push(format!(
            "{} MiB free on the journal's disk; new messages are refused below {} MiB",
            free >> 20,
            d.disk_reserve >> 20
        )),
        _ => {}
    }
    for w in d.wear.iter().filter(|w| worn(w)) {
        alerts.push(format!(
            "flash {} is near the end of its life: plan to replace the device",
            w.device
        ));
    }
    alerts
}

/// Judges `facts`.
pub fn assess(facts: &Facts) -> Readiness {
    let journal = if !facts.journal_answers {
        Component::new(Check::Failing, Some("not answering"))
    } else if let Some(reason) = &facts.journal_unwritable {
        Component {
            detail: Some(reason.clone().into()),
            ..Component::new(Check::Failing, None)
        }
    } else {
        Component::new(Check::Ok, None)
    };
    let flash = if facts.device.wear.iter().any(worn) {
        Component::new(Check::Warning, Some("near the end of its life"))
    } else {
        Component::new(Check::Ok, None)
    };
    let mut sources = BTreeMap::new();
    let mut destinations = BTreeMap::new();
    for e in &facts.endpoints {
        match e.role {
            EndpointRole::Source => sources.insert(e.name.clone(), source(e.link.as_ref())),
            EndpointRole::Destination => {
                destinations.insert(e.name.clone(), destination(e.link.as_ref()))
            }
        };
    }
    let disk = disk(&facts.device);
    let clock = clock(&facts.device);
    let ready = [&journal, &disk, &flash, &clock]
        .into_iter()
        .chain(sources.values())
        .chain(destinations.values())
        .all(|c| c.status != Check::Failing);
    Readiness {
        ready,
        journal,
        disk,
        flash,
        clock,
        sources,
        destinations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(condition: Condition) -> Option<LinkState> {
        Some(LinkState {
            condition,
            since: 1_000,
            detail: Some("connection refused by 10.0.0.9".into()),
            last_ok_at: None,
        })
    }

    fn device() -> DeviceFacts {
        DeviceFacts::all_well()
    }

    fn facts(endpoints: Vec<EndpointFact>) -> Facts {
        Facts {
            journal_answers: true,
            journal_unwritable: None,
            device: device(),
            endpoints,
        }
    }

    fn endpoint(name: &str, role: EndpointRole, link: Option<LinkState>) -> EndpointFact {
        EndpointFact {
            name: name.into(),
            role,
            link,
        }
    }

    #[test]
    fn a_gateway_with_bound_listeners_and_working_destinations_is_ready() {
        let r = assess(&facts(vec![
            endpoint("lab", EndpointRole::Source, link(Condition::Up)),
            endpoint("hub", EndpointRole::Destination, link(Condition::Up)),
            endpoint("archive", EndpointRole::Destination, link(Condition::Idle)),
        ]));
        assert!(r.ready, "{r:?}");
        assert_eq!(r.sources["lab"].since, Some(1_000));
    }

    #[test]
    fn a_failing_destination_an_unbound_listener_or_a_silent_or_unwritable_journal_make_it_not_ready(
    ) {
        for (f, what) in [
            (
                facts(vec![endpoint(
                    "hub",
                    EndpointRole::Destination,
                    link(Condition::Failing),
                )]),
                "failing destination",
            ),
            (
                facts(vec![endpoint(
                    "lab",
                    EndpointRole::Source,
                    link(Condition::Down),
                )]),
                "unbound listener",
            ),
            (
                facts(vec![endpoint("lab", EndpointRole::Source, None)]),
                "listener not started",
            ),
            (
                Facts {
                    journal_answers: false,
                    ..facts(vec![])
                },
                "journal",
            ),
            (
                Facts {
                    journal_unwritable: Some(
                        "cannot write: the disk is full; every message is refused until space is freed"
                            .into(),
                    ),
                    ..facts(vec![])
                },
                "journal unwritable on a full disk",
            ),
            (
                Facts {
                    device: DeviceFacts {
                        disk_free: Some(1 << 20),
                        ..device()
                    },
                    ..facts(vec![])
                },
                "disk below the reserve",
            ),
            (
                Facts {
                    device: DeviceFacts {
                        read_only: true,
                        ..device()
                    },
                    ..facts(vec![])
                },
                "read-only filesystem",
            ),
        ] {
            assert!(!assess(&f).ready, "{what}");
        }
    }

    #[test]
    fn a_refusing_destination_a_low_disk_and_an_unsynchronised_clock_are_warnings() {
        let r = assess(&Facts {
            device: DeviceFacts {
                disk_free: Some(300 << 20),
                clock_synchronised: Some(false),
                wear: vec![ecko_hal::Wear {
                    device: "mmcblk0".into(),
                    life_time: Some((0x03, 0x0A)),
                    pre_eol: ecko_hal::PreEol::Normal,
                }],
                ..device()
            },
            ..facts(vec![endpoint(
                "hub",
                EndpointRole::Destination,
                link(Condition::Refusing),
            )])
        });
        assert!(r.ready, "{r:?}");
        assert_eq!(r.disk.status, Check::Warning);
        assert_eq!(r.clock.status, Check::Warning);
        assert_eq!(r.flash.status, Check::Warning);
        assert_eq!(r.destinations["hub"].status, Check::Warning);
    }

    #[test]
    fn the_dashboard_hears_of_an_unsynchronised_clock_a_low_disk_a_read_only_mount_and_worn_flash()
    {
        assert!(device_alerts(&device()).is_empty());
        let alerts = device_alerts(&DeviceFacts {
            disk_free: Some(300 << 20),
            clock_synchronised: Some(false),
            read_only: true,
            wear: vec![ecko_hal::Wear {
                device: "mmcblk0".into(),
                life_time: None,
                pre_eol: ecko_hal::PreEol::Urgent,
            }],
            ..device()
        });
        assert_eq!(alerts.len(), 4, "{alerts:#?}");
        assert!(alerts[0].contains("clock is not synchronised"));
        assert!(alerts[2].contains("300 MiB free"));
        assert!(alerts[3].contains("mmcblk0"));
    }

    #[test]
    fn the_body_carries_no_error_text_of_a_link() {
        let r = assess(&facts(vec![endpoint(
            "hub",
            EndpointRole::Destination,
            link(Condition::Failing),
        )]));
        let body = serde_json::to_string(&r).unwrap();
        assert!(!body.contains("10.0.0.9"), "{body}");
        assert!(body.contains("\"hub\":{\"status\":\"failing\""), "{body}");
    }

    #[test]
    fn a_listener_that_cannot_bind_says_why_and_other_source_errors_stay_hidden() {
        let mut unbound = link(Condition::Down);
        let why = format!("{LISTEN_FAILED}0.0.0.0:104: permission denied: port 104 ...");
        if let Some(l) = unbound.as_mut() {
            l.detail = Some(why.clone());
        }
        let r = assess(&facts(vec![
            endpoint("pacs", EndpointRole::Source, unbound),
            endpoint("lab", EndpointRole::Source, link(Condition::Down)),
        ]));
        assert_eq!(r.sources["pacs"].detail.as_deref(), Some(why.as_str()));
        let body = serde_json::to_string(&r).unwrap();
        assert!(!body.contains("10.0.0.9"), "{body}");
    }
}
