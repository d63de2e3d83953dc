//! Ecko Edge: the gateway daemon as a library.
//!
//! Messages flow `sources` → `journal` (one transaction, then the ACK) →
//! `delivery` workers → `transforms` → `sinks`, as pictured in the project's
//! design page. `protocol` holds the sans-I/O codecs every source and sink
//! uses; `config` turns the one TOML file into the typed model everything
//! else reads; `app` wires it together and `main.rs` only parses arguments.

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod health;
pub mod journal;
pub mod preflight;
pub mod probe;
pub mod protocol;
pub mod router;
pub mod send;
pub mod sinks;
pub mod sources;
pub mod tls;
pub mod transforms;
