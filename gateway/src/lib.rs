//! Ecko Edge gateway library.

pub mod protocol;
