//! Modality Worklist (PS3.4 K): the scheduled procedure steps a modality
//! asks for with C-FIND, how a query's keys match them, and the identifier
//! each match is answered with.
//!
//! # Matching (PS3.4 C.2.2.2)
//!
//! Every key of the identifier with a value is a condition; a key sent
//! empty is a return key only (universal matching). Per value
//! representation:
//!
//! - DA and TM: a single value or a range `A-B`, `A-`, `-B`. When both
//!   Scheduled Procedure Step Start Date and Time are given they are one
//!   date-time range (`20261204-20261205` with `0800-1000` is from the 4th
//!   at 08:00 to the 5th at 10:00), as the standard's combined matching
//!   asks. A step without a start date matches only a query without one.
//! - UI: one UID or a backslash-separated list.
//! - Text (PN, LO, SH, CS, AE): the value, with `*` (any run of
//!   characters) and `?` (one character). Person names compare without
//!   regard to case, as modalities type them in capitals, and trailing
//!   empty components are ignored (`DOE^JOHN^^` is `DOE^JOHN`).
//! - A step with no scheduled station AE title is offered to every
//!   station: orders seldom name the device, and the modality filter
//!   still separates CT from MR.
//! - A key the gateway does not keep is matched universally and returned
//!   empty, and the response says so (status FF01).
//!
//! The Scheduled Procedure Step Sequence is matched through its first
//! item's keys; an empty sequence asks for every attribute of the step.

use dicom_core::header::Header;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use serde::{Deserialize, Serialize};

/// Modality Worklist Information Model – FIND.
pub const FIND_SOP_CLASS: &str = "1.2.840.10008.5.1.4.31";

/// Pending, every key supported as asked.
pub const PENDING: u16 = 0xFF00;
/// Pending, some optional keys were not supported (returned empty).
pub const PENDING_KEYS_UNSUPPORTED: u16 = 0xFF01;
/// Matching ended by a C-CANCEL.
pub const CANCELLED: u16 = 0xFE00;
/// The identifier does not match the information model.
pub const IDENTIFIER_DOES_NOT_MATCH: u16 = 0xA900;
/// The identifier cannot be read.
pub const UNABLE_TO_PROCESS: u16 = 0xC000;

const SPECIFIC_CHARACTER_SET: Tag = Tag(0x0008, 0x0005);
const STEP_SEQUENCE: Tag = Tag(0x0040, 0x0100);
const PROCEDURE_CODE_SEQUENCE: Tag = Tag(0x0032, 0x1064);
const START_DATE: Tag = Tag(0x0040, 0x0002);
const START_TIME: Tag = Tag(0x0040, 0x0003);
const STATION_AE: Tag = Tag(0x0040, 0x0001);
const CODE_VALUE: Tag = Tag(0x0008, 0x0100);
const CODING_SCHEME: Tag = Tag(0x0008, 0x0102);
const CODE_MEANING: Tag = Tag(0x0008, 0x0104);

/// A coded procedure (code value, coding scheme designator, meaning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

/// One scheduled procedure step with its requested procedure and patient:
/// what one C-FIND match answers. Text is as DICOM wants it: person names
/// `Family^Given^Middle^Prefix^Suffix`, dates `YYYYMMDD`, times `HHMMSS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ScheduledStep {
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    pub patient_name: String,
    pub birth_date: String,
    /// `M`, `F` or `O`.
    pub sex: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub requesting_physician: String,
    pub study_instance_uid: String,
    pub requested_procedure_id: String,
    pub requested_procedure_description: String,
    pub requested_procedure_code: Option<Code>,
    /// `STAT`, `HIGH`, `ROUTINE`, `MEDIUM` or `LOW`.
    pub priority: String,
    pub modality: String,
    pub station_ae: String,
    pub station_name: String,
    pub location: String,
    pub start_date: String,
    pub start_time: String,
    pub performing_physician: String,
    pub step_id: String,
    pub step_description: String,
    /// `SCHEDULED` or `STARTED`.
    pub status: String,
}

