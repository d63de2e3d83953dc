//! Alerts that reach someone: `[alerts]` rules watched, notices sent to
//! e-mail, webhooks and the hub.
//!
//! Every `check_every` the facts are gathered once (endpoint links from
//! the health registry, dead letters from the journal, free disk and the
//! clock from the device, certificate expiry from the files), each rule's
//! condition is judged on them (`conditions`, pure), and each alert — a
//! rule and its subject, such as one endpoint — moves through its states
//! (`state`, pure; fire once, repeat at the rule's interval outside quiet
//! hours, recover once).
//!
//! A notice is first written to the audit log (actor `alerts`, action
//! `alert.fired`, `alert.repeated` or `alert.recovered`, the rule and
//! subject as target), then handed to each of the rule's channels. Each
//! channel has its own task and a bounded queue: a slow or unreachable mail
//! server never holds up the checks, the other channels or the gateway.
//! A failed send is retried with doubling waits ([`RETRY_FIRST`] up to
//! [`RETRY_LONGEST`]) up to [`ATTEMPTS`] times, each failure logged; a
//! notice given up on is logged and audited (`alert.undelivered`). A full
//! queue drops the new notice with a warning rather than wait.

pub mod conditions;
pub mod email;
pub mod notice;
pub mod state;
pub mod webhook;

use crate::config::{AlertChannel, AlertRule, AlertsConfig, Config, EndpointKind, FhirAuth};
use crate::control::Gateway;
use conditions::Facts;
use notice::Notice;
use state::{Phase, Timing};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The wait before the second attempt of a notice; each later wait doubles.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// The longest wait between two attempts.
pub const RETRY_LONGEST: Duration = Duration::from_secs(60);
/// Attempts of one notice on one channel before it is given up on.
pub const ATTEMPTS: u32 = 8;
/// Notices waiting per channel; more are dropped with a warning.
const QUEUE: usize = 64;
/// The audit log's actor for every alert.
pub const ACTOR: &str = "alerts";

/// Starts the alerts of the running `gateway` (its `[alerts]` as it is
/// now); ends on `stop`. Nothing runs without rules.
pub fn start(gateway: Arc<dyn Gateway>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = gateway.config();
        let alerts = config.alerts.clone();
        if !alerts.enabled || alerts.rules.is_empty() {
            return;
        }
        let mut tasks = JoinSet::new();
        let mut senders = BTreeMap::new();
        for (name, channel) in &alerts.channels {
            match Sender::new(channel) {
                Ok(sender) => {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tasks.spawn(deliver(
                        name.clone(),
                        sender,
                        rx,
                        gateway.clone(),
                        stop.clone(),
                    ));
                    senders.insert(name.clone(), tx);
                }
                Err(e) => {
                    tracing::error!(channel = %name, error = %e, "an alert channel is not available")
                }
            }
        }
        tracing::info!(
            rules = alerts.rules.len(),
            channels = senders.len(),
            "alerts watching"
        );
        watch(gateway, alerts, senders, stop).await;
        while tasks.join_next().await.is_some() {}
    })
}

/// The checks, until `stop`.
async fn watch(
    gateway: Arc<dyn Gateway>,
    alerts: AlertsConfig,
    senders: BTreeMap<String, mpsc::Sender<Notice>>,
    stop: CancellationToken,
) {
    let mut phases: HashMap<(usize, Option<String>), Phase> = HashMap::new();
    let mut tick = tokio::time::interval(alerts.check_every.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let config = gateway.config();
        let facts = gather(gateway.as_ref(), &config, &alerts).await;
        let minute = local_minute(&config, facts.now);
        for (i, rule) in alerts.rules.iter().enumerate() {
            let timing = timing(rule);
            let quiet = AlertsConfig::quiet_hours(rule).is_some_and(|q| q.contains(minute));
            for sample in conditions::sample(rule, &facts) {
                let phase = phases.entry((i, sample.subject.clone())).or_default();
                let Some(step) =
                    phase.observe(sample.holds, sample.since, facts.now, timing, quiet)
                else {
                    continue;
                };
                let mut n = Notice::new(step, &rule.name, rule.when.as_str(), sample.subject);
                n.at = facts.now;
                n.since = phase.since().or(sample.since);
                n.summary = sample.summary;
                n.site = config.hub.site.clone();
                n.device = config.hub.device.clone();
                announce(gateway.as_ref(), rule, &n, &senders).await;
            }
        }
    }
}

