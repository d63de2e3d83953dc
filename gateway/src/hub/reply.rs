//! The answer to one command, published on `reply/{id}`: a result, or a
//! typed error whose code the hub can act on without reading the message.

use super::payload::{self, VERSION};
use crate::config::PayloadFormat;
use serde_json::{json, Value};

/// Why a command was not done (`error.code` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The policy does not allow it, the hub's role is too low, or a
    /// signature does not verify.
    Forbidden,
    /// The command or its body cannot be read, or a value is not acceptable.
    Invalid,
    /// What it is about (an endpoint, a message) does not exist.
    NotFound,
    /// Issued longer ago than `max_age`.
    Expired,
    /// Its id was seen before.
    Replayed,
    /// A command, or a schema version, this gateway does not do.
    NotSupported,
    /// It was tried and did not work; nothing was changed.
    Failed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Expired => "expired",
            ErrorCode::Replayed => "replayed",
            ErrorCode::NotSupported => "not_supported",
            ErrorCode::Failed => "failed",
        }
    }
}

/// A command refused or failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
    /// More for the hub: the configuration's problems, whether a failed
    /// apply was rolled back.
    pub detail: Option<Value>,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CommandError {
        CommandError {
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: Value) -> CommandError {
        self.detail = Some(detail);
        self
    }
}

/// The reply to command `id` (`name`, when it could be read) in `format`.
pub fn payload(
    format: PayloadFormat,
    id: &str,
    name: Option<&str>,
    at: i64,
    outcome: &Result<Value, CommandError>,
) -> Vec<u8> {
    let mut reply = json!({ "v": VERSION, "id": id, "cmd": name, "at": at });
    match outcome {
        Ok(result) => {
            reply["ok"] = Value::Bool(true);
            reply["result"] = result.clone();
        }
        Err(e) => {
            reply["ok"] = Value::Bool(false);
            let mut error = json!({ "code": e.code.as_str(), "message": e.message });
            if let Some(d) = &e.detail {
                error["detail"] = d.clone();
            }
            reply["error"] = error;
        }
    }
    payload::encode(format, &reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reply_carries_its_code_and_message_under_the_command_id() {
        let e = CommandError::new(ErrorCode::NotFound, "no such endpoint");
        let bytes = payload(
            PayloadFormat::Cbor,
            "c-7",
            Some("endpoint.pause"),
            5,
            &Err(e),
        );
        let v = payload::decode(PayloadFormat::Cbor, &bytes).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["id"], "c-7");
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no such endpoint");
    }
}
