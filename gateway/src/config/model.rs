//! The typed configuration, and the shapes the file is read into.

use super::units::{Size, Span};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, when it came from a file.
    pub source: Option<PathBuf>,
    pub journal: JournalConfig,
    pub site: SiteConfig,
    pub endpoints: Vec<Endpoint>,
    pub routes: Vec<Route>,
    pub admin: AdminConfig,
    pub hub: HubConfig,
}

impl Config {
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub path: PathBuf,
    /// Live data above this refuses new messages; nothing queued is evicted.
    pub max_size: u64,
    /// Free disk below this refuses new messages before SQLite could fail.
    pub min_free_disk: u64,
    pub retention: Duration,
    pub purge_interval: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JournalFile {
    pub path: PathBuf,
    #[serde(default = "default_max_size")]
    pub max_size: Size,
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk: Size,
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    #[serde(default = "default_purge_interval")]
    pub purge_interval: Span,
}

fn default_max_size() -> Size {
    Size(8 << 30)
}
fn default_min_free_disk() -> Size {
    Size(256 << 20)
}
fn default_retention_days() -> u32 {
    90
}
fn default_purge_interval() -> Span {
    Span(Duration::from_secs(3600))
}

/// Facts about the installation site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// IANA time zone used for times that carry no offset (ASTM, some HL7).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

impl Default for SiteConfig {
    fn default() -> Self {
        Self {
            time_zone: default_time_zone(),
        }
    }
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// The local admin web page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port; loopback by default.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// HTTPS (the default). Plain HTTP only when set to `false`, and then
    /// only on a loopback address unless `plain_http_on_network` is set.
    #[serde(default = "yes")]
    pub tls: bool,
    #[serde(default)]
    pub plain_http_on_network: bool,
    /// Operator-supplied certificate chain and key (PEM). Without them a
    /// self-signed device certificate is generated on first start and kept
    /// beside the journal.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How long a login lasts.
    #[serde(default = "default_session_ttl")]
    pub session_ttl: Span,
    /// Failed logins in a row that lock an account, and for how long.
    #[serde(default = "default_lockout_after")]
    pub lockout_after: u32,
    #[serde(default = "default_lockout")]
    pub lockout: Span,
    /// Login attempts one client address may make per minute.
    #[serde(default = "default_login_rate")]
    pub login_attempts_per_minute: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_admin_listen(),
            tls: true,
            plain_http_on_network: false,
            cert: None,
            key: None,
            session_ttl: default_session_ttl(),
            lockout_after: default_lockout_after(),
            lockout: default_lockout(),
            login_attempts_per_minute: default_login_rate(),
        }
    }
}

fn default_session_ttl() -> Span {
    Span(Duration::from_secs(8 * 3600))
}
fn default_lockout_after() -> u32 {
    5
}
fn default_lockout() -> Span {
    Span(Duration::from_secs(15 * 60))
}
fn default_login_rate() -> u32 {
    20
}

fn default_admin_listen() -> String {
    "127.0.0.1:8443".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    #[serde(default)]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Which way messages cross an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    Bidirectional,
}

impl Direction {
    pub fn receives(self) -> bool {
        matches!(self, Direction::Inbound | Direction::Bidirectional)
    }
    pub fn sends(self) -> bool {
        matches!(self, Direction::Outbound | Direction::Bidirectional)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Bidirectional => "bidirectional",
        })
    }
}

/// What splits a destination's queue into lanes that run in parallel, FIFO
/// within each lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionBy {
    /// The patient identifier the source found in the message.
    Patient,
    /// The endpoint the message came from.
    Source,
}

/// A configured connection.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub name: String,
    pub direction: Direction,
    pub enabled: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub partition_by: Option<PartitionBy>,
    /// How many lanes of this destination may be in flight at once.
    pub lanes: usize,
    pub kind: EndpointKind,
    /// Line of the `[[endpoint]]` header, for messages about it.
    pub line: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointCommon {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: Option<Direction>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub timeout: Option<Span>,
    pub retry: Option<RetryFile>,
    pub partition_by: Option<PartitionBy>,
    pub lanes: Option<usize>,
}

