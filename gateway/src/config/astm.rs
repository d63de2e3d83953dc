//! Settings of the `astm-serial` and `astm-tcp` endpoint types.
//!
//! Both carry the same line profile (the deviations of an analyzer family
//! from LIS01-A2: framing, frame length, checksum, line terminator, sequence
//! numbering) and the same order settings; `astm-serial` adds the device and
//! its line settings, `astm-tcp` the role and address. The keys are written
//! out in each struct (rather than flattened) so that unknown keys stay
//! errors.

use super::units::{Size, Span};
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
        }
    };
}

impl AstmTcpConfig {
    pub fn profile(&self) -> AstmProfile {
        profile_of!(self)
    }

    /// A problem the types alone cannot catch.
    pub(super) fn problem(&self) -> Option<String> {
        if self.address.trim().is_empty() {
            return Some("`address` must be `host:port`".into());
        }
        self.profile().problem()
    }
}

impl AstmSerialConfig {
    pub fn profile(&self) -> AstmProfile {
        profile_of!(self)
    }

    pub(super) fn problem(&self) -> Option<String> {
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
        None
    }
}
