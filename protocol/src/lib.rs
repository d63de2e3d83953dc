//! Sans-I/O codecs and state machines: bytes in, events out.
//!
//! Nothing here does I/O or knows tokio; time, where a rule needs it, is an
//! input. Every decoder has a fuzz target under `gateway/fuzz` and must never
//! panic on any input.

pub mod astm;
pub mod dicom;
pub mod hl7;
pub mod mllp;
