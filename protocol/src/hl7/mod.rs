//! HL7 v2 messages: parsing, escapes, character sets, batches and
//! acknowledgements. Pure: bytes in, values out.
//!
//! Layout, one concept per file:
//!
//! - [`charset`]: MSH-18 names (table 0211) and decoding to text before any
//!   splitting, with a per-endpoint fallback.
//! - [`parse`]: separators from MSH-1/MSH-2 (v2.7 truncation character
//!   included), segment splitting tolerant of `\n`, `\r\n` and blank lines,
//!   positional access (field, repetition, component, subcomponent; 1-based,
//!   MSH numbered as in the standard), and the message identity from MSH.
//! - [`escape`]: `\F\ \S\ \T\ \R\ \E\ \P\ \Xhh..\ \.br\`.
//! - [`batch`]: FHS/BHS ... BTS/FTS split into single messages.
//! - [`ack`]: original and enhanced mode decisions, ACK building (also for
//!   input too broken to read), and reading the ACKs a far end sends us.
//!
//! A source typically does:
//!
//! ```
//! use ecko_protocol::hl7::{self, AckContent, Message, Outcome, ParseOptions};
//!
//! let bytes = b"MSH|^~\\&|LIS|LAB|EHR|HOSP|20260101120000||ORU^R01^ORU_R01|42|P|2.5.1\rPID|1||123\r";
//! let opts = ParseOptions::default();
//! let msg = Message::parse(bytes, &opts).unwrap();
//! assert_eq!(msg.identity().control_id, "42");
//! // ... store it, then:
//! let code = hl7::accept_ack_code(msg.identity(), Outcome::Accepted).unwrap();
//! let now = jiff::Zoned::now();
//! let ack = hl7::build_ack(&msg, &AckContent {
//!     code, control_id: "ACK42", timestamp: &now, text: None, error: None,
//! });
//! assert!(ack.starts_with(b"MSH|^~\\&|EHR|HOSP|LIS|LAB|"));
//! ```

pub mod ack;
pub mod batch;
pub mod charset;
mod error;
pub mod escape;
pub mod fields;
pub mod parse;

pub use ack::{
    accept_ack_code, application_ack_code, build_ack, build_ack_for_unreadable,
    build_application_ack, fresh_control_id, hl7_timestamp, unreadable_ack_code, AckCode,
    AckCondition, AckContent, AckError, AckMode, AckParseError, Outcome, ReceivedAck,
    ReceivedError,
};
pub use batch::{is_batch, split_batch, Batch};
pub use charset::Charset;
pub use escape::{escape, unescape};
pub use parse::{
    ErrorCode, ErrorLocation, Identity, Message, ParseError, ParseOptions, Segment, Separators,
    Value,
};

#[cfg(test)]
mod tests;
