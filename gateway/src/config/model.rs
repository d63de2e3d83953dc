//! The typed configuration, and the shapes the file is read into.

pub use super::hub::HubConfig;
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
    pub service: ServiceConfig,
    pub alerts: super::AlertsConfig,
    /// `[update]`; `None`: firmware updates are not managed by the gateway.
    pub update: Option<super::UpdateConfig>,
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address and port. Unset: `0.0.0.0:8443` for HTTPS (reachable from
    /// the LAN), `127.0.0.1:8443` for plain HTTP; see [`Self::listen_address`].
    #[serde(default)]
    pub listen: Option<String>,
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
    /// Failed logins in a row, for one account from one client address,
    /// after which that pair waits `throttle_delay`, doubling with each
    /// further failure up to `throttle_max`. Other addresses are not
    /// slowed. `lockout_after` and `lockout` are the former names.
    #[serde(default = "default_throttle_after", alias = "lockout_after")]
    pub throttle_after: u32,
    #[serde(default = "default_throttle_delay")]
    pub throttle_delay: Span,
    #[serde(default = "default_throttle_max", alias = "lockout")]
    pub throttle_max: Span,
    /// Connections the page serves at once, and per client address.
    #[serde(default = "default_admin_connections")]
    pub max_connections: usize,
    #[serde(default = "default_admin_per_address")]
    pub max_connections_per_address: usize,
    /// Client addresses or networks served (`"10.1.2.3"`,
    /// `"10.1.0.0/16"`); empty: every address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// A request's headers must arrive within this.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Span,
    /// Login attempts one client address may make per minute.
    #[serde(default = "default_login_rate")]
    pub login_attempts_per_minute: u32,
    /// A bearer token a Prometheus may scrape `/metrics` with, besides the
    /// page's own logins and API tokens; empty or unset: none.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// First-run setup without a setup code, from the device itself
    /// (127.0.0.1, ::1) only; other addresses are refused. Default: a
    /// setup code is needed from everywhere.
    #[serde(default)]
    pub setup_from_loopback_only: bool,
}

/// Without an `[admin]` section the page is off; with one it is on unless
/// `enabled = false`.
impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: None,
            tls: true,
            plain_http_on_network: false,
            cert: None,
            key: None,
            session_ttl: default_session_ttl(),
            throttle_after: default_throttle_after(),
            throttle_delay: default_throttle_delay(),
            throttle_max: default_throttle_max(),
            max_connections: default_admin_connections(),
            max_connections_per_address: default_admin_per_address(),
            allow: Vec::new(),
            header_timeout: default_header_timeout(),
            login_attempts_per_minute: default_login_rate(),
            metrics_token: None,
            setup_from_loopback_only: false,
        }
    }
}

fn default_session_ttl() -> Span {
    Span(Duration::from_secs(8 * 3600))
}
fn default_throttle_after() -> u32 {
    3
}
fn default_throttle_delay() -> Span {
    Span(Duration::from_secs(1))
}
fn default_throttle_max() -> Span {
    Span(Duration::from_secs(15 * 60))
}
fn default_admin_connections() -> usize {
    64
}
fn default_admin_per_address() -> usize {
    16
}
fn default_header_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_login_rate() -> u32 {
    20
}

impl AdminConfig {
    /// How the page admits connections.
    pub fn admission(&self) -> crate::net::AdmissionRules {
        crate::net::AdmissionRules {
            allow: crate::net::Allowlist::parse(&self.allow).unwrap_or_default(),
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
        }
    }

    /// Problems of the page's connection limits, by key.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = listener_problems(&ListenerLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            allow: &self.allow,
            min_data_rate: 0,
            rate_window: Span(Duration::from_secs(1)),
            frame_timeout: ("header_timeout", self.header_timeout),
            idle_timeout: Span(Duration::from_secs(1)),
        });
        if self.throttle_delay.0.is_zero() || self.throttle_max.0 < self.throttle_delay.0 {
            out.push((
                "throttle_max",
                "`throttle_delay` must be above zero and `throttle_max` at least `throttle_delay`"
                    .into(),
            ));
        }
        out
    }

    /// The scrape token of `/metrics`, when one is set.
    pub fn metrics_token(&self) -> Option<&str> {
        self.metrics_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
    }

    /// Where the page listens: `listen`, or by default every interface for
    /// HTTPS and loopback only for plain HTTP.
    pub fn listen_address(&self) -> String {
        match &self.listen {
            Some(l) => l.clone(),
            None if self.tls => "0.0.0.0:8443".into(),
            None => "127.0.0.1:8443".into(),
        }
    }
}