/// Audits `notice`, then queues it on each of the rule's channels.
async fn announce(
    gateway: &dyn Gateway,
    rule: &AlertRule,
    notice: &Notice,
    senders: &BTreeMap<String, mpsc::Sender<Notice>>,
) {
    tracing::warn!(
        alert = %notice.target(),
        state = notice.state,
        summary = %notice.summary,
        "alert"
    );
    let detail = serde_json::json!({
        "id": notice.id,
        "alert": notice.alert,
        "summary": notice.summary,
        "since": notice.since,
        "channels": rule.channels,
    })
    .to_string();
    if let Err(e) = gateway
        .journal()
        .audit(
            ACTOR,
            &format!("alert.{}", notice.state),
            Some(&notice.target()),
            Some(&detail),
        )
        .await
    {
        tracing::error!(error = %e, alert = %notice.target(), "an alert could not be written to the audit log");
    }
    for channel in &rule.channels {
        let Some(tx) = senders.get(channel) else {
            continue;
        };
        if tx.try_send(notice.clone()).is_err() {
            tracing::warn!(channel = %channel, alert = %notice.target(), "the alert channel's queue is full; this notice is dropped");
        }
    }
}

fn timing(rule: &AlertRule) -> Timing {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Timing {
        hold: ms(rule.hold()),
        repeat: rule.repeat.map(|r| ms(r.0)),
    }
}

/// Minutes after local midnight at `now`, in the site's time zone.
fn local_minute(config: &Config, now: i64) -> u16 {
    let zone = jiff::tz::TimeZone::get(&config.site.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(now)
        .map(|t| {
            let local = t.to_zoned(zone);
            (local.hour() as u16) * 60 + local.minute() as u16
        })
        .unwrap_or(0)
}

/// Everything the rules are judged on, read once per check.
async fn gather(gateway: &dyn Gateway, config: &Config, alerts: &AlertsConfig) -> Facts {
    let journal = gateway.journal();
    let now = journal.now_ms();
    let health = gateway.health();
    let enabled: Vec<String> = config
        .endpoints
        .iter()
        .filter(|e| e.enabled)
        .map(|e| e.name.clone())
        .collect();
    let device = gateway.service().device(journal);
    let mut facts = Facts {
        now,
        endpoints: enabled.iter().map(|n| (n.clone(), health.get(n))).collect(),
        disk_free: device.disk_free,
        disk_reserve: device.disk_reserve,
        clock_synchronised: device.clock_synchronised,
        ..Default::default()
    };
    let wants = |k| alerts.rules.iter().any(|r| r.when == k);
    if wants(crate::config::AlertKind::DeadLetters) {
        match journal.endpoint_activity(enabled, now).await {
            Ok(activity) => {
                for a in activity.into_iter().filter(|a| a.dead > 0) {
                    facts.dead.insert(a.name, a.dead);
                }
            }
            Err(e) => tracing::warn!(error = %e, "alerts: cannot count dead letters"),
        }
    }
    if wants(crate::config::AlertKind::UpdateFailed) {
        facts.update = match crate::update::status(config.update.as_ref()).await {
            Some(Ok(s)) => {
                let seen = journal.failed_update().await.ok().flatten();
                Some(s.failed.map(|f| {
                    let at = seen
                        .filter(|r| r.slot == f.slot && r.version == f.version)
                        .map(|r| r.detected_at);
                    (f, at)
                }))
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "alerts: cannot read the boot state");
                None
            }
            None => None,
        };
    }
    if wants(crate::config::AlertKind::CertificateExpiring) {
        for path in certificates(config) {
            let expiry = crate::tls::certificate_expiry(&path).map_err(|e| e.to_string());
            facts
                .certificates
                .insert(path.display().to_string(), expiry);
        }
    }
    facts
}

