//! `[hub.commands]`: what the hub may have this gateway do, and as whom.
//!
//! The hub acts as one [`Actor`](crate::control::Actor) (`actor`, with
//! `role`), so every command goes through the same role checks and audit
//! records as the admin page. Reading a message's payload over the uplink
//! (patient data leaving the site on a second path) is off unless
//! `patient_data` says otherwise.

use super::units::Span;
use serde::Deserialize;
use std::time::Duration;

/// Every command this version knows, by the name a command payload gives.
pub const COMMAND_NAMES: &[&str] = &[
    "messages.retry",
    "endpoint.pause",
    "endpoint.resume",
    "endpoint.test",
    "message.get",
    "config.push",
    "log.bundle",
    "firmware.install",
];

/// Allowed when `allow` is not written: the operator's levers and reads.
/// Pushing a configuration must be allowed by name (and needs `config_key`).
pub const DEFAULT_ALLOWED: &[&str] = &[
    "messages.retry",
    "endpoint.pause",
    "endpoint.resume",
    "endpoint.test",
    "message.get",
];

/// The roles of the admin page's users, which the hub may be given.
const ROLES: &[&str] = &["viewer", "operator", "admin"];

/// The longest `max_age` accepted: seen command ids are kept this long
/// (plus the allowed clock skew), so a replay is refused either as seen or
/// as too old whatever `max_age` was when the id came.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The command policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandPolicy {
    /// The commands the hub may give, by name.
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// The role the hub acts with: `viewer`, `operator` or `admin`.
    #[serde(default = "default_role")]
    pub role: String,
    /// The name the audit log records for the hub's actions.
    #[serde(default = "default_actor")]
    pub actor: String,
    /// A command issued longer ago than this is refused as expired.
    #[serde(default = "default_max_age")]
    pub max_age: Span,
    /// Whether `message.get` may return a message's payload and patient id.
    #[serde(default)]
    pub patient_data: bool,
    /// Where `log.bundle` may upload: URL prefixes (`https://…/`); any
    /// HTTPS URL when empty.
    #[serde(default)]
    pub upload_to: Vec<String>,
}

impl Default for CommandPolicy {
    fn default() -> Self {
        CommandPolicy {
            allow: default_allow(),
            role: default_role(),
            actor: default_actor(),
            max_age: default_max_age(),
            patient_data: false,
            upload_to: Vec::new(),
        }
    }
}

fn default_allow() -> Vec<String> {
    DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect()
}
fn default_role() -> String {
    "operator".into()
}
fn default_actor() -> String {
    "hub".into()
}
fn default_max_age() -> Span {
    Span(Duration::from_secs(300))
}

impl CommandPolicy {
    /// Whether the hub may give command `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.allow.iter().any(|a| a == name)
    }

    /// Every problem with settings that parsed, `has_key` telling whether
    /// `[hub] config_key` is set.
    pub fn problems(&self, has_key: bool) -> Vec<String> {
        let mut out = Vec::new();
        for name in &self.allow {
            if !COMMAND_NAMES.contains(&name.as_str()) {
                out.push(format!(
                    "`commands.allow`: `{name}` is not a command (expected some of {})",
                    COMMAND_NAMES.join(", ")
                ));
            }
        }
        if !ROLES.contains(&self.role.as_str()) {
            out.push(format!(
                "`commands.role` must be one of {}, not `{}`",
                ROLES.join(", "),
                self.role
            ));
        }
        if self.actor.trim().is_empty() {
            out.push("`commands.actor` must name the hub in the audit log".into());
        }
        if self.max_age.0 < Duration::from_secs(1) || self.max_age.0 > MAX_AGE_LIMIT {
            out.push("`commands.max_age` must be between 1s and 24h".into());
        }
        for prefix in &self.upload_to {
            if !prefix.starts_with("https://") || prefix.len() <= "https://".len() {
                out.push(format!(
                    "`commands.upload_to`: `{prefix}` is not an https:// URL prefix"
                ));
            }
        }
        if self.allows("config.push") {
            if !has_key {
                out.push(
                    "`commands.allow` has `config.push`, which needs `config_key` (the hub's public key)"
                        .into(),
                );
            }
            if self.role != "admin" {
                out.push(
                    "`commands.allow` has `config.push`, which needs `commands.role = \"admin\"`"
                        .into(),
                );
            }
        }
        out
    }
}