/// Who restarts the gateway when it stops making progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchdogKind {
    /// systemd's notify socket (`WatchdogSec=` in the unit); outside
    /// systemd nothing watches.
    #[default]
    Systemd,
    /// A hardware watchdog device, for images without systemd.
    Device,
}

/// `[service]`: how the gateway runs as a service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub watchdog: WatchdogKind,
    /// The device of `watchdog = "device"`.
    #[serde(default = "default_watchdog_device")]
    pub watchdog_device: PathBuf,
    /// The timeout asked of the device: it resets the machine when not fed
    /// for this long.
    #[serde(default = "default_watchdog_timeout")]
    pub watchdog_timeout: Span,
    /// Which kernel LED shows which state; none by default.
    #[serde(default)]
    pub leds: LedConfig,
    /// The appliance's reset button; none by default.
    pub reset_button: Option<ResetButtonConfig>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            watchdog: WatchdogKind::default(),
            watchdog_device: default_watchdog_device(),
            watchdog_timeout: default_watchdog_timeout(),
            leds: LedConfig::default(),
            reset_button: None,
        }
    }
}

/// `[service.reset_button]`: where the reset button is wired, and how long
/// it is held for a factory reset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetButtonConfig {
    pub source: ResetButtonSource,
    /// `input`: the event device (`gpio-keys`).
    #[serde(default = "default_input_device")]
    pub device: PathBuf,
    /// `input`: the key code (`KEY_RESTART`, 0x198 = 408, by default).
    #[serde(default = "default_reset_key")]
    pub key: u16,
    /// `gpio`: the GPIO character device.
    #[serde(default = "default_gpio_chip")]
    pub chip: PathBuf,
    /// `gpio`: the line offset on the chip.
    #[serde(default)]
    pub line: u32,
    /// `gpio`: the button pulls the line low when pressed.
    #[serde(default = "yes")]
    pub active_low: bool,
    /// Held this long, the button starts the factory reset.
    #[serde(default = "default_reset_hold")]
    pub hold: Span,
    /// A level counts once stable this long.
    #[serde(default = "default_reset_debounce")]
    pub debounce: Span,
}

/// Which kind of device the reset button is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetButtonSource {
    /// A GPIO line through `/dev/gpiochipN`.
    Gpio,
    /// A key of an input event device (`/dev/input/eventN`).
    Input,
}

fn default_input_device() -> PathBuf {
    PathBuf::from("/dev/input/event0")
}
fn default_reset_key() -> u16 {
    ecko_hal::KEY_RESTART
}
fn default_gpio_chip() -> PathBuf {
    PathBuf::from("/dev/gpiochip0")
}
fn default_reset_hold() -> Span {
    Span(Duration::from_secs(10))
}
fn default_reset_debounce() -> Span {
    Span(Duration::from_millis(50))
}

/// `[service.leds]`: kernel LED names (`/sys/class/leds/<name>`) per role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    /// On when ready, blinking while running but not ready.
    pub ready: Option<String>,
    /// On while every destination delivers, blinking when some fail.
    pub uplink: Option<String>,
    /// On while any source is bound, open or connected.
    pub analyzer: Option<String>,
    /// On while something fails or the disk or flash warn.
    pub error: Option<String>,
}

impl LedConfig {
    pub fn any(&self) -> bool {
        self.ready.is_some()
            || self.uplink.is_some()
            || self.analyzer.is_some()
            || self.error.is_some()
    }
}

fn default_watchdog_device() -> PathBuf {
    PathBuf::from("/dev/watchdog")
}
fn default_watchdog_timeout() -> Span {
    Span(Duration::from_secs(30))
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
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    pub direction: Direction,
    pub enabled: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub partition_by: Option<PartitionBy>,
    /// How many lanes of this destination may be in flight at once.
    pub lanes: usize,
    /// Rate limit, circuit breaker, sandbox mode (`config::protection`).
    pub protection: super::Protection,
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
    pub rate_limit: Option<super::RateLimit>,
    pub circuit_breaker: Option<super::protection::BreakerFile>,
    pub mode: Option<super::Mode>,
    pub sandbox_url: Option<String>,
}

