//! The commands the hub sends on `cmd/{id}`, read from their payload (CBOR,
//! or JSON with `format = "json"`) into typed values.
//!
//! A command is read in two steps, so the policy can refuse it before its
//! body is looked at: the [`Header`] (version, id, issue time, name), then,
//! once the command is known, allowed and neither expired nor replayed, its
//! [`Command`] body. `docs/hub-protocol.md` has the CDDL of each.

use super::reply::{CommandError, ErrorCode};
use crate::journal::MessageFilter;
use serde_json::{Map, Value};

/// Longest command id, in bytes.
pub const ID_MAX: usize = 128;

/// What every command carries besides its body.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub id: String,
    /// The hub's clock when the command was made (Unix ms).
    pub issued_at: i64,
    /// The command's name, e.g. `messages.retry`.
    pub name: String,
    pub body: Value,
}

/// One command, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Puts the dead (or failing) deliveries of the messages matching the
    /// filter back in the queue.
    RetryMessages(MessageFilter),
    /// Disables (`false`) or enables an endpoint.
    SetEnabled { endpoint: String, enabled: bool },
    /// Tests an endpoint's connection.
    Test { endpoint: String, round_trip: bool },
    /// A message's metadata, and its payload when asked for and allowed.
    GetMessage { id: i64, payload: bool },
    /// A whole configuration file, signed by the hub.
    PushConfig { toml: String, signature: Vec<u8> },
    /// A log bundle uploaded with HTTPS `PUT` to `url`, at most `max_bytes`.
    LogBundle { url: String, max_bytes: Option<u64> },
    /// A bundle downloaded from `url` and installed to the inactive slot.
    InstallFirmware {
        url: String,
        allow_same_security_downgrade: bool,
    },
}

fn invalid(message: impl Into<String>) -> CommandError {
    CommandError::new(ErrorCode::Invalid, message)
}

/// Reads the header of a command that arrived on `cmd/{topic_id}`.
pub fn header(topic_id: &str, value: Value) -> Result<Header, CommandError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("a command is a map"));
    };
    match map.get("v").and_then(Value::as_u64) {
        Some(super::payload::VERSION) => {}
        Some(v) => {
            return Err(CommandError::new(
                ErrorCode::NotSupported,
                format!("command schema version {v} is not read by this gateway"),
            ))
        }
        None => return Err(invalid("`v` must be the schema version")),
    }
    let id = text(&map, "id")?;
    if id != topic_id {
        return Err(invalid(format!(
            "`id` is `{id}` but the command came on cmd/{topic_id}"
        )));
    }
    if id.len() > ID_MAX {
        return Err(invalid(format!("`id` is longer than {ID_MAX} bytes")));
    }
    let issued_at = map
        .get("issued_at")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("`issued_at` must be Unix milliseconds"))?;
    let name = text(&map, "cmd")?;
    let body = map.remove("body").unwrap_or(Value::Object(Map::new()));
    Ok(Header {
        id,
        issued_at,
        name,
        body,
    })
}

fn text(map: &Map<String, Value>, key: &str) -> Result<String, CommandError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(format!("`{key}` must be text"))),
    }
}

fn optional_text(map: &Map<String, Value>, key: &str) -> Result<Option<String>, CommandError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("`{key}` must be text"))),
    }
}

