//! A command from the hub on `cmd/{id}`, fed arbitrary bytes: the first
//! byte picks CBOR or JSON, the rest is the payload. It is decoded, its
//! header read, its body read as the command it names and as every other
//! command (each body reader meets every shape), a `firmware.install` URL
//! checked, and the reply built as `dispatch` builds it: refused with a
//! reason or read, never a panic, and the reply always decodes again with
//! the command's id.
#![no_main]

use ecko_gateway::config::{PayloadFormat, COMMAND_NAMES};
use ecko_gateway::hub::command_decoders::{bundle_url, header, reply_payload, Command};
use ecko_gateway::hub::payload;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let format = if pick & 1 == 0 {
        PayloadFormat::Cbor
    } else {
        PayloadFormat::Json
    };
    let Ok(value) = payload::decode(format, bytes) else {
        return;
    };
    for name in COMMAND_NAMES {
        let _ = Command::read(name, &value);
        let _ = Command::read(name, &value["body"]);
    }
    let topic_id = value["id"].as_str().unwrap_or("fuzz").to_owned();
    let (name, outcome) = match header(&topic_id, value) {
        Ok(h) => {
            let read = Command::read(&h.name, &h.body);
            if let Ok(Command::InstallFirmware { url, .. }) = &read {
                let _ = bundle_url(url);
            }
            (Some(h.name), read.map(|_| Value::Null))
        }
        Err(e) => (None, Err(e)),
    };
    let reply = reply_payload(format, &topic_id, name.as_deref(), 0, &outcome);
    let back = payload::decode(format, &reply).expect("a reply decodes");
    assert_eq!(back["id"].as_str(), Some(topic_id.as_str()));
});