/// The type of an endpoint and its type-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointKind {
    /// Writes each delivered payload as a file into a directory.
    File(FileSinkConfig),
    /// Takes each file dropped into a directory as a message.
    FileDrop(FileDropConfig),
    /// HL7 v2 over MLLP: a listener (`listen`) or a sender (`connect`).
    Mllp(MllpConfig),
    /// Sends transaction Bundles to a FHIR R4 server over HTTP(S).
    Fhir(FhirSinkConfig),
    /// An ASTM analyzer on a serial line: results in, orders out.
    AstmSerial(super::AstmSerialConfig),
    /// An ASTM analyzer over TCP (server or client): results in, orders out.
    AstmTcp(super::AstmTcpConfig),
    /// DICOM: a store SCP for modalities, or a store SCU to a PACS.
    Dicom(super::DicomConfig),
    /// DICOMweb: stored objects sent to a server by STOW-RS.
    DicomWeb(super::DicomWebConfig),
    /// A Modality Worklist: orders routed to it become scheduled procedure
    /// steps a DICOM SCP answers C-FIND from.
    Worklist(super::WorklistConfig),
    /// REST over HTTP(S): a listener (`listen`) or a sender (`url`).
    Rest(Box<super::RestConfig>),
    /// SFTP: a remote directory polled (`pattern`) or uploaded into
    /// (`file_name`).
    Sftp(super::SftpConfig),
}

impl EndpointKind {
    /// The `type` of the file; the endpoint type's module is found by it
    /// (`crate::endpoints::of`).
    pub fn type_name(&self) -> &'static str {
        match self {
            EndpointKind::File(_) => "file",
            EndpointKind::FileDrop(_) => "file-drop",
            EndpointKind::Mllp(_) => "mllp",
            EndpointKind::Fhir(_) => "fhir",
            EndpointKind::AstmSerial(_) => "astm-serial",
            EndpointKind::AstmTcp(_) => "astm-tcp",
            EndpointKind::Dicom(_) => "dicom",
            EndpointKind::DicomWeb(_) => "dicomweb",
            EndpointKind::Worklist(_) => "worklist",
            EndpointKind::Rest(_) => "rest",
            EndpointKind::Sftp(_) => "sftp",
        }
    }
}

/// Transport security of a listener or of an outgoing connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain we present (a listener's certificate, or a
    /// client's for mutual TLS).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle: a client verifies the server with it; a listener
    /// verifies client certificates with it.
    pub ca: Option<PathBuf>,
    /// Listener only: refuse clients without a certificate signed by `ca`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Client only: the name the server certificate must carry (default:
    /// the host part of `connect`).
    pub server_name: Option<String>,
}

/// What an `AE` from the far end means for a message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApplicationErrorHandling {
    /// The message is dead (kept, visible, retryable by a person).
    #[default]
    Permanent,
    /// Try again with the retry policy.
    Retry,
}

/// What a listener does with a message holding bytes that are not valid in
/// its character set (MSH-18, or `charset` when MSH-18 is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InvalidText {
    /// Answer `AE` with an ERR naming the segment and field; store nothing.
    #[default]
    Refuse,
    /// Store it; the text is read with U+FFFD for each invalid byte.
    Replace,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpConfig {
    /// Listener: address to listen on, e.g. `"127.0.0.1:2575"` or `"[::]:2575"`.
    pub listen: Option<String>,
    /// Sender: `host:port` of the far end.
    pub connect: Option<String>,
    #[serde(default = "default_max_message")]
    pub max_message_size: Size,
    /// Listener: a frame that has started must end within this, or the
    /// connection is cut.
    #[serde(default = "default_frame_timeout")]
    pub frame_timeout: Span,
    /// Listener: a connection that completes no frame for this long is
    /// closed (bytes that make no frame do not count).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Span,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Listener: connections one sender address may hold at once.
    #[serde(default = "default_mllp_per_address")]
    pub max_connections_per_address: usize,
    /// Listener: sender addresses or networks served (`"10.1.2.3"`,
    /// `"10.1.0.0/16"`); empty: every address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Listener: bytes per second a frame must arrive at, measured over
    /// `rate_window`; 0: no minimum.
    #[serde(default = "default_mllp_min_rate")]
    pub min_data_rate: u64,
    #[serde(default = "default_mllp_rate_window")]
    pub rate_window: Span,
    /// Character set assumed when MSH-18 is empty: `"ASCII"`,
    /// `"8859/1"`, `"UNICODE UTF-8"` or `"windows-1252"`.
    #[serde(default = "default_charset")]
    pub charset: String,
    /// Listener: a message with bytes invalid in its character set is
    /// refused (`AE`, the default) or stored with replacement characters.
    #[serde(default)]
    pub on_invalid_text: InvalidText,
    /// Listener: TCP keepalive probes, so a peer that vanished without a
    /// FIN (power cut, cable pulled) frees its connection slot.
    #[serde(default)]
    pub keepalive: Keepalive,
    /// Sender: how long connecting (and the TLS handshake) may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Sender: how long writing one message may take.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Span,
    /// Sender: how long to wait for the far end's ACK.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: Span,
    /// Sender: what an `AE` answer means.
    #[serde(default)]
    pub application_error: ApplicationErrorHandling,
    pub tls: Option<TlsSettings>,
}

