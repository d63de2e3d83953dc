//! Settings of the `astm-serial` and `astm-tcp` endpoint types.
//!
//! Both carry the same line profile (the deviations of an analyzer family
//! from LIS01-A2: framing, frame length, checksum, line terminator, sequence
//! numbering) and the same order settings; `astm-serial` adds the device and
//! its line settings, `astm-tcp` the role and address. The keys are written
//! out in each struct (rather than flattened) so that unknown keys stay
//! errors.

use super::units::{Size, Span};
use ecko_protocol::astm::message::TestIdComponent;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// How records travel on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AstmFraming {
    /// E1381 / LIS01-A2 frames with the ENQ/ACK/EOT handshake.
    #[default]
    E1381,
    /// Records only, one per line, nothing acknowledged (some TCP analyzers).
    Raw,
}

/// Record separator sent in raw framing (all three are accepted on receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AstmLineTerminator {
    #[default]
    Cr,
    Crlf,
    Lf,
}

/// Whether pending orders are pushed to the analyzer or only given when it
/// asks. Host queries are answered in both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AstmOrderMode {
    /// Orders only as answers to the analyzer's host queries.
    #[default]
    Query,
    /// Also download pending orders whenever the line is idle.
    Broadcast,
}

/// Where the analyzer's test code sits in O-5 and R-3: `"auto"` (the
/// default: the first non-empty of components 4, 5 and 6, see
/// [`TestIdComponent`] for why the first), or `4`, `5`, `6` (written as a
/// number or a string) for that component only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TestIdPosition(pub TestIdComponent);

impl<'de> Deserialize<'de> for TestIdPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Number(n) => n.to_string(),
            Written::Text(t) => t,
        };
        TestIdComponent::parse(&text)
            .map(TestIdPosition)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`test_id_component` is `{text}`: it must be \"auto\", 4, 5 or 6"
                ))
            })
    }
}

/// Which side opens the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpRole {
    /// We listen on `address`; analyzers connect.
    #[default]
    Server,
    /// We connect to the analyzer at `address` and reconnect when it drops.
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialParity {
    #[default]
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerialFlowControl {
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// The line profile and order settings common to both ASTM types, as the
/// source uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct AstmProfile {
    pub framing: AstmFraming,
    pub line_terminator: AstmLineTerminator,
    pub max_frame_text: usize,
    pub checksum_required: bool,
    pub check_sequence: bool,
    pub max_message_size: u64,
    pub orders: AstmOrderMode,
    /// How often the journal is asked for pending orders in broadcast mode.
    pub order_poll: Duration,
    /// Longest wait between attempts to (re)open the line.
    pub reconnect_max: Duration,
    /// H-5 of the messages we send, components separated by `^`.
    pub sender_name: String,
    /// LIS01-A2 timers and the retransmission limit.
    pub receive_timeout: Duration,
    pub answer_timeout: Duration,
    pub busy_retry: Duration,
    pub contention_retry: Duration,
    pub interrupt_retry: Duration,
    pub max_retransmissions: u8,
    /// Where O-5 and R-3 carry the test code.
    pub test_id_component: TestIdComponent,
}

fn default_max_frame_text() -> usize {
    240
}
fn yes() -> bool {
    true
}
fn default_max_message_size() -> Size {
    Size(4 << 20)
}
fn default_order_poll() -> Span {
    Span(Duration::from_secs(2))
}
fn default_reconnect_max() -> Span {
    Span(Duration::from_secs(30))
}
fn default_sender_name() -> String {
    "ECKO-EDGE".to_string()
}
fn default_receive_timeout() -> Span {
    Span(Duration::from_secs(30))
}
fn default_answer_timeout() -> Span {
    Span(Duration::from_secs(15))
}
fn default_busy_retry() -> Span {
    Span(Duration::from_secs(10))
}
fn default_contention_retry() -> Span {
    Span(Duration::from_secs(20))
}
fn default_interrupt_retry() -> Span {
    Span(Duration::from_secs(15))
}
fn default_max_retransmissions() -> u8 {
    6
}
fn default_tcp_connections() -> usize {
    16
}
fn default_tcp_per_address() -> usize {
    8
}
fn default_transfer_timeout() -> Span {
    Span(Duration::from_secs(300))
}
fn default_tcp_min_rate() -> u64 {
    // A slow analyzer at 1200 baud sends 120 B/s; 2 B/s only stops a trickle.
    2
}
fn default_tcp_rate_window() -> Span {
    Span(Duration::from_secs(30))
}
fn default_tcp_idle() -> Span {
    Span(Duration::from_secs(3600))
}
fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}