/// The type of an endpoint and its type-specific settings.
#[derive(Debug, Clone)]
pub enum EndpointKind {
    /// Writes each delivered payload as a file into a directory.
    File(FileSinkConfig),
    /// Takes each file dropped into a directory as a message.
    FileDrop(FileDropConfig),
}

impl EndpointKind {
    pub const TYPES: &'static [&'static str] = &["file", "file-drop"];

    pub fn type_name(&self) -> &'static str {
        match self {
            EndpointKind::File(_) => "file",
            EndpointKind::FileDrop(_) => "file-drop",
        }
    }

    /// The directions this type supports; the first is the default.
    pub fn directions(&self) -> &'static [Direction] {
        match self {
            EndpointKind::File(_) => &[Direction::Outbound],
            EndpointKind::FileDrop(_) => &[Direction::Inbound],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Directory that receives one file per delivered message.
    pub path: PathBuf,
    /// File name extension of the written files.
    #[serde(default = "default_extension")]
    pub extension: String,
}

fn default_extension() -> String {
    "msg".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDropConfig {
    /// Directory watched for new files; a file is removed once journalled.
    pub path: PathBuf,
    /// Message type recorded for every file from this directory.
    #[serde(default = "default_drop_type")]
    pub message_type: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default = "default_poll")]
    pub poll_interval: Span,
}

fn default_drop_type() -> String {
    "file".into()
}
fn default_content_type() -> String {
    "application/octet-stream".into()
}
fn default_poll() -> Span {
    Span(Duration::from_millis(200))
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    /// Fraction of each backoff that is randomised away, so that many
    /// gateways do not hammer a recovering hub in step.
    pub jitter: f64,
    pub max_attempts: Option<u32>,
    pub max_age: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: None,
            max_age: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFile {
    pub initial: Option<Span>,
    pub max: Option<Span>,
    pub multiplier: Option<f64>,
    pub jitter: Option<f64>,
    pub max_attempts: Option<u32>,
    pub max_age: Option<Span>,
}

/// Which inbound messages go to which destinations, through which transform.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub from: Vec<String>,
    pub message_types: Vec<MessageTypePattern>,
    pub transform: String,
    pub to: Vec<String>,
    pub line: usize,
    pub(super) from_at: usize,
    pub(super) to_at: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub name: String,
    pub from: Vec<String>,
    #[serde(default)]
    pub message_types: Vec<String>,
    pub transform: Option<String>,
    pub to: Vec<String>,
}

/// `ORU^R01`, `ORU^*`, `ADT`, or `*`: a message type with optional wildcard
/// trigger. `ADT` alone means every ADT trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTypePattern {
    code: Option<String>,
    trigger: Option<String>,
}

impl MessageTypePattern {
    pub fn any() -> Self {
        Self {
            code: None,
            trigger: None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let (code, trigger) = match s.split_once('^') {
            Some((c, t)) => (c, Some(t)),
            None => (s, None),
        };
        let code = match code {
            "*" => None,
            c if valid(c) => Some(c.to_ascii_uppercase()),
            c => {
                return Err(format!(
                    "`{c}` is not a message type (expected e.g. \"ORU^R01\", \"ADT^*\" or \"*\")"
                ))
            }
        };
        let trigger = match trigger {
            None | Some("*") => None,
            Some(t) if valid(t) && code.is_some() => Some(t.to_ascii_uppercase()),
            Some(t) => {
                return Err(format!(
                    "`{t}` is not a trigger event (expected e.g. \"R01\" or \"*\")"
                ))
            }
        };
        Ok(Self { code, trigger })
    }

    /// Whether `message_type` (`CODE^TRIGGER` or `CODE`) matches.
    pub fn matches(&self, message_type: &str) -> bool {
        let mut parts = message_type.split('^');
        let code = parts.next().unwrap_or("");
        let trigger = parts.next().unwrap_or("");
        self.code
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case(code))
            && self
                .trigger
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case(trigger))
    }
}
