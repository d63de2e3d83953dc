//! `[hub]`: the uplink to the central Integration Hub over MQTT.
//!
//! One section, not an endpoint type: the uplink carries the gateway's own
//! status, health, events and commands, not messages; there is exactly one
//! per device, no route names it, and it has no outbox lane of messages.
//! Pausing or editing it through its own commands would cut the channel the
//! commands come in on.

use super::hub_commands::CommandPolicy;
use super::units::Span;
use base64::Engine;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How payloads are written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// CBOR (RFC 8949), the default: small and typed.
    Cbor,
    /// JSON, to read with any MQTT client while debugging.
    Json,
}

/// Which MQTT the uplink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 5, or 3.1.1 from the first broker that answers 5 the way a
    /// 3.1.1 broker does, until the gateway restarts.
    #[serde(rename = "auto")]
    Auto,
    /// MQTT 5 only: a 3.1.1 broker is refused.
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1 only.
    #[serde(rename = "3.1.1")]
    V311,
}

/// The hub uplink's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// With a `[hub]` section the uplink runs unless this is `false`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `mqtt://host:port` (plain) or `mqtts://host:port` (TLS).
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_site")]
    pub site: String,
    #[serde(default = "default_device")]
    pub device: String,
    /// Every topic starts with this, after `{site}` and `{device}` are
    /// replaced; it ends with `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The MQTT client id; `ecko-{site}-{device}` when unset. The broker
    /// keeps the session (subscriptions, queued commands) under it.
    pub client_id: Option<String>,
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    #[serde(default = "default_keepalive")]
    pub keepalive: Span,
    /// `auto` (the default), `5` or `3.1.1`.
    #[serde(default = "default_protocol")]
    pub protocol: MqttProtocol,
    /// With MQTT 5: how long the broker keeps the session (subscriptions,
    /// commands and orders queued) of a gateway that is away. With 3.1.1
    /// that is the broker's own setting.
    #[serde(default = "default_session_expiry")]
    pub session_expiry: Span,
    /// How often `health` is published when nothing changes.
    #[serde(default = "default_health_interval")]
    pub health_interval: Span,
    /// How often `stats` is published.
    #[serde(default = "default_stats_interval")]
    pub stats_interval: Span,
    /// First and longest wait before connecting again; each failure doubles
    /// the wait, with jitter.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Span,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Span,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA bundle (PEM) the broker is verified against (`mqtts://`); the
    /// system's trust store when unset.
    pub ca_file: Option<PathBuf>,
    /// Certificate chain and key (PEM): the device's identity for mutual
    /// TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The hub's ed25519 public key (32 bytes, standard base64): a pushed
    /// configuration is applied only with a valid signature by it.
    pub config_key: Option<String>,
    /// What the hub's commands may do (`[hub.commands]`).
    #[serde(default)]
    pub commands: CommandPolicy,
}