/// Every certificate the configuration presents (the admin page's, the
/// hub uplink's, MLLP listeners' and senders', FHIR client certificates),
/// and those rules name, resolved as the gateway reads them.
pub fn certificates(config: &Config) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = Vec::new();
    out.extend(config.admin.cert.clone());
    if config.hub.enabled {
        out.extend(config.hub.cert.clone());
    }
    for e in config.endpoints.iter().filter(|e| e.enabled) {
        match &e.kind {
            EndpointKind::Mllp(m) => out.extend(m.tls.as_ref().and_then(|t| t.cert.clone())),
            EndpointKind::Fhir(f) => {
                if let FhirAuth::ClientCertificate { cert, .. } = &f.auth {
                    out.push(cert.clone());
                }
            }
            _ => {}
        }
    }
    for rule in &config.alerts.rules {
        out.extend(rule.certificates.iter().flatten().cloned());
    }
    let mut out: Vec<_> = out.iter().map(|p| crate::config::resolve(p)).collect();
    out.sort();
    out.dedup();
    out
}

/// One channel's way of sending.
enum Sender {
    Email(Box<email::Email>),
    Webhook(webhook::Webhook),
    Hub,
}

impl Sender {
    fn new(channel: &AlertChannel) -> Result<Sender, String> {
        Ok(match channel {
            AlertChannel::Email(e) => Sender::Email(Box::new(email::Email::new(e)?)),
            AlertChannel::Webhook(w) => Sender::Webhook(webhook::Webhook::new(w)?),
            AlertChannel::Hub {} => Sender::Hub,
        })
    }

    async fn send(&self, gateway: &dyn Gateway, notice: &Notice) -> Result<(), String> {
        match self {
            Sender::Email(e) => e.send(notice).await,
            Sender::Webhook(w) => w.send(notice, gateway.journal().now_ms()).await,
            Sender::Hub => {
                let detail = serde_json::to_string(notice).map_err(|e| e.to_string())?;
                gateway
                    .journal()
                    .record_hub_event(
                        &format!("alert.{}", notice.state),
                        Some(&notice.target()),
                        Some(&detail),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// The wait after failed attempt `n` (1 for the first).
pub fn retry_wait(n: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(RETRY_LONGEST)
}

/// Sends what is queued on one channel, in order, until `stop`.
async fn deliver(
    name: String,
    sender: Sender,
    mut queue: mpsc::Receiver<Notice>,
    gateway: Arc<dyn Gateway>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return,
            n = queue.recv() => match n { Some(n) => n, None => return },
        };
        let mut attempt = 1;
        loop {
            match sender.send(gateway.as_ref(), &notice).await {
                Ok(()) => {
                    tracing::info!(channel = %name, alert = %notice.target(), state = notice.state, "alert sent");
                    break;
                }
                Err(e) if attempt >= ATTEMPTS => {
                    tracing::error!(channel = %name, alert = %notice.target(), attempts = attempt, error = %e, "an alert could not be sent; given up");
                    let detail = serde_json::json!({"id": notice.id, "channel": name, "error": e})
                        .to_string();
                    if let Err(e) = gateway
                        .journal()
                        .audit(
                            ACTOR,
                            "alert.undelivered",
                            Some(&notice.target()),
                            Some(&detail),
                        )
                        .await
                    {
                        tracing::error!(error = %e, "an undelivered alert could not be written to the audit log");
                    }
                    break;
                }
                Err(e) => {
                    let wait = retry_wait(attempt);
                    tracing::warn!(channel = %name, alert = %notice.target(), attempt, error = %e, retry_in_s = wait.as_secs(), "an alert could not be sent; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_the_longest_wait() {
        let waits: Vec<u64> = (1..=8).map(|n| retry_wait(n).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_wait(u32::MAX), RETRY_LONGEST);
    }
}