/// ASTM over TCP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AstmTcpConfig {
    #[serde(default)]
    pub role: TcpRole,
    /// `host:port` to listen on (server) or connect to (client).
    pub address: String,
    /// Server: analyzer connections served at once, and per address.
    #[serde(default = "default_tcp_connections")]
    pub max_connections: usize,
    #[serde(default = "default_tcp_per_address")]
    pub max_connections_per_address: usize,
    /// Server: analyzer addresses or networks served (`"10.1.2.3"`,
    /// `"10.1.0.0/16"`); empty: every address.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Server: a transfer the analyzer started (`ENQ` to `EOT`) must end
    /// within this, or the connection is cut.
    #[serde(default = "default_transfer_timeout")]
    pub transfer_timeout: Span,
    /// Server: bytes per second the analyzer must send while it has the
    /// turn, measured over `rate_window`; 0: no minimum.
    #[serde(default = "default_tcp_min_rate")]
    pub min_data_rate: u64,
    #[serde(default = "default_tcp_rate_window")]
    pub rate_window: Span,
    /// Server: a connection on which no transfer completes for this long
    /// is closed.
    #[serde(default = "default_tcp_idle")]
    pub idle_timeout: Span,
    #[serde(default)]
    pub framing: AstmFraming,
    #[serde(default)]
    pub line_terminator: AstmLineTerminator,
    #[serde(default = "default_max_frame_text")]
    pub max_frame_text: usize,
    #[serde(default = "yes")]
    pub checksum_required: bool,
    #[serde(default = "yes")]
    pub check_sequence: bool,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Size,
    #[serde(default)]
    pub orders: AstmOrderMode,
    #[serde(default = "default_order_poll")]
    pub order_poll: Span,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Span,
    #[serde(default = "default_sender_name")]
    pub sender_name: String,
    #[serde(default = "default_receive_timeout")]
    pub receive_timeout: Span,
    #[serde(default = "default_answer_timeout")]
    pub answer_timeout: Span,
    #[serde(default = "default_busy_retry")]
    pub busy_retry: Span,
    #[serde(default = "default_contention_retry")]
    pub contention_retry: Span,
    #[serde(default = "default_interrupt_retry")]
    pub interrupt_retry: Span,
    #[serde(default = "default_max_retransmissions")]
    pub max_retransmissions: u8,
    #[serde(default)]
    pub test_id_component: TestIdPosition,
}

/// ASTM over a serial line (RS-232 or a USB-serial adapter).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AstmSerialConfig {
    /// Device path, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/...`.
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default)]
    pub parity: SerialParity,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default)]
    pub flow_control: SerialFlowControl,
    #[serde(default)]
    pub framing: AstmFraming,
    #[serde(default)]
    pub line_terminator: AstmLineTerminator,
    #[serde(default = "default_max_frame_text")]
    pub max_frame_text: usize,
    #[serde(default = "yes")]
    pub checksum_required: bool,
    #[serde(default = "yes")]
    pub check_sequence: bool,
    #[serde(default = "default_max_message_size")]
    pub max_message_size: Size,
    #[serde(default)]
    pub orders: AstmOrderMode,
    #[serde(default = "default_order_poll")]
    pub order_poll: Span,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Span,
    #[serde(default = "default_sender_name")]
    pub sender_name: String,
    #[serde(default = "default_receive_timeout")]
    pub receive_timeout: Span,
    #[serde(default = "default_answer_timeout")]
    pub answer_timeout: Span,
    #[serde(default = "default_busy_retry")]
    pub busy_retry: Span,
    #[serde(default = "default_contention_retry")]
    pub contention_retry: Span,
    #[serde(default = "default_interrupt_retry")]
    pub interrupt_retry: Span,
    #[serde(default = "default_max_retransmissions")]
    pub max_retransmissions: u8,
    #[serde(default)]
    pub test_id_component: TestIdPosition,
}

