//! A payload laid out for reading, as data the viewer's template draws
//! (`_payload.html`): HL7 v2 segments with their fields numbered and named
//! and their components split, ASTM records by level, JSON indented with
//! its keys in the order sent, or else the text with its control characters
//! made visible. The format is the one the journal recorded (content type,
//! message type), failing that how the text starts.
//!
//! Nothing here writes markup: every piece is text the template escapes.

use serde::Serialize;
use std::fmt::Write;

/// The format a payload is in, from what the journal recorded about it
/// (content type, message type) and, failing that, from how it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Hl7,
    Astm,
    Json,
    Other,
}

pub fn format_of(content_type: &str, message_type: &str, text: &str) -> Format {
    let ct = content_type.to_ascii_lowercase();
    let start = content_start(text);
    if ct.contains("hl7") || ct.contains("er7") {
        return Format::Hl7;
    }
    if ct.contains("astm") {
        return Format::Astm;
    }
    if ct.contains("json") {
        return Format::Json;
    }
    // HL7 message types are `ORU^R01`; ASTM records start with `H|`.
    let hl7_type = message_type.split_once('^').is_some_and(|(a, b)| {
        a.len() == 3 && !b.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if (hl7_type && hl7_header(text).is_some())
        || ["MSH", "FHS", "BHS"].iter().any(|h| start.starts_with(h))
    {
        return Format::Hl7;
    }
    if is_astm(start) {
        return Format::Astm;
    }
    if start.starts_with('{') || start.starts_with('[') {
        return Format::Json;
    }
    Format::Other
}

/// The text after leading white space, control characters and a byte
/// order mark.
fn content_start(text: &str) -> &str {
    text.trim_start_matches(|c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}')
}

/// A payload as the viewer shows it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Payload {
    Hl7 {
        segments: Vec<Segment>,
    },
    Astm {
        records: Vec<Record>,
    },
    Json {
        text: String,
    },
    /// A stored DICOM object's header summary, from its journal record:
    /// what a person looks for, never pixel data.
    Dicom {
        rows: Vec<(&'static str, String)>,
    },
    /// Anything else, and HL7 or JSON that does not read as such.
    Raw {
        text: String,
    },
}

/// One HL7 v2 segment and its non-empty fields.
#[derive(Debug, Serialize, PartialEq)]
pub struct Segment {
    pub name: String,
    pub fields: Vec<Field>,
}

/// One field: its position (`PID-3`), its name where known, its
/// components.
#[derive(Debug, Serialize, PartialEq)]
pub struct Field {
    pub position: String,
    pub name: &'static str,
    pub components: Vec<String>,
}

/// One ASTM record, with its level (0 for H and L, 1 for P, 2 for O, 3 for
/// R, C and M) and its text made printable.
#[derive(Debug, Serialize, PartialEq)]
pub struct Record {
    pub level: u8,
    pub text: String,
}

/// A payload laid out by the format the journal recorded.
pub fn payload(content_type: &str, message_type: &str, bytes: &[u8]) -> Payload {
    if content_type == ecko_protocol::dicom::record::CONTENT_TYPE {
        if let Ok(r) = ecko_protocol::dicom::InstanceRecord::from_json(bytes) {
            return dicom(r);
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let start = content_start(&text);
    match format_of(content_type, message_type, &text) {
        Format::Hl7 => {
            if let Some(at) = hl7_header(&text).filter(|at| text.len() > at + 8) {
                return hl7(&text[at..]);
            }
        }
        Format::Json if serde_json::from_str::<serde_json::Value>(start).is_ok() => {
            return Payload::Json {
                text: pretty_json(start),
            };
        }
        Format::Astm => return astm(start),
        _ => {}
    }
    Payload::Raw {
        text: printable(&text),
    }
}

fn dicom(r: ecko_protocol::dicom::InstanceRecord) -> Payload {
    use ecko_protocol::dicom::uids;
    let named = |uid: &str, name: Option<&str>| match name {
        Some(n) => format!("{n} ({uid})"),
        None => uid.to_string(),
    };
    let sop_class = uids::STORAGE_SOP_CLASSES
        .iter()
        .find(|(u, _)| *u == r.sop_class)
        .map(|(_, n)| *n);
    let mut rows = vec![
        ("Patient", r.patient_name.unwrap_or_default()),
        ("Patient id", r.patient_id.unwrap_or_default()),
        ("Accession number", r.accession_number.unwrap_or_default()),
        ("Study date", r.study_date.unwrap_or_default()),
        ("Study", r.study_uid),
        (
            "Series",
            match r.series_number {
                Some(n) => format!("{n} ({})", r.series_uid),
                None => r.series_uid,
            },
        ),
        ("Modality", r.modality.unwrap_or_default()),
        ("SOP class", named(&r.sop_class, sop_class)),
        (
            "SOP instance",
            match r.instance_number {
                Some(n) => format!("{} (number {n})", r.sop_instance),
                None => r.sop_instance,
            },
        ),
        (
            "Transfer syntax",
            named(
                &r.transfer_syntax,
                uids::transfer_syntax_name(&r.transfer_syntax),
            ),
        ),
        ("Size", format!("{} bytes", r.size)),
        ("File", r.file),
        ("SHA-256", r.sha256),
    ];
    rows.retain(|(_, v)| !v.is_empty());
    Payload::Dicom { rows }
}

/// Valid JSON re-indented by two spaces, keys in the order they were sent
/// (a parsed value would sort them).
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Where the first header segment (`MSH`, or a batch's `FHS`/`BHS`) starts:
/// at the beginning or at the start of a line.
fn hl7_header(text: &str) -> Option<usize> {
    let starts_segment =
        |i: usize| i == 0 || matches!(text.as_bytes()[i - 1], b'\r' | b'\n' | 0x0b);
    ["FHS", "BHS", "MSH"]
        .iter()
        .filter_map(|h| {
            text.match_indices(h)
                .map(|(i, _)| i)
                .find(|i| starts_segment(*i))
        })
        .min()
}

/// Control characters made visible (`<CR>`, `<0x1C>`...), lines kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("<CR>\n"),
            '\n' => out.push('\n'),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "<0x{:02X}>", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
        .map(|s| s.trim_matches(|c: char| c.is_control()))
        .filter(|s| !s.is_empty())
}

/// HL7 v2: each segment with its fields by position (`PID-3`) and name
/// where known, components split on the separator the message declares in
/// MSH-2 (MSH-1 is the field separator itself, MSH-2 the encoding
/// characters, shown whole).
fn hl7(text: &str) -> Payload {
    let mut chars = text.chars().skip(3);
    let field_sep = chars.next().unwrap_or('|');
    let component_sep = chars.next().unwrap_or('^');
    let mut out = Vec::new();
    for segment in segments(text) {
        let mut values: Vec<&str> = segment.split(field_sep).collect();
        let name = values.remove(0);
        let field = |pos: usize, components: Vec<String>| Field {
            position: format!("{name}-{pos}"),
            name: ecko_protocol::hl7::fields::field_name(name, pos).unwrap_or(""),
            components,
        };
        let mut fields = Vec::new();
        // In MSH the separator itself is field 1.
        let offset = if name == "MSH" {
            fields.push(Field {
                position: "MSH-1".into(),
                name: "Field Separator",
                components: vec![field_sep.to_string()],
            });
            2
        } else {
            1
        };
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            let pos = i + offset;
            let components = if name == "MSH" && pos == 2 {
                vec![value.to_string()]
            } else {
                value.split(component_sep).map(str::to_string).collect()
            };
            fields.push(field(pos, components));
        }
        out.push(Segment {
            name: name.to_string(),
            fields,
        });
    }
    Payload::Hl7 { segments: out }
}

fn is_astm(text: &str) -> bool {
    let t = text.trim_start_matches(|c: char| c.is_control() || c.is_ascii_digit());
    t.starts_with("H|")
}

/// ASTM E1394: one record per line, by level (H, P, O, R, C, L).
fn astm(text: &str) -> Payload {
    let records = segments(text)
        .map(|record| {
            let r = record.trim_start_matches(|c: char| c.is_ascii_digit());
            let level = match r.chars().next() {
                Some('H') | Some('L') => 0,
                Some('P') => 1,
                Some('O') => 2,
                Some('R') | Some('C') | Some('M') => 3,
                _ => 1,
            };
            Record {
                level,
                text: printable(record),
            }
        })
        .collect();
    Payload::Astm { records }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields_of(p: &Payload) -> Vec<(&str, &str, String)> {
        let Payload::Hl7 { segments } = p else {
            panic!("not HL7: {p:?}");
        };
        segments
            .iter()
            .flat_map(|s| &s.fields)
            .map(|f| (f.position.as_str(), f.name, f.components.join("^")))
            .collect()
    }

    #[test]
    fn a_stored_dicom_object_is_shown_as_its_header_summary() {
        let record = ecko_protocol::dicom::InstanceRecord {
            file: "/var/dicom/m/1.2/1.2.3.abc.dcm".into(),
            size: 39096,
            sha256: "ab".repeat(32),
            sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance: "1.2.3".into(),
            transfer_syntax: "1.2.840.10008.1.2.4.90".into(),
            study_uid: "1.2".into(),
            series_uid: "1.2.1".into(),
            patient_id: Some("P-1".into()),
            patient_name: Some("Doe^Jane".into()),
            accession_number: None,
            modality: Some("CT".into()),
            study_date: None,
            series_number: Some("4".into()),
            instance_number: None,
        };
        let Payload::Dicom { rows } = payload(
            ecko_protocol::dicom::record::CONTENT_TYPE,
            "DICOM",
            &record.to_json(),
        ) else {
            panic!("not laid out as DICOM");
        };
        let get = |k: &str| rows.iter().find(|(l, _)| *l == k).map(|(_, v)| v.as_str());
        assert_eq!(get("Patient"), Some("Doe^Jane"));
        assert_eq!(
            get("SOP class"),
            Some("CT Image (1.2.840.10008.5.1.4.1.1.2)")
        );
        assert_eq!(
            get("Transfer syntax"),
            Some("JPEG 2000 Lossless (1.2.840.10008.1.2.4.90)")
        );
        assert_eq!(get("Series"), Some("4 (1.2.1)"));
        assert_eq!(get("Accession number"), None, "empty rows are left out");
    }

    #[test]
    fn hl7_fields_are_numbered_from_the_separators_msh_declares() {
        let p = hl7("MSH#~*\\&#LAB#X#GW#Y#20240101##ORU~R01#C1#P#2.5\rPID###P123~~~HOSP\r");
        let fields = fields_of(&p);
        assert!(fields.contains(&("MSH-1", "Field Separator", "#".into())));
        assert!(fields.contains(&("MSH-2", "Encoding Characters", "~*\\&".into())));
        assert!(fields.contains(&("MSH-9", "Message Type", "ORU^R01".into())));
        assert!(fields.contains(&("PID-3", "Patient Identifier List", "P123^^^HOSP".into())));
    }

    #[test]
    fn the_format_comes_from_what_the_journal_recorded_first() {
        let hl7 = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r";
        assert_eq!(
            format_of("x-application/hl7-v2+er7", "ORU^R01", hl7),
            Format::Hl7
        );
        // A drop folder's octet-stream with an HL7 type and a leading newline.
        assert_eq!(
            format_of("application/octet-stream", "ORU^R01", &format!("\n{hl7}")),
            Format::Hl7
        );
        assert_eq!(
            format_of("application/x-astm", "ASTM", "1H|\\^&\r"),
            Format::Astm
        );
        assert_eq!(
            format_of("application/fhir+json", "Bundle", "{}"),
            Format::Json
        );
        assert_eq!(format_of("text/plain", "note", "hello"), Format::Other);
        let p = payload(
            "application/octet-stream",
            "ORU^R01",
            format!("\r\n{hl7}").as_bytes(),
        );
        assert!(fields_of(&p).iter().any(|f| f.0 == "MSH-9"), "{p:?}");
    }

    #[test]
    fn json_is_indented_with_its_keys_in_the_order_sent() {
        let text = r#"{"z":1,"a":{"s":"x, \"y\": [z]","e":[]},"l":[1,{}]}"#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x, \\\"y\\\": [z]\",\n    \"e\": []\n  },\n  \"l\": [\n    1,\n    {}\n  ]\n}"
        );
    }

    #[test]
    fn astm_records_are_one_per_line_by_level() {
        let Payload::Astm { records } = astm("H|\\^&\rP|1\rO|1|S1\rR|1|^^^GLU|5.2\rL|1\r") else {
            panic!("not ASTM");
        };
        let levels: Vec<u8> = records.iter().map(|r| r.level).collect();
        assert_eq!(levels, [0, 1, 2, 3, 0]);
    }

    #[test]
    fn text_that_is_no_known_format_is_shown_with_its_control_characters_visible() {
        assert_eq!(
            payload("text/plain", "unknown", b"<b>\x01\r\n"),
            Payload::Raw {
                text: "<b><0x01><CR>\n\n".into()
            }
        );
    }
}
