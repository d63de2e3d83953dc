//! HL7 v2 orders (ORM^O01, OMI^O23, OML^O21) → worklist entries.
//!
//! One entry per IPC segment (IHE Scheduled Workflow: one per scheduled
//! procedure step), or per OBR of an order without IPC:
//!
//! | DICOM | from |
//! | --- | --- |
//! | Accession Number | IPC-1, else OBR-18, else the filler number (ORC-3/OBR-3), else the placer number |
//! | Requested Procedure ID | IPC-2, else OBR-19, else the accession number |
//! | Study Instance UID | IPC-3, else ZDS-1, else derived from the order's key |
//! | Scheduled Procedure Step ID | IPC-4, else OBR-20, else the requested procedure id |
//! | Modality | IPC-5, else OBR-24 when it is a modality code, else the worklist's |
//! | Scheduled Station AE Title | IPC-9, else the worklist's |
//! | Scheduled Station Name, Location | IPC-7, IPC-8 (else PV1-3's point of care) |
//! | Requested Procedure Code, Description | OBR-4 |
//! | Step Description | IPC-6 text, else OBR-4 text |
//! | Start Date and Time | TQ1-7, else OBR-27.4, else ORC-7.4, else OBR-36, else the message time (MSH-7): an order without a time is scheduled when it was sent |
//! | Priority | TQ1-9, ORC-7.6, OBR-5: S → STAT, A → HIGH, R → ROUTINE |
//! | Referring / Requesting Physician | PV1-8, else OBR-16 / ORC-12, else OBR-16 |
//! | Patient ID, Issuer, Name, Birth Date, Sex | PID-3.1, PID-3.4, PID-5 (XPN order made DICOM's), PID-7, PID-8 |
//!
//! ORC-1 and ORC-5 give the state as for ServiceRequest (`CA`, `OC`, `DC`,
//! `CR`, `OD`, `DR`, `HD` take the step off the list; ORC-5 `IP` is
//! started, `CM` completed).

use super::common::{comp, get};
use super::parse_options;
use crate::worklist::{
    person_name, scheme_designator, StepState, WorklistChange, WorklistDefaults,
};
use crate::TransformError;
use ecko_message::StoredMessage;
use ecko_protocol::dicom::worklist::{study_uid_for, Code, ScheduledStep};
use ecko_protocol::hl7::{Message, Segment, Value};
use jiff::tz::TimeZone;

/// The message types a worklist takes.
pub const ORDER_CODES: &[&str] = &["ORM", "OMI", "OML"];

/// DICOM modality codes (PS3.3 C.7.3.1.1.1) an OBR-24 may carry.
const MODALITIES: &[&str] = &[
    "CR", "CT", "DX", "ES", "IO", "MG", "MR", "NM", "OT", "PT", "RF", "RG", "SC", "US", "XA", "XC",
    "OP", "BMD", "IVUS", "OCT", "OPT", "DOC", "SM", "GM", "ECG", "EPS", "HD", "IVOCT", "PX",
    "RTIMAGE",
];

#[derive(Default)]
struct Group<'a> {
    orc: Option<Segment<'a>>,
    obr: Option<Segment<'a>>,
    tq1: Option<Segment<'a>>,
    zds: Option<Segment<'a>>,
    ipc: Vec<Segment<'a>>,
}