fn default_max_message() -> Size {
    Size(16 << 20)
}
fn default_frame_timeout() -> Span {
    Span(Duration::from_secs(60))
}
fn default_idle_timeout() -> Span {
    Span(Duration::from_secs(600))
}
fn default_max_connections() -> usize {
    64
}
fn default_mllp_per_address() -> usize {
    8
}
fn default_mllp_min_rate() -> u64 {
    512
}
fn default_mllp_rate_window() -> Span {
    Span(Duration::from_secs(10))
}
fn default_charset() -> String {
    "windows-1252".into()
}
fn default_ack_timeout() -> Span {
    Span(Duration::from_secs(30))
}
fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_send_timeout() -> Span {
    Span(Duration::from_secs(10))
}

/// TCP keepalive of a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// Probe at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Silence before the first probe.
    #[serde(default = "default_keepalive_idle")]
    pub idle: Span,
    /// Between probes.
    #[serde(default = "default_keepalive_interval")]
    pub interval: Span,
    /// Unanswered probes before the connection is dropped.
    #[serde(default = "default_keepalive_probes")]
    pub probes: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            enabled: true,
            idle: default_keepalive_idle(),
            interval: default_keepalive_interval(),
            probes: default_keepalive_probes(),
        }
    }
}
fn default_keepalive_idle() -> Span {
    Span(Duration::from_secs(60))
}
fn default_keepalive_interval() -> Span {
    Span(Duration::from_secs(15))
}
fn default_keepalive_probes() -> u32 {
    4
}

/// The connection limits every listener has, for their checks.
pub(crate) struct ListenerLimits<'a> {
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub allow: &'a [String],
    pub min_data_rate: u64,
    pub rate_window: Span,
    /// The frame deadline's key and value.
    pub frame_timeout: (&'static str, Span),
    pub idle_timeout: Span,
}

/// Problems of a listener's connection limits, by key.
pub(crate) fn listener_problems(l: &ListenerLimits) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if l.max_connections == 0 {
        out.push((
            "max_connections",
            "`max_connections` must be at least 1".into(),
        ));
    }
    if l.max_connections_per_address == 0 {
        out.push((
            "max_connections_per_address",
            "`max_connections_per_address` must be at least 1".into(),
        ));
    }
    if let Err(bad) = crate::net::Allowlist::parse(l.allow) {
        out.push((
            "allow",
            format!("`{bad}` is not an address or network (expected e.g. \"10.1.2.3\" or \"10.1.0.0/16\")"),
        ));
    }
    if l.min_data_rate > 0 && l.rate_window.0 < Duration::from_secs(1) {
        out.push((
            "rate_window",
            "`rate_window` must be at least 1s when `min_data_rate` is set".into(),
        ));
    }
    let (key, frame) = l.frame_timeout;
    if frame.0.is_zero() {
        out.push((key, format!("`{key}` must be above zero")));
    }
    if l.idle_timeout.0.is_zero() {
        out.push(("idle_timeout", "`idle_timeout` must be above zero".into()));
    }
    out
}

impl MllpConfig {
    /// How the listener admits connections.
    pub fn admission(&self) -> crate::net::AdmissionRules {
        crate::net::AdmissionRules {
            allow: crate::net::Allowlist::parse(&self.allow).unwrap_or_default(),
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
        }
    }

    /// How fast a sender must send.
    pub fn pace(&self) -> crate::net::PaceLimits {
        crate::net::PaceLimits {
            idle: self.idle_timeout.0,
            frame_deadline: self.frame_timeout.0,
            min_rate: self.min_data_rate,
            rate_window: self.rate_window.0,
        }
    }