/// Where an attribute sits: in the identifier, or in the Scheduled
/// Procedure Step Sequence's item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Step,
}

struct Attribute {
    tag: Tag,
    vr: VR,
    level: Level,
    value: fn(&ScheduledStep) -> &str,
}

const fn a(tag: (u16, u16), vr: VR, level: Level, value: fn(&ScheduledStep) -> &str) -> Attribute {
    Attribute {
        tag: Tag(tag.0, tag.1),
        vr,
        level,
        value,
    }
}

/// Every attribute a step answers with, in tag order per level.
const ATTRIBUTES: &[Attribute] = &[
    a((0x0008, 0x0050), VR::SH, Level::Top, |s| {
        &s.accession_number
    }),
    a((0x0008, 0x0090), VR::PN, Level::Top, |s| {
        &s.referring_physician
    }),
    a((0x0010, 0x0010), VR::PN, Level::Top, |s| &s.patient_name),
    a((0x0010, 0x0020), VR::LO, Level::Top, |s| &s.patient_id),
    a((0x0010, 0x0021), VR::LO, Level::Top, |s| {
        &s.issuer_of_patient_id
    }),
    a((0x0010, 0x0030), VR::DA, Level::Top, |s| &s.birth_date),
    a((0x0010, 0x0040), VR::CS, Level::Top, |s| &s.sex),
    a((0x0020, 0x000D), VR::UI, Level::Top, |s| {
        &s.study_instance_uid
    }),
    a((0x0032, 0x1032), VR::PN, Level::Top, |s| {
        &s.requesting_physician
    }),
    a((0x0032, 0x1060), VR::LO, Level::Top, |s| {
        &s.requested_procedure_description
    }),
    a((0x0040, 0x1001), VR::SH, Level::Top, |s| {
        &s.requested_procedure_id
    }),
    a((0x0040, 0x1003), VR::SH, Level::Top, |s| &s.priority),
    a((0x0008, 0x0060), VR::CS, Level::Step, |s| &s.modality),
    a((0x0040, 0x0001), VR::AE, Level::Step, |s| &s.station_ae),
    a((0x0040, 0x0002), VR::DA, Level::Step, |s| &s.start_date),
    a((0x0040, 0x0003), VR::TM, Level::Step, |s| &s.start_time),
    a((0x0040, 0x0006), VR::PN, Level::Step, |s| {
        &s.performing_physician
    }),
    a((0x0040, 0x0007), VR::LO, Level::Step, |s| {
        &s.step_description
    }),
    a((0x0040, 0x0009), VR::SH, Level::Step, |s| &s.step_id),
    a((0x0040, 0x0010), VR::SH, Level::Step, |s| &s.station_name),
    a((0x0040, 0x0011), VR::SH, Level::Step, |s| &s.location),
    a((0x0040, 0x0020), VR::CS, Level::Step, |s| &s.status),
];

fn attribute(level: Level, tag: Tag) -> Option<&'static Attribute> {
    ATTRIBUTES.iter().find(|a| a.level == level && a.tag == tag)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the identifier cannot be read: {0}")]
    Unreadable(String),
    #[error("{0}")]
    NotWorklist(String),
}

impl QueryError {
    /// The C-FIND status that says so.
    pub fn status(&self) -> u16 {
        match self {
            QueryError::Unreadable(_) => UNABLE_TO_PROCESS,
            QueryError::NotWorklist(_) => IDENTIFIER_DOES_NOT_MATCH,
        }
    }
}

/// One requested key: its tag and VR as sent, and the condition its value
/// sets (`None`: return key only).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    tag: Tag,
    vr: VR,
    level: Level,
    value: Option<String>,
    /// Code sequence keys, for the requested procedure code.
    code_keys: Option<Vec<Tag>>,
}

