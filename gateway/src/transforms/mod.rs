//! Turning a journalled message into what a destination takes.
//!
//! A transform runs at delivery time, not at ingest: the journal keeps the
//! original bytes, so a corrected mapping applies to messages still queued,
//! and a message's transform failure never loses the message.

use crate::journal::StoredMessage;

/// Every transform a route may name.
pub const NAMES: &[&str] = &["none"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransformError {
    #[error("unknown transform `{0}`")]
    Unknown(String),
}

/// Applies the named transform; the result is the payload a sink delivers.
pub fn apply(name: &str, message: &StoredMessage) -> Result<Vec<u8>, TransformError> {
    match name {
        "none" => Ok(message.payload.clone()),
        other => Err(TransformError::Unknown(other.to_string())),
    }
}