    /// A sender's longest exchange: connect, send, wait for the ACK. The
    /// endpoint's `timeout` must be longer, so the sender's own, more
    /// telling error is what gets recorded.
    pub fn sender_budget(&self) -> Duration {
        self.connect_timeout.0 + self.send_timeout.0 + self.ack_timeout.0
    }

    /// The fallback character set, when the name is known.
    pub fn fallback_charset(&self) -> Option<ecko_protocol::hl7::Charset> {
        use ecko_protocol::hl7::Charset;
        match self.charset.trim().to_ascii_lowercase().as_str() {
            "windows-1252" | "cp1252" => Some(Charset::Windows1252),
            other => {
                Charset::from_hl7_name(other).or_else(|| Charset::from_hl7_name(&self.charset))
            }
        }
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (&self.listen, &self.connect) {
            (Some(_), Some(_)) => out.push(("connect", "an mllp endpoint has either `listen` (a listener) or `connect` (a sender), not both".into())),
            (None, None) => out.push(("type", "an mllp endpoint needs `listen` (a listener) or `connect` (a sender)".into())),
            (Some(l), None) => {
                if l.parse::<std::net::SocketAddr>().is_err() {
                    out.push(("listen", format!("`{l}` is not an address to listen on (expected e.g. \"127.0.0.1:2575\" or \"[::]:2575\")")));
                }
            }
            (None, Some(c)) => {
                if c.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                    out.push(("connect", format!("`{c}` is not host:port")));
                }
            }
        }
        if self.fallback_charset().is_none() {
            out.push(("charset", format!("unknown character set `{}` (expected \"ASCII\", \"8859/1\", \"UNICODE UTF-8\" or \"windows-1252\")", self.charset)));
        }
        out.extend(listener_problems(&ListenerLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            allow: &self.allow,
            min_data_rate: self.min_data_rate,
            rate_window: self.rate_window,
            frame_timeout: ("frame_timeout", self.frame_timeout),
            idle_timeout: self.idle_timeout,
        }));
        let k = &self.keepalive;
        if k.enabled
            && (k.idle.0 < Duration::from_secs(1)
                || k.interval.0 < Duration::from_secs(1)
                || k.probes == 0)
        {
            out.push((
                "keepalive",
                "`keepalive` needs `idle` and `interval` of at least 1s and `probes` of at least 1"
                    .into(),
            ));
        }
        if self.connect.is_some() {
            for (key, t) in [
                ("connect_timeout", self.connect_timeout),
                ("send_timeout", self.send_timeout),
                ("ack_timeout", self.ack_timeout),
            ] {
                if t.0.is_zero() {
                    out.push((key, format!("`{key}` must be longer than 0s")));
                }
            }
        }
        if self.max_message_size.0 < 1024 {
            out.push((
                "max_message_size",
                "`max_message_size` must be at least 1 KiB".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            if self.listen.is_some() {
                if tls.cert.is_none() || tls.key.is_none() {
                    out.push(("tls", "a TLS listener needs `cert` and `key`".into()));
                }
                if tls.require_client_cert && tls.ca.is_none() {
                    out.push((
                        "tls",
                        "`require_client_cert` needs `ca` to verify client certificates".into(),
                    ));
                }
            } else {
                if tls.ca.is_none() {
                    out.push(("tls", "a TLS sender needs `ca` to verify the server".into()));
                }
                if tls.cert.is_some() != tls.key.is_some() {
                    out.push((
                        "tls",
                        "a client certificate needs both `cert` and `key`".into(),
                    ));
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// An HL7 v2 file holding bytes invalid in its MSH-18 character set:
    /// moved to `rejected/` with the reason beside it (`refuse`), or
    /// stored with replacement characters (`replace`).
    #[serde(default)]
    pub on_invalid_text: InvalidText,
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

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirSinkConfig {
    /// The server's base URL; transaction Bundles are POSTed to it.
    pub url: String,
    /// How the gateway proves who it is; none when absent.
    #[serde(default)]
    pub auth: FhirAuth,
    /// PEM file of the CAs trusted for the server's certificate, instead of
    /// the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM file with the server's own certificate: only that certificate is
    /// accepted (it replaces the chain check).
    pub pinned_cert: Option<PathBuf>,
    /// Queued messages merged into one transaction Bundle (1: no merging).
    #[serde(default = "default_fhir_batch")]
    pub max_batch: usize,
    /// Send entries as the transforms make them: conditional `PUT
    /// Type?identifier=…` and `POST` with `If-None-Exist` (`true`); or as
    /// `PUT Type/<id>` on the UUID v5 of the same identifier (`false`, the
    /// default). Both are idempotent on the business identifier; the PUT by
    /// id is an atomic upsert without a search, and servers bound
    /// conditional transactions (Medplum refuses one that must create with
    /// more than 8 entries). README, "Conditional or by id".
    #[serde(default)]
    pub conditional_updates: bool,
    /// Most entries in one merged transaction.
    #[serde(default = "default_fhir_entries")]
    pub max_entries: usize,
    /// Local (analyzer or sender) code → LOINC code, added to codings in
    /// the gateway's local-code system (`urn:ecko-edge:<source>:code`, what
    /// the transforms give codes no standard system claims), whatever the
    /// source.
    #[serde(default)]
    pub code_map: std::collections::BTreeMap<String, CodeMapEntry>,
    /// Per inbound endpoint: its local codes → LOINC; wins over `code_map`
    /// for messages from that endpoint.
    #[serde(default)]
    pub code_map_by_source:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, CodeMapEntry>>,
}

fn default_fhir_batch() -> usize {
    1
}
fn default_fhir_entries() -> usize {
    50
}

/// How a FHIR endpoint authenticates.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FhirAuth {
    #[default]
    None,
    /// A fixed key in a request header.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        key: String,
    },
    /// OAuth 2.0 client credentials; the token is cached until it expires.
    #[serde(rename = "oauth2")]
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
    /// A client certificate (mutual TLS): PEM chain and PEM private key.
    ClientCertificate { cert: PathBuf, key: PathBuf },
}

fn default_api_key_header() -> String {
    "X-API-Key".into()
}

/// Where a local code maps to: a LOINC code (`"2345-7"`), with its display
/// and the result unit it holds for (`{ code = "2345-7", unit = "mg/dL" }`),
/// or a LOINC per unit (a list of those; what a LIVD import writes when a
/// vendor code has several).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CodeMapEntry {
    Code(String),
    Coding(LoincTarget),
    ByUnit(Vec<LoincTarget>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoincTarget {
    pub code: String,
    pub display: Option<String>,
    /// Only for results in this unit (as sent, or its UCUM code).
    pub unit: Option<String>,
}

impl CodeMapEntry {
    /// Every LOINC the entry names, in order.
    pub fn targets(&self) -> Vec<LoincTarget> {
        match self {
            CodeMapEntry::Code(code) => vec![LoincTarget {
                code: code.clone(),
                display: None,
                unit: None,
            }],
            CodeMapEntry::Coding(t) => vec![t.clone()],
            CodeMapEntry::ByUnit(list) => list.clone(),
        }
    }
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
    /// Outbound MLLP endpoint that receives an HL7 application
    /// acknowledgement (per the message's MSH-16) once the route's one
    /// destination has delivered the message or given up on it.
    pub application_ack: Option<String>,
    pub line: usize,
    pub(super) from_at: usize,
    pub(super) to_at: usize,
    pub(super) application_ack_at: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    pub name: String,
    pub from: Vec<String>,
    #[serde(default)]
    pub message_types: Vec<String>,
    pub transform: Option<String>,
    /// The template file of `transform = "template"`.
    pub template: Option<PathBuf>,
    pub to: Vec<String>,
    pub application_ack: Option<String>,
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

impl fmt::Display for MessageTypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.trigger) {
            (None, _) => f.write_str("*"),
            (Some(c), None) => write!(f, "{c}^*"),
            (Some(c), Some(t)) => write!(f, "{c}^{t}"),
        }
    }
}

impl FhirSinkConfig {
    /// What is wrong with these settings beyond their shape, if anything.
    pub fn problem(&self) -> Option<String> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Some(format!(
                "`url` must be an http:// or https:// base URL, not {:?}",
                self.url
            ));
        }
        if self.max_batch == 0 {
            return Some("`max_batch` must be at least 1".into());
        }
        if let FhirAuth::OAuth2 { token_url, .. } = &self.auth {
            if !(token_url.starts_with("http://") || token_url.starts_with("https://")) {
                return Some(format!(
                    "`auth.token_url` must be an http:// or https:// URL, not {token_url:?}"
                ));
            }
        }
        None
    }
}
