//! ASTM E1381 (CLSI LIS01-A2) link layer and E1394 (CLSI LIS02-A2) records.
//!
//! Layout, bottom up:
//! - [`frame`]: one frame on the wire, checksum, splitting records into frames.
//! - [`link`]: the line state machine for both roles (receive results, send
//!   orders); bytes and time in, bytes to write and events out.
//! - [`records`]: one record line → typed fields, delimiters, escapes.
//! - [`message`]: H..L records → a tree with typed accessors, the content
//!   hash for duplicate detection, and builders for order download and
//!   no-information answers.
//! - [`trace`]: line traffic made readable for the field engineer.
//!
//! Nothing here does I/O; the ASTM sources drive [`link::Link`].

pub mod frame;
pub mod link;
pub mod message;
pub mod records;
pub mod trace;

pub use link::{Event, Link, LinkConfig, Output};
