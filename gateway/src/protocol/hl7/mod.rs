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

pub mod batch;
pub mod charset;
pub mod escape;
pub mod parse;

pub use batch::{is_batch, split_batch, Batch};
pub use charset::Charset;
pub use escape::{escape, unescape};
pub use parse::{
    ErrorCode, ErrorLocation, Identity, Message, ParseError, ParseOptions, Segment, Separators,
    Value,
};

