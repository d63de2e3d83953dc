//! `[alerts]`: downtime and error alerts, and the channels they are sent on.
//!
//! Channels are named tables (`[alerts.channels.oncall]`) of one `type`:
//! `email` (SMTP), `webhook` (a signed JSON POST) or `hub` (the uplink's
//! events topic). Rules (`[[alerts.rule]]`) say which condition is watched,
//! how long it must hold before the alert fires, how often a firing alert is
//! repeated, its quiet hours and its channels. Like `[hub]`, the section is
//! read at start: a change takes effect at the next start.

use super::units::{Size, Span};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The alerts' settings; without an `[alerts]` section nothing is watched.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// With an `[alerts]` section the rules are watched unless this is
    /// `false`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often every rule's condition is looked at.
    #[serde(default = "default_check_every")]
    pub check_every: Span,
    #[serde(default)]
    pub channels: BTreeMap<String, AlertChannel>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            check_every: default_check_every(),
            channels: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// Where an alert is sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertChannel {
    Email(EmailChannel),
    Webhook(WebhookChannel),
    /// The hub uplink's `events` topic, through the journal's hub outbox.
    Hub {},
}

impl AlertChannel {
    pub fn type_name(&self) -> &'static str {
        match self {
            AlertChannel::Email(_) => "email",
            AlertChannel::Webhook(_) => "webhook",
            AlertChannel::Hub {} => "hub",
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS before anything is sent; a
    /// server without STARTTLS is refused (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a test sink.
    None,
}

/// E-mail over SMTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    pub host: String,
    /// 587 with `starttls` or `none`, 465 with `tls`, when unset.
    pub port: Option<u16>,
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sender, `Name <address>` or a bare address.
    pub from: String,
    pub to: Vec<String>,
    /// PEM CA bundle the server is verified against instead of the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_channel_timeout")]
    pub timeout: Span,
}

impl EmailChannel {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls | SmtpSecurity::None => 587,
        })
    }
}

/// A JSON POST signed with HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: String,
    /// The HMAC key the receiver checks the signature with.
    pub secret: String,
    /// PEM CA bundle the server is verified against instead of the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_channel_timeout")]
    pub timeout: Span,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An endpoint not bound, open or connected, or its deliveries failing.
    EndpointDown,
    /// Messages given up on (dead letters) waiting for a person.
    DeadLetters,
    /// Free space of the journal's disk below `below`.
    DiskLow,
    /// A configured certificate expires within `within`.
    CertificateExpiring,
    /// The system clock is not synchronised.
    ClockUnsynchronised,
    /// A destination's circuit breaker tripped: it is paused, its messages
    /// wait for an operator to resume it.
    BreakerTripped,
    /// The bootloader fell back from a firmware update that never passed
    /// the readiness check (`[update]`); clear once another is installed.
    UpdateFailed,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::EndpointDown => "endpoint_down",
            AlertKind::DeadLetters => "dead_letters",
            AlertKind::DiskLow => "disk_low",
            AlertKind::CertificateExpiring => "certificate_expiring",
            AlertKind::ClockUnsynchronised => "clock_unsynchronised",
            AlertKind::BreakerTripped => "breaker_tripped",
            AlertKind::UpdateFailed => "update_failed",
        }
    }

    /// How long the condition must hold before the alert fires, when the
    /// rule does not say.
    pub fn default_hold(self) -> Duration {
        match self {
            AlertKind::EndpointDown => Duration::from_secs(5 * 60),
            AlertKind::DeadLetters
            | AlertKind::CertificateExpiring
            | AlertKind::BreakerTripped
            | AlertKind::UpdateFailed => Duration::ZERO,
            AlertKind::DiskLow => Duration::from_secs(60),
            // A clock takes a while to synchronise after a boot.
            AlertKind::ClockUnsynchronised => Duration::from_secs(15 * 60),
        }
    }
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub when: AlertKind,
    /// `endpoint_down`, `dead_letters`, `breaker_tripped`: only this endpoint (every enabled
    /// one when unset; each is its own alert).
    pub endpoint: Option<String>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<Span>,
    /// A firing alert is sent again this often; once when unset.
    pub repeat: Option<Span>,
    /// `"22:00-07:00"` in the site's time zone: repeats are held back.
    pub quiet_hours: Option<String>,
    pub channels: Vec<String>,
    /// `disk_low`: free space below this (twice the journal's
    /// `min_free_disk` when unset).
    pub below: Option<Size>,
    /// `certificate_expiring`: how long before expiry (30 days when unset).
    pub within: Option<Span>,
    /// `certificate_expiring`: the PEM files watched (every certificate the
    /// configuration presents when unset).
    pub certificates: Option<Vec<PathBuf>>,
    /// `dead_letters`: more than this many (0 when unset).
    pub above: Option<u64>,
}