/// A Modality Worklist C-FIND identifier, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    keys: Vec<Key>,
    /// The Scheduled Procedure Step Sequence was asked for.
    step_asked: bool,
    charset_asked: bool,
}

/// The transfer syntax of a worklist context (only the uncompressed
/// little endian ones are offered for it).
fn transfer_syntax(uid: &str) -> dicom_transfer_syntax_registry::TransferSyntax {
    if super::uids::trim(uid) == super::uids::EXPLICIT_VR_LE {
        EXPLICIT_VR_LITTLE_ENDIAN.erased()
    } else {
        IMPLICIT_VR_LITTLE_ENDIAN.erased()
    }
}

fn text_of(e: &DataElement<InMemDicomObject>) -> Option<String> {
    if e.vr() == VR::SQ {
        return None;
    }
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0').to_string();
    (!s.is_empty()).then_some(s)
}

impl Query {
    /// Reads the identifier `bytes` sent in `transfer_syntax`.
    pub fn read(bytes: &[u8], transfer_syntax_uid: &str) -> Result<Query, QueryError> {
        let ts = transfer_syntax(transfer_syntax_uid);
        let explicit = super::uids::trim(transfer_syntax_uid) == super::uids::EXPLICIT_VR_LE;
        if let Some(why) = super::lengths::refusal(bytes, explicit) {
            return Err(QueryError::Unreadable(why));
        }
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
            .map_err(|e| QueryError::Unreadable(e.to_string()))?;
        let mut keys = Vec::new();
        let mut step_asked = false;
        let mut charset_asked = false;
        for e in obj.iter() {
            let tag = e.tag();
            if tag == SPECIFIC_CHARACTER_SET {
                charset_asked = true;
                continue;
            }
            if tag.group() == 0x0008 && tag.element() == 0x0052 {
                return Err(QueryError::NotWorklist(
                    "Query/Retrieve Level is not a worklist key".into(),
                ));
            }
            if tag == STEP_SEQUENCE {
                step_asked = true;
                let items = e.items().unwrap_or(&[]);
                if items.len() > 1 {
                    return Err(QueryError::NotWorklist(
                        "the Scheduled Procedure Step Sequence has more than one item".into(),
                    ));
                }
                if let Some(item) = items.first() {
                    for s in item.iter() {
                        keys.push(Key {
                            tag: s.tag(),
                            vr: s.vr(),
                            level: Level::Step,
                            value: text_of(s),
                            code_keys: None,
                        });
                    }
                }
                continue;
            }
            let code_keys = (tag == PROCEDURE_CODE_SEQUENCE).then(|| {
                e.items()
                    .and_then(|i| i.first())
                    .map(|item| item.iter().map(|s| s.tag()).collect())
                    .unwrap_or_default()
            });
            keys.push(Key {
                tag,
                vr: e.vr(),
                level: Level::Top,
                value: text_of(e),
                code_keys,
            });
        }
        Ok(Query {
            keys,
            step_asked,
            charset_asked,
        })
    }

    /// The range of `YYYYMMDDHHMMSS` start times the query allows, for a
    /// first cut in the store; `None` when it sets no start date.
    pub fn start_range(&self) -> Option<(String, String)> {
        let date = self.step_value(START_DATE)?;
        let (lo, hi) = split_range(date);
        let lo = digits(lo);
        let hi = digits(hi);
        Some((
            format!("{lo:0<8}"),
            if hi.is_empty() {
                "99999999999999".into()
            } else {
                format!("{hi}235959")
            },
        ))
    }

    fn step_value(&self, tag: Tag) -> Option<&str> {
        self.keys
            .iter()
            .find(|k| k.level == Level::Step && k.tag == tag)
            .and_then(|k| k.value.as_deref())
    }

