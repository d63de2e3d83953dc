//! OBX of type ED (encapsulated data) or RP (reference pointer) → an
//! Attachment in its order's `DiagnosticReport.presentedForm`, as the HL7
//! V2-to-FHIR IG's ED and RP datatype maps give it. An R4 Observation has
//! no attachment value: a report sent as a PDF or an image is the report's
//! presented form, not a result.
//!
//! | OBX-5 | Attachment |
//! | --- | --- |
//! | ED-2 type of data, ED-3 subtype (RP-3, RP-4) | `contentType`: AP/PDF application/pdf, IM/JPEG image/jpeg, IM/PNG image/png, IM/TIFF image/tiff, TEXT/HTML text/html, TEXT/RTF application/rtf, TEXT/XML application/xml, else a MIME type given as is (`application/pdf` in ED-3), else application/octet-stream |
//! | ED-4 encoding, ED-5 data | `data`, base64: Base64 as sent (checked and without line breaks), Hex decoded, A (ASCII) as its bytes; `size` the decoded length |
//! | RP-1 pointer | `url`, when it is an absolute URL |
//! | OBX-3 | `title` (its text, else its code) |
//! | OBX-14 | `creation` |
//!
//! What cannot be read as its encoding claims (bad base64, odd hex, an
//! unknown encoding, a pointer that is not a URL) is not dropped: the OBX
//! then stays an Observation with the field's text as `valueString`.

use super::common::{comp, get};
use crate::r4::*;
use base64::Engine;
use ecko_protocol::hl7::Segment;
use jiff::tz::TimeZone;

/// The attachment an ED or RP OBX carries; `None` for other types, or
/// when it cannot be read as it says.
pub(super) fn attachment(obx: &Segment<'_>, tz: &TimeZone) -> Option<Attachment> {
    let ty = get(obx, 2, 1);
    let value = obx.field(5)?.repetition(1)?;
    let (content_type, data, url, size) = match ty.as_str() {
        "ED" => {
            let bytes = decode(&comp(&value, 4), &raw_component(&value, 5))?;
            let size = bytes.len() as u64;
            (
                content_type(&comp(&value, 2), &comp(&value, 3)),
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                None,
                Some(size),
            )
        }
        "RP" => {
            let pointer = comp(&value, 1);
            if !pointer.contains("://") {
                return None;
            }
            (
                content_type(&comp(&value, 3), &comp(&value, 4)),
                None,
                Some(pointer),
                None,
            )
        }
        _ => return None,
    };
    let title = obx
        .field(3)
        .and_then(|f| f.repetition(1))
        .map(|c| {
            let text = comp(&c, 2);
            if text.is_empty() {
                comp(&c, 1)
            } else {
                text
            }
        })
        .filter(|t| !t.is_empty());
    Some(Attachment {
        content_type: Some(content_type),
        data,
        url,
        size,
        title,
        creation: date_time(&get(obx, 14, 1), tz),
    })
}

/// Component `c` of `value` as sent, with its subcomponents: base64 may
/// hold no `&`, but hex and ASCII data are read whole.
fn raw_component(value: &ecko_protocol::hl7::Value<'_>, c: usize) -> String {
    value
        .component(c)
        .map(|c| c.value().to_string())
        .unwrap_or_default()
}

/// The bytes of ED-5 in the encoding ED-4 names.
fn decode(encoding: &str, data: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()
        }
        "hex" => {
            let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(compact).ok()
        }
        "a" => Some(data.as_bytes().to_vec()),
        _ => None,
    }
}

/// The MIME type of ED-2/ED-3 (table 0191 and the subtypes of table 0291).
fn content_type(ty: &str, subtype: &str) -> String {
    let known = match (
        ty.to_ascii_uppercase().as_str(),
        subtype.to_ascii_uppercase().as_str(),
    ) {
        (_, "PDF") => Some("application/pdf"),
        (_, "JPEG" | "JPG") => Some("image/jpeg"),
        (_, "PNG") => Some("image/png"),
        (_, "TIFF") => Some("image/tiff"),
        (_, "GIF") => Some("image/gif"),
        (_, "HTML") => Some("text/html"),
        (_, "RTF") => Some("application/rtf"),
        (_, "XML") => Some("application/xml"),
        ("TEXT", "") | ("TEXT", "PLAIN") => Some("text/plain"),
        _ => None,
    };
    match known {
        Some(t) => t.to_string(),
        None if subtype.contains('/') => subtype.to_string(),
        None => "application/octet-stream".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_types_and_subtypes_name_their_mime_type_and_others_are_octets() {
        assert_eq!(content_type("AP", "PDF"), "application/pdf");
        assert_eq!(content_type("IM", "jpeg"), "image/jpeg");
        assert_eq!(
            content_type("Application", "application/pdf"),
            "application/pdf"
        );
        assert_eq!(content_type("TEXT", ""), "text/plain");
        assert_eq!(content_type("AP", "octet"), "application/octet-stream");
    }

    #[test]
    fn data_is_read_in_its_encoding_and_refused_when_it_is_not() {
        assert_eq!(decode("Base64", "aGVs\nbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode("Hex", "68656C6C6F"), Some(b"hello".to_vec()));
        assert_eq!(decode("A", "hello"), Some(b"hello".to_vec()));
        assert_eq!(decode("Base64", "not base64!"), None);
        assert_eq!(decode("Hex", "6"), None);
        assert_eq!(decode("UU", "x"), None);
    }
}