impl AlertRule {
    pub fn hold(&self) -> Duration {
        self.hold.map_or_else(|| self.when.default_hold(), |s| s.0)
    }

    pub fn within(&self) -> Duration {
        self.within.map_or(Duration::from_secs(30 * 86400), |s| s.0)
    }
}

/// Quiet hours: a span of the day, `start` included, `end` excluded, in
/// minutes after midnight; it wraps past midnight when `start > end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: u16,
    pub end: u16,
}

impl QuietHours {
    /// Reads `"HH:MM-HH:MM"`.
    pub fn parse(s: &str) -> Result<QuietHours, String> {
        let bad = || format!("`quiet_hours` must be written \"HH:MM-HH:MM\", not `{s}`");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minute = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && m.to_string().len() <= 2).then_some(h * 60 + m)
        };
        let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!(
                "`quiet_hours` `{s}` starts and ends at the same time"
            ));
        }
        Ok(QuietHours { start, end })
    }

    /// Whether `minute` (after midnight, local time) is quiet.
    pub fn contains(self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// Where a problem of the section is: a key of `[alerts]`, a key of one
/// channel, or a key of one rule (by position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Section(&'static str),
    Channel(String, &'static str),
    Rule(usize, &'static str),
}

impl AlertsConfig {
    /// Every problem of the section; `endpoints` are the names of the
    /// configured endpoints, `hub` whether the uplink is configured.
    pub fn problems(&self, endpoints: &[&str], hub: bool) -> Vec<(At, String)> {
        let mut out = Vec::new();
        if self.check_every.0 < Duration::from_secs(1) {
            out.push((
                At::Section("check_every"),
                "`check_every` must be at least 1s".into(),
            ));
        }
        for (name, channel) in &self.channels {
            let mut bad = |key, m: String| {
                out.push((
                    At::Channel(name.clone(), key),
                    format!("channel `{name}`: {m}"),
                ));
            };
            if !super::is_name(name) {
                bad(
                    "type",
                    "a channel name is letters, digits, `-`, `_` or `.`".into(),
                );
            }
            match channel {
                AlertChannel::Email(e) => email_problems(e, &mut bad),
                AlertChannel::Webhook(w) => {
                    match reqwest::Url::parse(&w.url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                        _ => bad(
                            "url",
                            format!("`url` must be an http:// or https:// address, not `{}`", w.url),
                        ),
                    }
                    if w.secret.len() < 16 {
                        bad(
                            "secret",
                            "`secret` must be at least 16 characters: it is the key the receiver checks the signature with".into(),
                        );
                    }
                    if w.timeout.0 < Duration::from_secs(1) {
                        bad("timeout", "`timeout` must be at least 1s".into());
                    }
                }
                AlertChannel::Hub {} if !hub => bad(
                    "type",
                    "type `hub` sends on the hub uplink's events topic, which needs a [hub] section".into(),
                ),
                AlertChannel::Hub {} => {}
            }
        }
        let mut seen = BTreeMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let mut bad = |key, m: String| {
                out.push((At::Rule(i, key), format!("rule `{}`: {m}", rule.name)));
            };
            if !super::is_name(&rule.name) {
                bad(
                    "name",
                    "a rule name is letters, digits, `-`, `_` or `.`".into(),
                );
            }
            if seen.insert(rule.name.as_str(), i).is_some() {
                bad("name", "a second rule of this name".into());
            }
            if rule.channels.is_empty() {
                bad(
                    "channels",
                    "`channels` must name at least one channel".into(),
                );
            }
            for c in &rule.channels {
                if !self.channels.contains_key(c) {
                    let known = self
                        .channels
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("`, `");
                    bad(
                        "channels",
                        if known.is_empty() {
                            format!(
                                "unknown channel `{c}` (no [alerts.channels.NAME] is configured)"
                            )
                        } else {
                            format!("unknown channel `{c}` (configured: `{known}`)")
                        },
                    );
                }
            }
            let kind = rule.when;
            let only = |key: &'static str, set: bool, kinds: &[AlertKind]| {
                (set && !kinds.contains(&kind)).then(|| {
                    (
                        key,
                        format!("`{key}` does not apply to `when = \"{}\"`", kind.as_str()),
                    )
                })
            };
            let misplaced = [
                only(
                    "endpoint",
                    rule.endpoint.is_some(),
                    &[
                        AlertKind::EndpointDown,
                        AlertKind::DeadLetters,
                        AlertKind::BreakerTripped,
                    ],
                ),
                only("below", rule.below.is_some(), &[AlertKind::DiskLow]),
                only("above", rule.above.is_some(), &[AlertKind::DeadLetters]),
                only(
                    "within",
                    rule.within.is_some(),
                    &[AlertKind::CertificateExpiring],
                ),
                only(
                    "certificates",
                    rule.certificates.is_some(),
                    &[AlertKind::CertificateExpiring],
                ),
            ];
            for (key, m) in misplaced.into_iter().flatten() {
                bad(key, m);
            }
            if let Some(e) = &rule.endpoint {
                if !endpoints.contains(&e.as_str()) {
                    bad("endpoint", format!("unknown endpoint `{e}`"));
                }
            }
            if let Some(r) = rule.repeat {
                if r.0 < Duration::from_secs(60) {
                    bad("repeat", "`repeat` must be at least 1m".into());
                }
            }
            if let Some(q) = &rule.quiet_hours {
                if let Err(m) = QuietHours::parse(q) {
                    bad("quiet_hours", m);
                }
            }
            if rule.certificates.as_ref().is_some_and(|c| c.is_empty()) {
                bad("certificates", "`certificates` is empty: leave it out to watch every certificate the configuration presents".into());
            }
        }
        out
    }

    /// The quiet hours of rule `i`, already validated.
    pub fn quiet_hours(rule: &AlertRule) -> Option<QuietHours> {
        rule.quiet_hours
            .as_deref()
            .and_then(|q| QuietHours::parse(q).ok())
    }
}