macro_rules! profile_of {
    ($c:expr) => {
        AstmProfile {
            framing: $c.framing,
            line_terminator: $c.line_terminator,
            max_frame_text: $c.max_frame_text,
            checksum_required: $c.checksum_required,
            check_sequence: $c.check_sequence,
            max_message_size: $c.max_message_size.0,
            orders: $c.orders,
            order_poll: $c.order_poll.0,
            reconnect_max: $c.reconnect_max.0,
            sender_name: $c.sender_name.clone(),
            receive_timeout: $c.receive_timeout.0,
            answer_timeout: $c.answer_timeout.0,
            busy_retry: $c.busy_retry.0,
            contention_retry: $c.contention_retry.0,
            interrupt_retry: $c.interrupt_retry.0,
            max_retransmissions: $c.max_retransmissions,
            test_id_component: $c.test_id_component.0,
        }
    };
}

impl AstmTcpConfig {
    pub fn profile(&self) -> AstmProfile {
        profile_of!(self)
    }

    /// A problem the types alone cannot catch.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.address.trim().is_empty() {
            return Some("`address` must be `host:port`".into());
        }
        if let Some((_, problem)) = super::model::listener_problems(&super::model::ListenerLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            allow: &self.allow,
            min_data_rate: self.min_data_rate,
            rate_window: self.rate_window,
            frame_timeout: ("transfer_timeout", self.transfer_timeout),
            idle_timeout: self.idle_timeout,
        })
        .into_iter()
        .next()
        {
            return Some(problem);
        }
        self.profile().problem()
    }

    /// How the server admits analyzer connections.
    pub fn admission(&self) -> crate::net::AdmissionRules {
        crate::net::AdmissionRules {
            allow: crate::net::Allowlist::parse(&self.allow).unwrap_or_default(),
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
        }
    }

    /// How fast an analyzer must send.
    pub fn pace(&self) -> crate::net::PaceLimits {
        crate::net::PaceLimits {
            idle: self.idle_timeout.0,
            frame_deadline: self.transfer_timeout.0,
            min_rate: self.min_data_rate,
            rate_window: self.rate_window.0,
        }
    }
}

impl AstmSerialConfig {
    pub fn profile(&self) -> AstmProfile {
        profile_of!(self)
    }

    pub(crate) fn problem(&self) -> Option<String> {
        if !(5..=8).contains(&self.data_bits) {
            return Some(format!(
                "`data_bits` {} must be 5, 6, 7 or 8",
                self.data_bits
            ));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Some(format!("`stop_bits` {} must be 1 or 2", self.stop_bits));
        }
        if self.baud == 0 {
            return Some("`baud` must be above zero".into());
        }
        self.profile().problem()
    }

    /// The device settings the hardware layer opens the line with.
    pub fn serial_settings(&self) -> ecko_hal::SerialSettings {
        ecko_hal::SerialSettings {
            path: super::resolve(&self.device),
            baud: self.baud,
            data_bits: self.data_bits,
            parity: match self.parity {
                SerialParity::None => ecko_hal::Parity::None,
                SerialParity::Odd => ecko_hal::Parity::Odd,
                SerialParity::Even => ecko_hal::Parity::Even,
            },
            stop_bits: self.stop_bits,
            flow_control: match self.flow_control {
                SerialFlowControl::None => ecko_hal::FlowControl::None,
                SerialFlowControl::Software => ecko_hal::FlowControl::Software,
                SerialFlowControl::Hardware => ecko_hal::FlowControl::Hardware,
            },
        }
    }
}

impl AstmProfile {
    fn problem(&self) -> Option<String> {
        if !(16..=65_536).contains(&self.max_frame_text) {
            return Some(format!(
                "`max_frame_text` {} must be between 16 and 65536 (LIS01-A2: 240)",
                self.max_frame_text
            ));
        }
        if self.max_message_size < 1024 {
            return Some("`max_message_size` must be at least 1 KiB".into());
        }
        if self.order_poll.is_zero() || self.reconnect_max.is_zero() {
            return Some("`order_poll` and `reconnect_max` must be longer than zero".into());
        }
        let timers = [
            ("receive_timeout", self.receive_timeout),
            ("answer_timeout", self.answer_timeout),
            ("busy_retry", self.busy_retry),
            ("contention_retry", self.contention_retry),
            ("interrupt_retry", self.interrupt_retry),
        ];
        for (key, value) in timers {
            if value < MIN_TIMER || value > MAX_TIMER {
                return Some(format!(
                    "`{key}` {value:?} must be between 100ms and 1h (LIS01-A2: receive 30s, answer 15s, busy 10s, contention 20s, interrupt 15s)"
                ));
            }
        }
        if self.max_retransmissions > 20 {
            return Some(format!(
                "`max_retransmissions` {} must be at most 20 (LIS01-A2: 6)",
                self.max_retransmissions
            ));
        }
        let name = self.sender_name.trim();
        if name.is_empty() || name.len() > 200 || self.sender_name.chars().any(char::is_control) {
            return Some(
                "`sender_name` must be 1 to 200 printable characters (components separated by `^`)"
                    .into(),
            );
        }
        None
    }