    /// Whether `step` matches every condition of the query.
    pub fn matches(&self, step: &ScheduledStep) -> bool {
        let date = self.step_value(START_DATE);
        let time = self.step_value(START_TIME);
        if !start_matches(date, time, &step.start_date, &step.start_time) {
            return false;
        }
        self.keys.iter().all(|k| {
            let Some(wanted) = k.value.as_deref() else {
                return true;
            };
            if k.level == Level::Step && (k.tag == START_DATE || k.tag == START_TIME) {
                return true;
            }
            let Some(attr) = attribute(k.level, k.tag) else {
                return true;
            };
            let have = (attr.value)(step);
            match attr.vr {
                VR::DA | VR::TM => range_matches(wanted, have, attr.vr),
                VR::UI => wanted.split('\\').any(|w| w.trim() == have),
                _ if attr.tag == STATION_AE && have.is_empty() => true,
                VR::PN => wildcard(&person(wanted), &person(have)),
                _ => wildcard(wanted, have),
            }
        })
    }

    /// The identifier answering `step`, in `transfer_syntax`, and whether
    /// some keys asked for were not supported (returned empty).
    pub fn response(&self, step: &ScheduledStep, transfer_syntax_uid: &str) -> (Vec<u8>, bool) {
        let mut unsupported = false;
        let mut top = Vec::new();
        let mut step_items = Vec::new();
        let needs_utf8 = !ascii(step);
        if self.charset_asked || needs_utf8 {
            top.push(DataElement::new(
                SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from(if needs_utf8 { "ISO_IR 192" } else { "" }),
            ));
        }
        let step_keys: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.level == Level::Step)
            .collect();
        if self.step_asked && step_keys.is_empty() {
            for attr in ATTRIBUTES.iter().filter(|a| a.level == Level::Step) {
                step_items.push(element(attr.tag, attr.vr, (attr.value)(step)));
            }
        }
        for k in &self.keys {
            let e = if k.tag == PROCEDURE_CODE_SEQUENCE && k.level == Level::Top {
                code_sequence(
                    step.requested_procedure_code.as_ref(),
                    k.code_keys.as_deref(),
                )
            } else {
                match attribute(k.level, k.tag) {
                    Some(attr) => element(k.tag, attr.vr, (attr.value)(step)),
                    None => {
                        unsupported = true;
                        empty(k.tag, k.vr)
                    }
                }
            };
            match k.level {
                Level::Top => top.push(e),
                Level::Step => step_items.push(e),
            }
        }
        if self.step_asked {
            let item = InMemDicomObject::from_element_iter(step_items);
            top.push(DataElement::new(
                STEP_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(vec![item], Length::UNDEFINED),
            ));
        }
        let obj = InMemDicomObject::from_element_iter(top);
        let mut out = Vec::new();
        let ts = transfer_syntax(transfer_syntax_uid);
        // Writing primitive values into memory cannot fail.
        if obj.write_dataset_with_ts(&mut out, &ts).is_err() {
            out.clear();
        }
        (out, unsupported)
    }
}

fn ascii(step: &ScheduledStep) -> bool {
    ATTRIBUTES.iter().all(|a| (a.value)(step).is_ascii())
        && step
            .requested_procedure_code
            .as_ref()
            .is_none_or(|c| c.meaning.is_ascii() && c.value.is_ascii() && c.scheme.is_ascii())
}

/// The most characters a value of `vr` may hold (PS3.5 6.2).
fn max_chars(vr: VR) -> usize {
    match vr {
        VR::AE | VR::CS | VR::SH => 16,
        VR::DA => 8,
        VR::TM => 14,
        VR::UI => 64,
        VR::PN => 5 * 64 + 4,
        _ => 64,
    }
}

