//! What a message can be found by besides its patient and control id: the
//! order numbers (placer, filler, accession) and specimen ids it names. A
//! lab's barcode may be either, so both are one kind of key and one search
//! field.
//!
//! Read from HL7 v2 ORC-2/3, OBR-2/3, OBR-18 and IPC-1 (IHE Scheduled
//! Workflow's accession), SPM-2 (placer and filler specimen ids) and SAC-3
//! (container); from ASTM O-3 and O-4 (specimen and instrument specimen
//! id); from a DICOM object's accession number. A message that does not
//! read yields no keys: it is still found by everything else.

use crate::astm::records;
use crate::hl7v2::common::{first_sub, get};
use crate::hl7v2::parse_options;
use ecko_message::StoredMessage;
use ecko_protocol::astm::message::{Message as AstmMessage, ParseOptions as AstmOptions};
use ecko_protocol::dicom::record::{InstanceRecord, CONTENT_TYPE as DICOM_RECORD};
use ecko_protocol::hl7::Message as Hl7Message;

/// Longest key kept, in bytes: an id, not a paragraph.
pub const KEY_MAX: usize = 64;
/// Most keys kept per message.
pub const KEYS_MAX: usize = 50;

/// The distinct order and specimen ids `message` names, in the order
/// found.
pub fn search_keys(message: &StoredMessage) -> Vec<String> {
    let ct = message.content_type.to_ascii_lowercase();
    let found = if ct.contains("hl7") {
        hl7_keys(message)
    } else if ct.contains("astm") {
        astm_keys(&message.payload)
    } else if ct.starts_with(DICOM_RECORD) {
        InstanceRecord::from_json(&message.payload)
            .ok()
            .and_then(|r| r.accession_number)
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let mut out: Vec<String> = Vec::new();
    for k in found {
        let k = k.trim();
        if k.is_empty() || k.len() > KEY_MAX || out.iter().any(|o| o == k) {
            continue;
        }
        out.push(k.to_string());
        if out.len() == KEYS_MAX {
            break;
        }
    }
    out
}

fn hl7_keys(message: &StoredMessage) -> Vec<String> {
    let Ok(parsed) = Hl7Message::parse(&message.payload, &parse_options(message)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for seg in parsed.segments() {
        let fields: &[usize] = match seg.id() {
            "ORC" => &[2, 3],
            "OBR" => &[2, 3, 18],
            "IPC" => &[1],
            "SAC" => &[3],
            "SPM" => {
                // SPM-2 is an EIP: placer's id in component 1, filler's in 2.
                out.push(get(&seg, 2, 1));
                out.push(get(&seg, 2, 2));
                continue;
            }
            _ => continue,
        };
        for &f in fields {
            if let Some(v) = seg.field(f).and_then(|v| v.component(1)) {
                out.push(first_sub(&v));
            }
        }
    }
    out
}

fn astm_keys(payload: &[u8]) -> Vec<String> {
    let options = AstmOptions {
        check_sequence: false,
    };
    let Ok(parsed) = AstmMessage::parse(&records(payload), &options) else {
        return Vec::new();
    };
    parsed
        .patients
        .iter()
        .flat_map(|p| &p.orders)
        .flat_map(|o| [o.specimen_id(), o.instrument_specimen_id()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::Envelope;

    fn stored(content_type: &str, payload: &str) -> StoredMessage {
        StoredMessage {
            id: 1,
            received_at: 0,
            envelope: Envelope {
                content_type: content_type.into(),
                payload: payload.replace('\n', "\r").into_bytes(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn an_hl7_order_is_found_by_its_order_numbers_accession_and_specimen() {
        let m = stored(
            "x-application/hl7-v2+er7",
            "MSH|^~\\&|HIS|H|LAB|L|20260101||OML^O21|C1|P|2.5\n\
             PID|1||P1\n\
             ORC|NW|PL-1^HIS|FI-1^LAB\n\
             OBR|1|PL-1^HIS|FI-1^LAB|GLU||||||||||||||ACC-9\n\
             SPM|1|SP-7&HIS^SP-8&LAB\n\
             SAC|||TUBE-3\n",
        );
        assert_eq!(
            search_keys(&m),
            ["PL-1", "FI-1", "ACC-9", "SP-7", "SP-8", "TUBE-3"]
        );
    }

    #[test]
    fn an_astm_result_is_found_by_its_specimen_and_instrument_ids() {
        let m = stored(
            "application/x-astm",
            "H|\\^&|||CHEM\nP|1||PID1\nO|1|SPEC1|R12^3|^^^GLU|R\nR|1|^^^GLU|5.4\nO|2|SPEC2||^^^NA\nL|1|N\n",
        );
        assert_eq!(search_keys(&m), ["SPEC1", "R12", "SPEC2"]);
    }

    #[test]
    fn unreadable_or_other_payloads_have_no_keys_and_long_values_are_not_keys() {
        assert!(search_keys(&stored("x-application/hl7-v2+er7", "not hl7")).is_empty());
        assert!(search_keys(&stored("application/json", "{}")).is_empty());
        let long = "X".repeat(KEY_MAX + 1);
        let m = stored(
            "x-application/hl7-v2+er7",
            &format!("MSH|^~\\&|A|B|C|D|20260101||ORM^O01|C1|P|2.5\nORC|NW|{long}|F1\n"),
        );
        assert_eq!(search_keys(&m), ["F1"]);
    }
}