fn email_problems(e: &EmailChannel, bad: &mut impl FnMut(&'static str, String)) {
    if e.host.trim().is_empty() {
        bad("host", "`host` is empty".into());
    }
    if e.port == Some(0) {
        bad("port", "`port` must be 1 to 65535".into());
    }
    if let Err(m) = e.from.parse::<lettre::message::Mailbox>() {
        bad("from", format!("`from` is not an e-mail address: {m}"));
    }
    if e.to.is_empty() {
        bad("to", "`to` must list at least one address".into());
    }
    for to in &e.to {
        if let Err(m) = to.parse::<lettre::message::Mailbox>() {
            bad("to", format!("`{to}` is not an e-mail address: {m}"));
        }
    }
    if e.username.is_some() != e.password.is_some() {
        bad(
            "username",
            "`username` and `password` go together: give both or neither".into(),
        );
    }
    if e.security == SmtpSecurity::None {
        if e.username.is_some() {
            bad(
                "security",
                "`security = \"none\"` would send the password in clear: use \"starttls\" or \"tls\"".into(),
            );
        }
        if e.ca_file.is_some() {
            bad(
                "ca_file",
                "`ca_file` is for TLS, and `security = \"none\"` has none".into(),
            );
        }
    }
    if e.timeout.0 < Duration::from_secs(1) {
        bad("timeout", "`timeout` must be at least 1s".into());
    }
}

fn yes() -> bool {
    true
}
fn default_check_every() -> Span {
    Span(Duration::from_secs(10))
}
fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}
fn default_channel_timeout() -> Span {
    Span(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_past_midnight_and_exclude_their_end() {
        let q = QuietHours::parse("22:00-07:00").unwrap();
        assert!(q.contains(22 * 60));
        assert!(q.contains(3 * 60));
        assert!(!q.contains(7 * 60));
        assert!(!q.contains(12 * 60));
        let day = QuietHours::parse("12:30-13:00").unwrap();
        assert!(day.contains(12 * 60 + 30) && !day.contains(13 * 60) && !day.contains(0));
        for bad in ["22-07", "25:00-07:00", "07:00-07:00", "7:00", "07:60-08:00"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }
}
