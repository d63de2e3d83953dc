use super::super::fhir::*;
use super::super::TransformError;
use crate::journal::StoredMessage;
use crate::protocol::hl7::Message;
use jiff::tz::TimeZone;

pub(super) fn to_bundle(
    _parsed: &Message,
    _message: &StoredMessage,
    _tz: &TimeZone,
) -> Result<Bundle, TransformError> {
    Err(TransformError::Unreadable("not mapped yet".into()))
}