    /// H-5 components of the messages we send.
    pub fn sender_components(&self) -> Vec<String> {
        self.sender_name
            .trim()
            .split('^')
            .map(str::to_string)
            .collect()
    }
}

/// Bounds on the link timers: shorter would make a slow but healthy
/// analyzer fail, longer would hold a dead line for hours.
const MIN_TIMER: Duration = Duration::from_millis(100);
const MAX_TIMER: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use crate::config::{Config, EndpointKind};
    use std::time::Duration;

    const BASE: &str = r#"
[journal]
path = "/tmp/j.db"

[[endpoint]]
name = "chem"
type = "astm-tcp"
address = "127.0.0.1:5100"
"#;

    fn profile(extra: &str) -> Result<super::AstmProfile, String> {
        let text = format!("{BASE}{extra}\n");
        match Config::parse(&text, "t.toml", |_| None) {
            Ok(c) => match &c.endpoints[0].kind {
                EndpointKind::AstmTcp(t) => Ok(t.profile()),
                _ => Err("not astm-tcp".into()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn link_timers_retransmissions_and_the_sender_name_default_to_lis01_a2() {
        let p = profile("").unwrap();
        assert_eq!(p.receive_timeout, Duration::from_secs(30));
        assert_eq!(p.answer_timeout, Duration::from_secs(15));
        assert_eq!(p.busy_retry, Duration::from_secs(10));
        assert_eq!(p.contention_retry, Duration::from_secs(20));
        assert_eq!(p.interrupt_retry, Duration::from_secs(15));
        assert_eq!(p.max_retransmissions, 6);
        assert_eq!(p.sender_components(), ["ECKO-EDGE"]);
    }

    #[test]
    fn link_timers_retransmissions_and_the_sender_name_can_be_set_per_endpoint() {
        let p = profile(
            "receive_timeout = \"45s\"\nanswer_timeout = \"20s\"\nbusy_retry = \"2s\"\ncontention_retry = \"25s\"\ninterrupt_retry = \"30s\"\nmax_retransmissions = 3\nsender_name = \"LAB-LIS^2.1\"",
        )
        .unwrap();
        assert_eq!(p.receive_timeout, Duration::from_secs(45));
        assert_eq!(p.answer_timeout, Duration::from_secs(20));
        assert_eq!(p.busy_retry, Duration::from_secs(2));
        assert_eq!(p.contention_retry, Duration::from_secs(25));
        assert_eq!(p.interrupt_retry, Duration::from_secs(30));
        assert_eq!(p.max_retransmissions, 3);
        assert_eq!(p.sender_components(), ["LAB-LIS", "2.1"]);
    }

    #[test]
    fn impossible_link_timers_and_sender_names_are_refused() {
        let err = profile("answer_timeout = \"0s\"").unwrap_err();
        assert!(err.contains("`answer_timeout`"), "{err}");
        let err = profile("receive_timeout = \"2h\"").unwrap_err();
        assert!(err.contains("`receive_timeout`"), "{err}");
        let err = profile("max_retransmissions = 50").unwrap_err();
        assert!(err.contains("`max_retransmissions` 50"), "{err}");
        let err = profile("max_retransmissions = -1").unwrap_err();
        assert!(err.contains("integer `-1`"), "{err}");
        let err = profile("sender_name = \"  \"").unwrap_err();
        assert!(err.contains("`sender_name`"), "{err}");
        let err = profile("sender_name = \"A\\rB\"").unwrap_err();
        assert!(err.contains("`sender_name`"), "{err}");
    }
}