fn element(tag: Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    if value.is_empty() {
        return empty(tag, vr);
    }
    let v: String = value.chars().take(max_chars(vr)).collect();
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

fn empty(tag: Tag, vr: VR) -> DataElement<InMemDicomObject> {
    if vr == VR::SQ {
        DataElement::new(
            tag,
            VR::SQ,
            DataSetSequence::<InMemDicomObject>::new(Vec::new(), Length::UNDEFINED),
        )
    } else {
        DataElement::empty(tag, vr)
    }
}

fn code_sequence(code: Option<&Code>, keys: Option<&[Tag]>) -> DataElement<InMemDicomObject> {
    let Some(code) = code else {
        return empty(PROCEDURE_CODE_SEQUENCE, VR::SQ);
    };
    let all = [CODE_VALUE, CODING_SCHEME, CODE_MEANING];
    let keys = keys.filter(|k| !k.is_empty()).unwrap_or(&all);
    let item = InMemDicomObject::from_element_iter(keys.iter().map(|&t| match t {
        CODE_VALUE => element(t, VR::SH, &code.value),
        CODING_SCHEME => element(t, VR::SH, &code.scheme),
        CODE_MEANING => element(t, VR::LO, &code.meaning),
        other => empty(other, VR::LO),
    }));
    DataElement::new(
        PROCEDURE_CODE_SEQUENCE,
        VR::SQ,
        DataSetSequence::new(vec![item], Length::UNDEFINED),
    )
}

fn split_range(v: &str) -> (&str, &str) {
    match v.split_once('-') {
        Some((lo, hi)) => (lo.trim(), hi.trim()),
        None => (v.trim(), v.trim()),
    }
}

/// The digits of a DA value (old forms had `.` between the parts).
fn digits(v: &str) -> String {
    v.chars().filter(|c| c.is_ascii_digit()).collect()
}

/// A time as six digits: a lower bound padded with zeros, an upper bound
/// with the end of its hour or minute.
fn time_bound(v: &str, upper: bool) -> String {
    let d: String = digits_time(v);
    let fill = if upper { "235959" } else { "000000" };
    let mut out = d.chars().take(6).collect::<String>();
    let len = out.len();
    out.push_str(&fill[len..]);
    out
}

fn digits_time(v: &str) -> String {
    // `10:30:00.5` and `103000.5`: the fraction goes first, then the colons.
    v.split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect()
}

fn range_matches(wanted: &str, have: &str, vr: VR) -> bool {
    if have.is_empty() {
        return false;
    }
    let (lo, hi) = split_range(wanted);
    if vr == VR::TM {
        let h = time_bound(have, false);
        return (lo.is_empty() || h >= time_bound(lo, false))
            && (hi.is_empty() || h <= time_bound(hi, true));
    }
    let h = digits(have);
    (lo.is_empty() || h.as_str() >= digits(lo).as_str())
        && (hi.is_empty() || h.as_str() <= digits(hi).as_str())
}

fn start_matches(date: Option<&str>, time: Option<&str>, have_date: &str, have_time: &str) -> bool {
    match (date, time) {
        (None, None) => true,
        (None, Some(t)) => range_matches(t, have_time, VR::TM),
        (Some(d), t) => {
            if have_date.is_empty() {
                return false;
            }
            let (dlo, dhi) = split_range(d);
            let (tlo, thi) = t.map(split_range).unwrap_or(("", ""));
            let have = format!("{}{}", digits(have_date), time_bound(have_time, false));
            let lo = format!("{}{}", digits(dlo), time_bound(tlo, false));
            let hi = format!("{}{}", digits(dhi), time_bound(thi, true));
            (dlo.is_empty() || have >= lo) && (dhi.is_empty() || have <= hi)
        }
    }
}

/// A person name for comparison: capitals, no trailing empty components.
fn person(v: &str) -> String {
    v.trim_end_matches(['^', ' ']).to_uppercase()
}

/// `pattern` with `*` and `?` against `text`, whole string.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: linear in practice,
    // never exponential on a pattern of many stars.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A UID for a requested procedure that came without one, the same for the
/// same order every time (`2.25.` and a 128-bit hash of `key`), so that a
/// modality asking twice gets the same study.
pub fn study_uid_for(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(key.as_bytes());
    let mut n = [0u8; 16];
    n.copy_from_slice(&hash[..16]);
    format!("2.25.{}", u128::from_be_bytes(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;

    fn step() -> ScheduledStep {
        ScheduledStep {
            patient_id: "P77".into(),
            patient_name: "DOE^JOHN".into(),
            birth_date: "19700101".into(),
            sex: "M".into(),
            accession_number: "ACC1".into(),
            study_instance_uid: "1.2.3.4".into(),
            requested_procedure_id: "RP1".into(),
            requested_procedure_description: "CT HEAD".into(),
            requested_procedure_code: Some(Code {
                value: "CTHD".into(),
                scheme: "L".into(),
                meaning: "CT head".into(),
            }),
            modality: "CT".into(),
            station_ae: "CT01".into(),
            start_date: "20261204".into(),
            start_time: "093000".into(),
            step_id: "SPS1".into(),
            step_description: "CT head plain".into(),
            status: "SCHEDULED".into(),
            ..Default::default()
        }
    }

    /// An identifier with top-level `top` keys and step keys `sps`
    /// (`None`: no sequence), encoded as a modality would.
    fn identifier(top: &[(Tag, VR, &str)], sps: Option<&[(Tag, VR, &str)]>, ts: &str) -> Vec<u8> {
        let mut elements: Vec<DataElement<InMemDicomObject>> = top
            .iter()
            .map(|(t, vr, v)| {
                if v.is_empty() {
                    DataElement::empty(*t, *vr)
                } else {
                    DataElement::new(*t, *vr, PrimitiveValue::from(*v))
                }
            })
            .collect();
        if let Some(sps) = sps {
            let item = InMemDicomObject::from_element_iter(sps.iter().map(|(t, vr, v)| {
                if v.is_empty() {
                    DataElement::empty(*t, *vr)
                } else {
                    DataElement::new(*t, *vr, PrimitiveValue::from(*v))
                }
            }));
            elements.push(DataElement::new(
                STEP_SEQUENCE,
                VR::SQ,
                DataSetSequence::new(vec![item], Length::UNDEFINED),
            ));
        }
        let obj = InMemDicomObject::from_element_iter(elements);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &transfer_syntax(ts))
            .unwrap();
        out
    }

    const NAME: Tag = Tag(0x0010, 0x0010);
    const PID: Tag = Tag(0x0010, 0x0020);
    const MODALITY: Tag = Tag(0x0008, 0x0060);
    const STUDY: Tag = Tag(0x0020, 0x000D);

    fn query(top: &[(Tag, VR, &str)], sps: &[(Tag, VR, &str)]) -> Query {
        let ts = super::super::uids::EXPLICIT_VR_LE;
        Query::read(&identifier(top, Some(sps), ts), ts).unwrap()
    }

    #[test]
    fn empty_keys_match_everything_and_values_must_match() {
        let s = step();
        assert!(query(
            &[(NAME, VR::PN, ""), (PID, VR::LO, "")],
            &[(MODALITY, VR::CS, "")]
        )
        .matches(&s));
        assert!(query(&[(PID, VR::LO, "P77")], &[(MODALITY, VR::CS, "CT")]).matches(&s));
        assert!(!query(&[(PID, VR::LO, "P78")], &[]).matches(&s));
        assert!(!query(&[], &[(MODALITY, VR::CS, "MR")]).matches(&s));
    }

    #[test]
    fn person_names_match_with_wildcards_and_without_regard_to_case() {
        let s = step();
        for hit in ["DOE*", "doe^john", "D?E^J*", "*", "DOE^JOHN^^"] {
            assert!(query(&[(NAME, VR::PN, hit)], &[]).matches(&s), "{hit}");
        }
        for miss in ["DOE", "SMITH*", "D?E"] {
            assert!(!query(&[(NAME, VR::PN, miss)], &[]).matches(&s), "{miss}");
        }
    }

    #[test]
    fn the_start_date_matches_single_values_open_and_closed_ranges() {
        let s = step();
        for hit in ["20261204", "20261201-20261231", "20261204-", "-20261204"] {
            assert!(
                query(&[], &[(START_DATE, VR::DA, hit)]).matches(&s),
                "{hit}"
            );
        }
        for miss in ["20261203", "20261205-", "-20261203"] {
            assert!(
                !query(&[], &[(START_DATE, VR::DA, miss)]).matches(&s),
                "{miss}"
            );
        }
        let undated = ScheduledStep {
            start_date: String::new(),
            ..step()
        };
        assert!(!query(&[], &[(START_DATE, VR::DA, "20261204")]).matches(&undated));
        assert!(query(&[], &[(START_DATE, VR::DA, "")]).matches(&undated));
    }

    #[test]
    fn date_and_time_ranges_together_are_one_date_time_range() {
        let s = step(); // 4 December 09:30
        let q = |d: &str, t: &str| query(&[], &[(START_DATE, VR::DA, d), (START_TIME, VR::TM, t)]);
        assert!(q("20261204", "0900-1000").matches(&s));
        assert!(!q("20261204", "1000-1100").matches(&s));
        // From the 3rd at 10:00 to the 4th at 08:00: 09:30 on the 4th is after it.
        assert!(!q("20261203-20261204", "1000-0800").matches(&s));
        // From the 3rd at 10:00 to the 5th at 08:00: inside.
        assert!(q("20261203-20261205", "1000-0800").matches(&s));
        assert!(
            q("20261204", "09-09").matches(&s),
            "an hour is its whole hour"
        );
    }

    #[test]
    fn a_station_ae_title_matches_and_a_step_without_one_is_offered_to_every_station() {
        let s = step();
        assert!(query(&[], &[(STATION_AE, VR::AE, "CT01")]).matches(&s));
        assert!(!query(&[], &[(STATION_AE, VR::AE, "CT02")]).matches(&s));
        let any = ScheduledStep {
            station_ae: String::new(),
            ..step()
        };
        assert!(query(&[], &[(STATION_AE, VR::AE, "CT02")]).matches(&any));
    }

    #[test]
    fn a_uid_list_matches_any_of_its_uids() {
        let s = step();
        assert!(query(&[(STUDY, VR::UI, "1.2.9\\1.2.3.4")], &[]).matches(&s));
        assert!(!query(&[(STUDY, VR::UI, "1.2.3")], &[]).matches(&s));
    }

    #[test]
    fn the_response_returns_the_keys_asked_with_values_and_unknown_keys_empty() {
        let ts = super::super::uids::IMPLICIT_VR_LE;
        let unknown = Tag(0x0010, 0x1030); // patient's weight: not kept
        let bytes = identifier(
            &[(NAME, VR::PN, ""), (PID, VR::LO, ""), (unknown, VR::DS, "")],
            Some(&[(MODALITY, VR::CS, "CT"), (START_DATE, VR::DA, "")]),
            ts,
        );
        let q = Query::read(&bytes, ts).unwrap();
        let (rsp, unsupported) = q.response(&step(), ts);
        assert!(unsupported);
        let obj = InMemDicomObject::read_dataset_with_ts(&rsp[..], &transfer_syntax(ts)).unwrap();
        assert_eq!(
            obj.element(NAME).unwrap().to_str().unwrap().trim(),
            "DOE^JOHN"
        );
        assert_eq!(obj.element(PID).unwrap().to_str().unwrap().trim(), "P77");
        assert!(obj
            .element(unknown)
            .unwrap()
            .to_str()
            .unwrap()
            .trim()
            .is_empty());
        assert!(
            obj.element_opt(Tag(0x0008, 0x0050)).unwrap().is_none(),
            "not asked, not sent"
        );
        let sps = &obj.element(STEP_SEQUENCE).unwrap().items().unwrap()[0];
        assert_eq!(
            sps.element(MODALITY).unwrap().to_str().unwrap().trim(),
            "CT"
        );
        assert_eq!(
            sps.element(START_DATE).unwrap().to_str().unwrap().trim(),
            "20261204"
        );
        assert!(sps.element_opt(STATION_AE).unwrap().is_none());
    }

    #[test]
    fn a_name_beyond_ascii_is_sent_in_utf8_and_says_so() {
        let ts = super::super::uids::EXPLICIT_VR_LE;
        let q = query(&[(NAME, VR::PN, "")], &[]);
        let s = ScheduledStep {
            patient_name: "MÜLLER^JÖRG".into(),
            ..step()
        };
        let (rsp, _) = q.response(&s, ts);
        let obj = InMemDicomObject::read_dataset_with_ts(&rsp[..], &transfer_syntax(ts)).unwrap();
        assert_eq!(
            obj.element(SPECIFIC_CHARACTER_SET)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "ISO_IR 192"
        );
        assert_eq!(
            obj.element(NAME).unwrap().to_str().unwrap().trim(),
            "MÜLLER^JÖRG"
        );
    }

    #[test]
    fn an_empty_step_sequence_asks_for_every_step_attribute() {
        let ts = super::super::uids::EXPLICIT_VR_LE;
        let bytes = {
            let obj = InMemDicomObject::from_element_iter([DataElement::new(
                STEP_SEQUENCE,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::new(Vec::new(), Length::UNDEFINED),
            )]);
            let mut out = Vec::new();
            obj.write_dataset_with_ts(&mut out, &transfer_syntax(ts))
                .unwrap();
            out
        };
        let (rsp, _) = Query::read(&bytes, ts).unwrap().response(&step(), ts);
        let obj = InMemDicomObject::read_dataset_with_ts(&rsp[..], &transfer_syntax(ts)).unwrap();
        let sps = &obj.element(STEP_SEQUENCE).unwrap().items().unwrap()[0];
        assert_eq!(
            sps.element(STATION_AE).unwrap().to_str().unwrap().trim(),
            "CT01"
        );
        assert_eq!(
            sps.element(Tag(0x0040, 0x0009))
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "SPS1"
        );
    }

    #[test]
    fn the_start_range_bounds_the_store_lookup() {
        let q = query(&[], &[(START_DATE, VR::DA, "20261204")]);
        assert_eq!(
            q.start_range(),
            Some(("20261204".into(), "20261204235959".into()))
        );
        assert_eq!(query(&[], &[(START_DATE, VR::DA, "")]).start_range(), None);
    }

    #[test]
    fn wildcards_do_not_blow_up_on_many_stars() {
        let text = "A".repeat(5000);
        let pattern = format!("{}B", "*".repeat(2000));
        assert!(!wildcard(&pattern, &text));
        assert!(wildcard("*A*A*", &text));
    }

    #[test]
    fn garbage_and_a_retrieve_level_are_refused_with_a_status() {
        let ts = super::super::uids::IMPLICIT_VR_LE;
        assert!(Query::read(&[0xff; 30], ts).is_err());
        let qr = identifier(&[(Tag(0x0008, 0x0052), VR::CS, "STUDY")], None, ts);
        assert_eq!(
            Query::read(&qr, ts).unwrap_err().status(),
            IDENTIFIER_DOES_NOT_MATCH
        );
    }

    #[test]
    fn the_generated_study_uid_is_stable_and_valid() {
        let a = study_uid_for("wl/ORD1");
        assert_eq!(a, study_uid_for("wl/ORD1"));
        assert_ne!(a, study_uid_for("wl/ORD2"));
        assert!(super::super::uids::is_valid_uid(&a) && a.len() <= 64, "{a}");
    }
}
