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
//! Nothing here does I/O; the ASTM sources drive [`link::Link`]:
//!
//! ```text
//! let mut link = Link::new(config);                 // one per line / TCP stream
//! on bytes read:    link.handle_input(now, &bytes);
//! on timer expiry:  link.handle_timeout(now);       // arm it at link.poll_timeout()
//! after each call:  while let Some(out) = link.poll_output() {
//!     Output::Write(bytes)                       => write them to the line, in order
//!     Output::Event(MessageComplete { records }) => store in the journal, then
//!                                                   link.commit_done(now, committed)
//!     Output::Event(Incomplete(..))              => keep for inspection, never a result
//!     Output::Event(Sent { id } | SendFailed { id, records, reason } | Deferred { .. }) => orders
//!     ...
//! }
//! on end of file, error or shutdown: link.close(cause), then drain the outputs
//!                   (partial messages → Incomplete, unsent messages → SendFailed)
//! to send:          let id = link.queue_message(now, records);  // records from message::build_*
//! journal full:     link.set_ready(false);           // ENQ answered NAK
//! ```
//!
//! Records are parsed with [`message::Message::parse`]; the journal's
//! duplicate key is [`message::content_hash`].

pub mod frame;
pub mod link;
pub mod message;
pub mod records;
pub mod trace;

pub use link::{CloseCause, Event, Link, LinkConfig, Output, SendFailure};
