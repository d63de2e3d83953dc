//! What every listener does with a connection before and while it speaks
//! its protocol: whom it admits ([`admission`]), how fast a peer must send
//! once it has started ([`pace`]), what the process may open at all
//! ([`fd_limit`]), the log line and metric of every connection refused
//! or cut ([`refusal`]), and a port below 1024 the process may not bind,
//! told before it binds and explained when the bind is refused ([`low_port`]).
//!
//! The MLLP listener, the ASTM TCP server, the admin page and the `rest`
//! listener go through it ([`http`] serves an HTTP connection for the last two);
//! it knows no protocol: a listener tells [`pace::Pace`] when one of its
//! units (an MLLP frame, an ASTM transfer) is complete.

pub mod admission;
pub mod fd_limit;
pub mod http;
pub mod low_port;
pub mod pace;
pub mod refusal;

pub use admission::{Admission, AdmissionRules, Allowlist, Permit};
pub use pace::{Cut, PaceHandle, PaceLimits, Paced};
pub use refusal::{ConnectionCounters, Reason};