pub fn changes(
    message: &StoredMessage,
    defaults: &WorklistDefaults,
    tz: &TimeZone,
) -> Result<Vec<WorklistChange>, TransformError> {
    let parsed = Message::parse(&message.payload, &parse_options(message))
        .map_err(|e| TransformError::Unreadable(e.to_string()))?;
    let id = parsed.identity();
    if !ORDER_CODES.contains(&id.message_code.as_str()) {
        return Err(TransformError::Unreadable(format!(
            "a worklist takes orders ({}), not {}^{}",
            ORDER_CODES.join(", "),
            id.message_code,
            id.trigger_event
        )));
    }
    let sent = get(&parsed.msh(), 7, 1);
    let mut pid = None;
    let mut pv1 = None;
    let mut groups: Vec<Group> = Vec::new();
    for seg in parsed.segments() {
        match seg.id() {
            "PID" => pid = Some(seg),
            "PV1" => pv1 = Some(seg),
            "ORC" => groups.push(Group {
                orc: Some(seg),
                ..Default::default()
            }),
            "OBR" => {
                // An OBR after another OBR without an ORC between starts
                // an order of its own (ORM allows ORC to be left out).
                if groups.last().is_none_or(|g| g.obr.is_some()) {
                    groups.push(Group::default());
                }
                if let Some(g) = groups.last_mut() {
                    g.obr = Some(seg);
                }
            }
            "TQ1" => {
                if let Some(g) = groups.last_mut() {
                    g.tq1.get_or_insert(seg);
                }
            }
            "ZDS" => {
                if let Some(g) = groups.last_mut() {
                    g.zds = Some(seg);
                }
            }
            "IPC" => {
                if let Some(g) = groups.last_mut() {
                    g.ipc.push(seg);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (n, g) in groups.iter().enumerate() {
        if g.obr.is_none() && g.ipc.is_empty() {
            // An ORC alone (a cancellation that names the order only) is
            // still a change of that order.
            if g.orc.is_none() {
                continue;
            }
        }
        let base = order(g, pid.as_ref(), pv1.as_ref(), defaults, tz, &sent)
            .map_err(|e| TransformError::Unreadable(format!("order {}: {e}", n + 1)))?;
        if g.ipc.is_empty() {
            out.push(base);
            continue;
        }
        for ipc in &g.ipc {
            out.push(step_of(&base, ipc, defaults));
        }
    }
    if out.is_empty() {
        return Err(TransformError::Empty(
            "no ORC or OBR: no order to put on the worklist".into(),
        ));
    }
    Ok(out)
}

fn first(values: impl IntoIterator<Item = String>) -> String {
    values
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

fn seg_get(seg: Option<&Segment<'_>>, f: usize, c: usize) -> String {
    seg.map(|s| get(s, f, c)).unwrap_or_default()
}

/// An XCN (`id^family^given^middle^suffix^prefix`) as a person name.
fn xcn(seg: Option<&Segment<'_>>, f: usize) -> String {
    let Some(v) = seg.and_then(|s| s.field(f)) else {
        return String::new();
    };
    person_name(
        &comp(&v, 2),
        &comp(&v, 3),
        &comp(&v, 4),
        &comp(&v, 6),
        &comp(&v, 5),
    )
}

fn order(
    g: &Group<'_>,
    pid: Option<&Segment<'_>>,
    pv1: Option<&Segment<'_>>,
    defaults: &WorklistDefaults,
    tz: &TimeZone,
    sent: &str,
) -> Result<WorklistChange, String> {
    let orc = g.orc.as_ref();
    let obr = g.obr.as_ref();
    let placer = first([seg_get(orc, 2, 1), seg_get(obr, 2, 1)]);
    let filler = first([seg_get(orc, 3, 1), seg_get(obr, 3, 1)]);
    let ipc = g.ipc.first();
    let accession = first([
        seg_get(ipc, 1, 1),
        seg_get(obr, 18, 1),
        filler.clone(),
        placer.clone(),
    ]);
    let key = first([placer, filler, accession.clone()]);
    if key.is_empty() {
        return Err("no placer, filler or accession number to keep it by".into());
    }
    let state = match seg_get(orc, 5, 1).as_str() {
        "CM" => StepState::Completed,
        "IP" => StepState::Started,
        "CA" | "DC" | "HD" | "ER" => StepState::Cancelled,
        _ => match seg_get(orc, 1, 1).as_str() {
            "CA" | "OC" | "DC" | "CR" | "OD" | "DR" | "HD" | "OH" => StepState::Cancelled,
            _ => StepState::Scheduled,
        },
    };
    let requested_procedure_id = first([seg_get(obr, 19, 1), accession.clone()]);
    let code = obr.and_then(|o| o.field(4)).and_then(|v| {
        let value = comp(&v, 1);
        (!value.is_empty()).then(|| Code {
            value,
            scheme: scheme_designator(&comp(&v, 3)),
            meaning: comp(&v, 2),
        })
    });
    let description = first([seg_get(obr, 4, 2), seg_get(obr, 4, 1)]);
    let when = first([
        seg_get(g.tq1.as_ref(), 7, 1),
        seg_get(obr, 27, 4),
        seg_get(orc, 7, 4),
        seg_get(obr, 36, 1),
        sent.to_string(),
    ]);
    let (start_date, start_time) = local_start(&when, tz);
    let obr24 = seg_get(obr, 24, 1).to_ascii_uppercase();
    let modality = if MODALITIES.contains(&obr24.as_str()) {
        obr24
    } else {
        defaults.modality.clone()
    };
    let priority = match first([
        seg_get(g.tq1.as_ref(), 9, 1),
        seg_get(orc, 7, 6),
        seg_get(obr, 5, 1),
    ])
    .as_str()
    {
        "S" => "STAT",
        "A" | "T" => "HIGH",
        "R" => "ROUTINE",
        _ => "",
    };
    let patient_name = pid
        .and_then(|p| p.field(5))
        .and_then(|f| f.repetition(1))
        .map(|r: Value<'_>| {
            person_name(
                &comp(&r, 1),
                &comp(&r, 2),
                &comp(&r, 3),
                &comp(&r, 5),
                &comp(&r, 4),
            )
        })
        .unwrap_or_default();
    let issuer = pid
        .and_then(|p| p.field(3))
        .and_then(|f| f.repetition(1))
        .and_then(|r| r.component(4))
        .and_then(|a| a.subcomponent(1))
        .map(|s| s.value().trim().to_string())
        .unwrap_or_default();
    let study_instance_uid = first([
        seg_get(g.zds.as_ref(), 1, 1),
        study_uid_for(&format!("{}/{key}", defaults.worklist)),
    ]);
    let step = ScheduledStep {
        patient_id: seg_get(pid, 3, 1),
        issuer_of_patient_id: issuer,
        patient_name,
        birth_date: seg_get(pid, 7, 1).chars().take(8).collect(),
        sex: match seg_get(pid, 8, 1).as_str() {
            "M" => "M",
            "F" => "F",
            "" => "",
            _ => "O",
        }
        .into(),
        accession_number: accession,
        referring_physician: first([xcn(pv1, 8), xcn(obr, 16)]),
        requesting_physician: first([xcn(orc, 12), xcn(obr, 16)]),
        study_instance_uid,
        requested_procedure_id: requested_procedure_id.clone(),
        requested_procedure_description: description.clone(),
        requested_procedure_code: code,
        priority: priority.into(),
        modality,
        station_ae: defaults.station_ae.clone(),
        location: seg_get(pv1, 3, 1),
        start_date,
        start_time,
        step_id: first([seg_get(obr, 20, 1), requested_procedure_id]),
        step_description: description,
        status: state.dicom_status().into(),
        ..Default::default()
    };
    Ok(WorklistChange { key, state, step })
}

/// The order's entry for one IPC (one scheduled procedure step).
fn step_of(
    base: &WorklistChange,
    ipc: &Segment<'_>,
    defaults: &WorklistDefaults,
) -> WorklistChange {
    let mut c = base.clone();
    let s = &mut c.step;
    let set = |field: &mut String, v: String| {
        if !v.is_empty() {
            *field = v;
        }
    };
    set(&mut s.accession_number, get(ipc, 1, 1));
    set(&mut s.requested_procedure_id, get(ipc, 2, 1));
    set(&mut s.study_instance_uid, get(ipc, 3, 1));
    set(&mut s.step_id, get(ipc, 4, 1));
    set(&mut s.modality, get(ipc, 5, 1).to_ascii_uppercase());
    set(
        &mut s.step_description,
        first([get(ipc, 6, 2), get(ipc, 6, 1)]),
    );
    set(&mut s.station_name, get(ipc, 7, 1));
    set(&mut s.location, get(ipc, 8, 1));
    s.station_ae = first([get(ipc, 9, 1), defaults.station_ae.clone()]);
    c.key = format!("{}/{}", base.key, s.step_id);
    c
}

/// An HL7 timestamp as the site's local date and time (one with an offset
/// is converted; one without is already local).
fn local_start(dtm: &str, tz: &TimeZone) -> (String, String) {
    crate::r4::date_time(dtm, tz)
        .map(|iso| crate::worklist::local_start(&iso, tz))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::Envelope;

    fn stored(text: &str) -> StoredMessage {
        StoredMessage {
            id: 1,
            received_at: 0,
            envelope: Envelope {
                source: "his".into(),
                dedup_key: None,
                message_type: "ORM^O01".into(),
                content_type: "application/hl7-v2".into(),
                control_id: None,
                patient_id: None,
                payload: text.replace('\n', "\r").into_bytes(),
                ack: None,
                hints: Default::default(),
            },
        }
    }

    fn defaults() -> WorklistDefaults {
        WorklistDefaults {
            worklist: "wl".into(),
            modality: "OT".into(),
            station_ae: String::new(),
        }
    }

    const ORM: &str = "MSH|^~\\&|RIS|H|ECKO|G|20261204080000||ORM^O01|M1|P|2.5.1\n\
PID|||P77^^^HOSP||DOE^JOHN^Q^JR^DR||19700102|M\n\
PV1||O|CT-ROOM^^^H|||||1234^WELBY^MARCUS\n\
ORC|NW|ORD1|FIL1||SC||^^^20261204093000^^S\n\
OBR|1|ORD1|FIL1|CTHD^CT head plain^L||||||||||||||ACC1|RP1|SPS1||||CT\n\
ZDS|1.2.826.0.1.3680043.2.1125.1^RIS^Application^DICOM\n";

    #[test]
    fn an_orm_with_ihe_fields_becomes_one_step_with_each_field_in_place() {
        let c = changes(&stored(ORM), &defaults(), &TimeZone::UTC).unwrap();
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!((c.key.as_str(), c.state), ("ORD1", StepState::Scheduled));
        let s = &c.step;
        assert_eq!(
            s.patient_name, "DOE^JOHN^Q^DR^JR",
            "XPN suffix/prefix swapped into DICOM order"
        );
        assert_eq!(
            (s.patient_id.as_str(), s.issuer_of_patient_id.as_str()),
            ("P77", "HOSP")
        );
        assert_eq!((s.birth_date.as_str(), s.sex.as_str()), ("19700102", "M"));
        assert_eq!(s.accession_number, "ACC1");
        assert_eq!(s.requested_procedure_id, "RP1");
        assert_eq!(s.step_id, "SPS1");
        assert_eq!(s.modality, "CT");
        assert_eq!(s.study_instance_uid, "1.2.826.0.1.3680043.2.1125.1");
        assert_eq!(
            (s.start_date.as_str(), s.start_time.as_str()),
            ("20261204", "093000")
        );
        assert_eq!(s.priority, "STAT");
        assert_eq!(s.referring_physician, "WELBY^MARCUS");
        assert_eq!(s.requested_procedure_description, "CT head plain");
        assert_eq!(s.location, "CT-ROOM");
    }

    #[test]
    fn an_omi_gives_one_step_per_ipc_each_with_its_own_key() {
        let omi = "MSH|^~\\&|RIS|H|ECKO|G|20261204080000||OMI^O23|M2|P|2.5.1\n\
PID|||P78||ROE^JANE\n\
ORC|NW|ORD2\n\
TQ1|||||||20261205100000\n\
OBR|1|ORD2||MRBR^MR brain^L\n\
IPC|ACC2|RP2|1.2.3.9|SPS-A|MR|^T1 axial|MR1|ROOM5|MRAE1\n\
IPC|ACC2|RP2|1.2.3.9|SPS-B|MR|^T2 sagittal|MR1|ROOM5|MRAE1\n";
        let c = changes(&stored(omi), &defaults(), &TimeZone::UTC).unwrap();
        let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["ORD2/SPS-A", "ORD2/SPS-B"]);
        assert_eq!(c[1].step.step_description, "T2 sagittal");
        assert_eq!(c[0].step.station_ae, "MRAE1");
        assert_eq!(c[0].step.modality, "MR");
        assert_eq!(c[0].step.start_date, "20261205");
        assert_eq!(c[0].step.study_instance_uid, "1.2.3.9");
    }

    #[test]
    fn a_cancellation_keeps_the_key_and_an_order_without_time_or_modality_gets_the_defaults() {
        let ca = ORM.replace("ORC|NW|", "ORC|CA|");
        let c = changes(&stored(&ca), &defaults(), &TimeZone::UTC).unwrap();
        assert_eq!(
            (c[0].key.as_str(), c[0].state),
            ("ORD1", StepState::Cancelled)
        );
        let bare = "MSH|^~\\&|HIS|H|ECKO|G|20261204071500||ORM^O01|M3|P|2.3\n\
PID|||P79||POE^ANN\n\
ORC|NW|ORD3\n\
OBR|1|ORD3||XR^Chest^L|||||||||||||||||||RAD\n";
        let c = changes(&stored(bare), &defaults(), &TimeZone::UTC).unwrap();
        let s = &c[0].step;
        assert_eq!(s.modality, "OT", "RAD is a section, not a modality");
        assert_eq!(
            (s.start_date.as_str(), s.start_time.as_str()),
            ("20261204", "071500"),
            "scheduled when sent"
        );
        assert_eq!(s.accession_number, "ORD3");
        assert_eq!(s.study_instance_uid, study_uid_for("wl/ORD3"));
    }

    #[test]
    fn a_time_with_an_offset_is_made_local() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            local_start("20261204083000+0000", &tz),
            ("20261204".into(), "093000".into())
        );
        assert_eq!(
            local_start("20261204", &tz),
            ("20261204".into(), String::new())
        );
        assert_eq!(local_start("garbage", &tz), (String::new(), String::new()));
    }

    #[test]
    fn a_result_or_an_order_without_numbers_is_an_error_not_an_empty_worklist() {
        let oru = "MSH|^~\\&|LAB|H|ECKO|G|20261204||ORU^R01|M4|P|2.5\nPID|||1\nOBR|1\n";
        assert!(changes(&stored(oru), &defaults(), &TimeZone::UTC).is_err());
        let unkeyed = "MSH|^~\\&|HIS|H|ECKO|G|20261204||ORM^O01|M5|P|2.5\nPID|||1\nORC|NW\nOBR|1\n";
        let e = changes(&stored(unkeyed), &defaults(), &TimeZone::UTC).unwrap_err();
        assert!(e.to_string().contains("no placer"), "{e}");
    }
}