/// Without a `[hub]` section there is no uplink.
impl Default for HubConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: default_url(),
            site: default_site(),
            device: default_device(),
            prefix: default_prefix(),
            client_id: None,
            format: default_format(),
            keepalive: default_keepalive(),
            protocol: default_protocol(),
            session_expiry: default_session_expiry(),
            health_interval: default_health_interval(),
            stats_interval: default_stats_interval(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            username: None,
            password: None,
            ca_file: None,
            cert: None,
            key: None,
            config_key: None,
            commands: CommandPolicy::default(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_url() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_site() -> String {
    "site".into()
}
fn default_device() -> String {
    "gateway".into()
}
fn default_prefix() -> String {
    "ecko/{site}/{device}/".into()
}
fn default_format() -> PayloadFormat {
    PayloadFormat::Cbor
}
fn default_keepalive() -> Span {
    Span(Duration::from_secs(30))
}
fn default_protocol() -> MqttProtocol {
    MqttProtocol::Auto
}
fn default_session_expiry() -> Span {
    Span(Duration::from_secs(7 * 24 * 3600))
}
fn default_health_interval() -> Span {
    Span(Duration::from_secs(30))
}
fn default_stats_interval() -> Span {
    Span(Duration::from_secs(300))
}
fn default_reconnect_min() -> Span {
    Span(Duration::from_secs(1))
}
fn default_reconnect_max() -> Span {
    Span(Duration::from_secs(60))
}

/// Where the broker is, from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl HubConfig {
    /// The broker's host and port and whether the link is TLS.
    pub fn broker(&self) -> Result<BrokerAddress, String> {
        let (tls, rest) = if let Some(r) = self.url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = self.url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "`url` must start with mqtt:// or mqtts://, not `{}`",
                self.url
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, "")) => (h, None),
                Some((h, p)) => (h, p.strip_prefix(':')),
                None => return Err(format!("`url` has an unclosed `[`: `{}`", self.url)),
            },
            None => match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
        };
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("`url` has a bad port `{p}`")),
            },
        };
        if host.is_empty() || host.contains(['/', '@']) {
            return Err(format!("`url` has no host: `{}`", self.url));
        }
        Ok(BrokerAddress {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// The topic prefix with `{site}` and `{device}` replaced.
    pub fn topic_prefix(&self) -> String {
        self.prefix
            .replace("{site}", &self.site)
            .replace("{device}", &self.device)
    }

    /// The MQTT client id.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("ecko-{}-{}", self.site, self.device))
    }

    /// The public key of `config_key`; `None` when it is not set.
    pub fn config_key_bytes(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(text) = &self.config_key else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("`config_key` is not base64: {e}"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| {
                format!(
                    "`config_key` must be an ed25519 public key of 32 bytes, not {}",
                    bytes.len()
                )
            })
    }

    /// Every problem with settings that parsed: (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = self.broker() {
            out.push(("url", e));
        }
        for (key, value) in [("site", &self.site), ("device", &self.device)] {
            if !is_topic_level(value) {
                out.push((
                    key,
                    format!(
                        "`{key}` must be a name of letters, digits, `-`, `_` or `.`, not `{value}`"
                    ),
                ));
            }
        }
        let prefix = self.topic_prefix();
        if !prefix.ends_with('/') || prefix.starts_with('/') {
            out.push((
                "prefix",
                "`prefix` must end with `/` and not start with one".into(),
            ));
        }
        if prefix.contains(['+', '#', '\0']) {
            out.push((
                "prefix",
                "`prefix` must not hold the wildcards `+` or `#`".into(),
            ));
        }
        for (key, span) in [
            ("keepalive", self.keepalive),
            ("health_interval", self.health_interval),
            ("stats_interval", self.stats_interval),
            ("reconnect_min", self.reconnect_min),
        ] {
            if span.0 < Duration::from_secs(1) {
                out.push((key, format!("`{key}` must be at least 1s")));
            }
        }
        if self.keepalive.0 > Duration::from_secs(65535) {
            out.push(("keepalive", "`keepalive` must be at most 65535s".into()));
        }
        if self.session_expiry.0 > Duration::from_secs(u32::MAX.into()) {
            out.push((
                "session_expiry",
                format!("`session_expiry` must be at most {}s", u32::MAX),
            ));
        }
        if self.reconnect_max.0 < self.reconnect_min.0 {
            out.push((
                "reconnect_max",
                "`reconnect_max` must not be shorter than `reconnect_min`".into(),
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            out.push((
                "cert",
                "`cert` and `key` go together (the device's certificate and its key)".into(),
            ));
        }
        let tls = self.broker().is_ok_and(|b| b.tls);
        if !tls && (self.ca_file.is_some() || self.cert.is_some()) {
            out.push((
                "url",
                "`ca_file`, `cert` and `key` need an mqtts:// url".into(),
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            out.push(("password", "`password` needs `username`".into()));
        }
        if let Err(e) = self.config_key_bytes() {
            out.push(("config_key", e));
        }
        for message in self.commands.problems(self.config_key.is_some()) {
            out.push(("commands", message));
        }
        out
    }
}

/// One level of an MQTT topic that needs no escaping anywhere.
fn is_topic_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
