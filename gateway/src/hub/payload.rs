//! Payloads on the wire: CBOR by default, JSON for debugging (`format`).
//!
//! Every payload is built once as a JSON value (maps with text keys,
//! integers, text, booleans, arrays) and written in the configured format,
//! so the two formats carry the same fields and `docs/hub-protocol.md`
//! describes both with one CDDL schema. Every payload has `v`, the version
//! of its schema.

use crate::config::PayloadFormat;
use minicbor::data::Type;
use serde_json::{Map, Number, Value};

/// The schema version every payload of this build carries as `v`.
pub const VERSION: u64 = 1;

/// `value` in `format`.
pub fn encode(format: PayloadFormat, value: &Value) -> Vec<u8> {
    match format {
        PayloadFormat::Json => serde_json::to_vec(value).unwrap_or_default(),
        PayloadFormat::Cbor => {
            let mut e = minicbor::Encoder::new(Vec::new());
            write_cbor(&mut e, value);
            e.into_writer()
        }
    }
}

// Writing into a Vec cannot fail; the results are dropped for that reason.
fn write_cbor(e: &mut minicbor::Encoder<Vec<u8>>, value: &Value) {
    match value {
        Value::Null => {
            let _ = e.null();
        }
        Value::Bool(b) => {
            let _ = e.bool(*b);
        }
        Value::Number(n) => {
            let _ = if let Some(u) = n.as_u64() {
                e.u64(u)
            } else if let Some(i) = n.as_i64() {
                e.i64(i)
            } else {
                e.f64(n.as_f64().unwrap_or(0.0))
            };
        }
        Value::String(s) => {
            let _ = e.str(s);
        }
        Value::Array(items) => {
            let _ = e.array(items.len() as u64);
            for item in items {
                write_cbor(e, item);
            }
        }
        Value::Object(map) => {
            let _ = e.map(map.len() as u64);
            for (k, v) in map {
                let _ = e.str(k);
                write_cbor(e, v);
            }
        }
    }
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// A payload from the hub in `format`, as a JSON value. CBOR byte strings
/// become lowercase hex text.
pub fn decode(format: PayloadFormat, bytes: &[u8]) -> Result<Value, DecodeError> {
    match format {
        PayloadFormat::Json => {
            serde_json::from_slice(bytes).map_err(|e| DecodeError(format!("not JSON: {e}")))
        }
        PayloadFormat::Cbor => {
            let mut d = minicbor::Decoder::new(bytes);
            let v = read_cbor(&mut d, 0)?;
            if d.position() != bytes.len() {
                return Err(DecodeError("bytes after the CBOR item".into()));
            }
            Ok(v)
        }
    }
}

/// Nesting allowed in a payload from the hub.
const MAX_DEPTH: usize = 16;

fn read_cbor(d: &mut minicbor::Decoder<'_>, depth: usize) -> Result<Value, DecodeError> {
    let bad = |e: minicbor::decode::Error| DecodeError(format!("not CBOR: {e}"));
    if depth > MAX_DEPTH {
        return Err(DecodeError("CBOR nested too deep".into()));
    }
    Ok(match d.datatype().map_err(bad)? {
        Type::Null | Type::Undefined => {
            d.skip().map_err(bad)?;
            Value::Null
        }
        Type::Bool => Value::Bool(d.bool().map_err(bad)?),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64().map_err(bad)?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            Value::from(d.i64().map_err(bad)?)
        }
        Type::F16 | Type::F32 | Type::F64 => {
            Number::from_f64(d.f64().map_err(bad)?).map_or(Value::Null, Value::Number)
        }
        Type::String => Value::String(d.str().map_err(bad)?.to_string()),
        Type::Bytes => Value::String(hex::encode(d.bytes().map_err(bad)?)),
        Type::Array => {
            let n = d
                .array()
                .map_err(bad)?
                .ok_or_else(|| DecodeError("indefinite CBOR arrays are not read".into()))?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(read_cbor(d, depth + 1)?);
            }
            Value::Array(items)
        }
        Type::Map => {
            let n = d
                .map()
                .map_err(bad)?
                .ok_or_else(|| DecodeError("indefinite CBOR maps are not read".into()))?;
            let mut map = Map::new();
            for _ in 0..n {
                let key = d
                    .str()
                    .map_err(|_| DecodeError("CBOR map keys must be text".into()))?
                    .to_string();
                map.insert(key, read_cbor(d, depth + 1)?);
            }
            Value::Object(map)
        }
        other => return Err(DecodeError(format!("CBOR {other} is not read"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_reads_back_the_same_in_either_format() {
        let v = json!({"v": 1, "n": -3, "big": u64::MAX, "ok": true, "x": null,
                       "s": "ü", "list": [1, "two", {"three": 3.5}]});
        for format in [PayloadFormat::Cbor, PayloadFormat::Json] {
            let bytes = encode(format, &v);
            assert_eq!(decode(format, &bytes).unwrap(), v, "{format:?}");
        }
        assert!(encode(PayloadFormat::Cbor, &v).len() < encode(PayloadFormat::Json, &v).len());
    }

    #[test]
    fn a_cbor_payload_that_is_cut_short_or_too_deep_is_refused() {
        let bytes = encode(PayloadFormat::Cbor, &json!({"a": [1, 2, 3]}));
        assert!(decode(PayloadFormat::Cbor, &bytes[..bytes.len() - 1]).is_err());
        let mut deep = Vec::new();
        deep.resize(40, 0x81);
        deep.push(0x01);
        assert!(decode(PayloadFormat::Cbor, &deep).is_err());
    }
}