fn optional_ms(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, CommandError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{key}` must be Unix milliseconds"))),
    }
}

fn optional_bool(map: &Map<String, Value>, key: &str) -> Result<bool, CommandError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("`{key}` must be true or false"))),
    }
}

impl Command {
    /// Reads the body of command `name` (one of
    /// [`COMMAND_NAMES`](crate::config::COMMAND_NAMES)); `not_supported`
    /// for any other name.
    pub fn read(name: &str, body: &Value) -> Result<Command, CommandError> {
        let empty = Map::new();
        let b = match body {
            Value::Object(m) => m,
            Value::Null => &empty,
            _ => return Err(invalid("`body` must be a map")),
        };
        Ok(match name {
            "messages.retry" => {
                let status = optional_text(b, "status")?.unwrap_or_else(|| "dead".into());
                if !["dead", "failing", "errors"].contains(&status.as_str()) {
                    return Err(invalid(
                        "`status` must be `dead`, `failing` or `errors` (dead or failing)",
                    ));
                }
                Command::RetryMessages(MessageFilter {
                    endpoint: optional_text(b, "endpoint")?,
                    status: Some(status),
                    message_type: optional_text(b, "message_type")?,
                    control_id: optional_text(b, "control_id")?,
                    patient_id: optional_text(b, "patient_id")?,
                    key: optional_text(b, "key")?,
                    text: None,
                    from: optional_ms(b, "from")?,
                    to: optional_ms(b, "to")?,
                })
            }
            "endpoint.pause" | "endpoint.resume" => Command::SetEnabled {
                endpoint: text(b, "endpoint")?,
                enabled: name == "endpoint.resume",
            },
            "endpoint.test" => Command::Test {
                endpoint: text(b, "endpoint")?,
                round_trip: optional_bool(b, "round_trip")?,
            },
            "message.get" => Command::GetMessage {
                id: b
                    .get("message_id")
                    .and_then(Value::as_i64)
                    .filter(|id| *id > 0)
                    .ok_or_else(|| invalid("`message_id` must be a message's id"))?,
                payload: optional_bool(b, "payload")?,
            },
            "config.push" => Command::PushConfig {
                toml: text(b, "config")?,
                // A CBOR byte string reads as hex text; JSON writes it so.
                signature: b
                    .get("signature")
                    .and_then(Value::as_str)
                    .and_then(|h| hex::decode(h).ok())
                    .ok_or_else(|| {
                        invalid("`signature` must be bytes (CBOR) or hex text (JSON)")
                    })?,
            },
            "log.bundle" => Command::LogBundle {
                url: text(b, "url")?,
                max_bytes: match b.get("max_bytes") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                        invalid("`max_bytes` must be a positive number of bytes")
                    })?),
                },
            },
            "firmware.install" => Command::InstallFirmware {
                url: text(b, "url")?,
                allow_same_security_downgrade: optional_bool(b, "allow_same_security_downgrade")?,
            },
            other => {
                return Err(CommandError::new(
                    ErrorCode::NotSupported,
                    format!("`{other}` is not a command of this gateway"),
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PayloadFormat;
    use crate::hub::payload::{decode, encode};
    use serde_json::json;

    fn header_of(v: Value) -> Result<Header, CommandError> {
        let bytes = encode(PayloadFormat::Cbor, &v);
        header("c-1", decode(PayloadFormat::Cbor, &bytes).unwrap())
    }

    #[test]
    fn a_command_header_reads_its_id_time_name_and_body() {
        let h = header_of(
            json!({"v": 1, "id": "c-1", "issued_at": 1_700_000_000_000u64,
                                 "cmd": "endpoint.pause", "body": {"endpoint": "lis"}}),
        )
        .unwrap();
        assert_eq!(h.issued_at, 1_700_000_000_000);
        assert_eq!(
            Command::read(&h.name, &h.body).unwrap(),
            Command::SetEnabled {
                endpoint: "lis".into(),
                enabled: false
            }
        );
    }

    #[test]
    fn a_header_without_time_with_another_id_or_version_is_refused() {
        let base = json!({"v": 1, "id": "c-1", "issued_at": 1, "cmd": "message.get"});
        assert!(header_of(base.clone()).is_ok());
        for (key, value, code) in [
            ("issued_at", json!("yesterday"), ErrorCode::Invalid),
            ("id", json!("c-2"), ErrorCode::Invalid),
            ("v", json!(2), ErrorCode::NotSupported),
            ("cmd", json!(7), ErrorCode::Invalid),
        ] {
            let mut v = base.clone();
            v[key] = value;
            assert_eq!(header_of(v).unwrap_err().code, code, "{key}");
        }
        assert_eq!(
            header("c-1", json!([1, 2])).unwrap_err().code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn a_retry_filter_defaults_to_dead_letters_and_refuses_other_states() {
        let Command::RetryMessages(f) =
            Command::read("messages.retry", &json!({"endpoint": "lis", "from": 5})).unwrap()
        else {
            panic!("not a retry");
        };
        assert_eq!(f.status.as_deref(), Some("dead"));
        assert_eq!((f.endpoint.as_deref(), f.from), (Some("lis"), Some(5)));
        assert_eq!(
            Command::read("messages.retry", &json!({"status": "delivered"}))
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn a_pushed_configuration_carries_its_signature_as_cbor_bytes() {
        let mut e = minicbor::Encoder::new(Vec::new());
        e.map(2).unwrap();
        e.str("config").unwrap().str("[journal]\n").unwrap();
        e.str("signature").unwrap().bytes(&[1, 2, 255]).unwrap();
        let body = decode(PayloadFormat::Cbor, &e.into_writer()).unwrap();
        assert_eq!(
            Command::read("config.push", &body).unwrap(),
            Command::PushConfig {
                toml: "[journal]\n".into(),
                signature: vec![1, 2, 255]
            }
        );
    }

    #[test]
    fn an_unknown_command_is_not_supported_and_a_bad_body_is_invalid() {
        assert_eq!(
            Command::read("reboot", &json!({})).unwrap_err().code,
            ErrorCode::NotSupported
        );
        assert_eq!(
            Command::read("message.get", &json!({"message_id": "x"}))
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
        assert_eq!(
            Command::read("endpoint.test", &json!([1]))
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
    }
}

#[cfg(test)]
mod seeds {
    use super::*;
    use crate::config::PayloadFormat;
    use crate::hub::payload::decode;

    /// scripts/fuzz-seeds writes the commands (CBOR by hand): each must
    /// read as what its name says, in both formats.
    #[test]
    fn the_fuzz_seed_commands_read_as_their_names_say() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/hub_commands/");
        let read = |name: &str| {
            let bytes = std::fs::read(format!("{dir}{name}")).unwrap();
            let format = match bytes[0] & 1 {
                0 => PayloadFormat::Cbor,
                _ => PayloadFormat::Json,
            };
            let value = decode(format, &bytes[1..]).unwrap();
            let id = value["id"].as_str().unwrap_or_default().to_owned();
            header(&id, value).and_then(|h| Command::read(&h.name, &h.body))
        };
        for format in ["cbor", "json"] {
            let seed = |n: &str| read(&format!("{n}-{format}"));
            assert_eq!(
                seed("pause").unwrap(),
                Command::SetEnabled {
                    endpoint: "lab".into(),
                    enabled: false
                }
            );
            assert!(matches!(
                seed("config-push").unwrap(),
                Command::PushConfig { signature, .. } if signature == vec![1u8; 64]
            ));
            assert!(matches!(
                seed("firmware").unwrap(),
                Command::InstallFirmware { url, allow_same_security_downgrade: true }
                    if crate::hub::firmware::bundle_url(&url).is_ok()
            ));
            let Ok(Command::InstallFirmware { url, .. }) = seed("firmware-bad-url") else {
                panic!("firmware-bad-url-{format} reads as an install");
            };
            assert!(crate::hub::firmware::bundle_url(&url).is_err());
            assert_eq!(
                seed("newer-schema").unwrap_err().code,
                ErrorCode::NotSupported
            );
            for bad in ["body-not-a-map", "wrong-types"] {
                assert_eq!(seed(bad).unwrap_err().code, ErrorCode::Invalid, "{bad}");
            }
            for ok in ["retry", "resume", "test", "message-get", "log-bundle"] {
                assert!(seed(ok).is_ok(), "{ok}-{format}: {:?}", seed(ok));
            }
        }
    }
}
