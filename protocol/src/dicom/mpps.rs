//! Modality Performed Procedure Step (PS3.4 F.7): what a modality's
//! N-CREATE and N-SET say about a procedure it performs.
//!
//! The command set is read by [`Command::read`]; N-CREATE names its step in
//! Affected SOP Instance UID, N-SET in Requested SOP Instance UID
//! ([`instance_of`]). The data set (Implicit or Explicit VR Little Endian,
//! as the context was accepted) is read into a [`Step`]: the attributes the
//! journal keeps and the FHIR Procedure is made of, as JSON whose absent
//! attributes are left out, so an N-SET's step laid over the N-CREATE's
//! (RFC 7396 merge, in the journal) changes only what it sets.
//!
//! The rules of the state machine (F.7.2): an N-CREATE's status must be
//! `IN PROGRESS`; an N-SET may set `IN PROGRESS`, `COMPLETED` or
//! `DISCONTINUED`; a step once `COMPLETED` or `DISCONTINUED` takes no
//! N-SET (`0110`, the journal checks it in the same transaction).

use super::{Command, CommandField, Status};
use dicom_core::Tag;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use serde::{Deserialize, Serialize};

pub const SOP_CLASS: &str = "1.2.840.10008.3.1.2.3.3";
pub const MESSAGE_TYPE: &str = "MPPS";
pub const CONTENT_TYPE: &str = "application/x-ecko-mpps+json";

pub const N_CREATE_RQ: u16 = 0x0140;
pub const N_CREATE_RSP: u16 = 0x8140;
pub const N_SET_RQ: u16 = 0x0120;
pub const N_SET_RSP: u16 = 0x8120;

/// N-CREATE of an instance that exists.
pub const DUPLICATE_INSTANCE: Status = Status(0x0111);
/// N-SET of an instance that does not exist.
pub const NO_SUCH_INSTANCE: Status = Status(0x0112);
/// An attribute value out of range (a status not allowed here).
pub const INVALID_ATTRIBUTE_VALUE: Status = Status(0x0106);

pub const IN_PROGRESS: &str = "IN PROGRESS";
pub const COMPLETED: &str = "COMPLETED";
pub const DISCONTINUED: &str = "DISCONTINUED";
/// The states a step cannot leave.
pub const FINAL: &[&str] = &[COMPLETED, DISCONTINUED];

/// Which of the two requests a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Create,
    Set,
}

impl Request {
    pub fn of(field: CommandField) -> Option<Request> {
        match field.code() {
            N_CREATE_RQ => Some(Request::Create),
            N_SET_RQ => Some(Request::Set),
            _ => None,
        }
    }

    /// The response's command field.
    pub fn response(self) -> CommandField {
        CommandField::Other(match self {
            Request::Create => N_CREATE_RSP,
            Request::Set => N_SET_RSP,
        })
    }
}

/// The SOP instance a request is about: Affected for N-CREATE (where the
/// SCU may leave it to the SCP), Requested for N-SET.
pub fn instance_of(request: Request, command: &Command) -> Option<&str> {
    match request {
        Request::Create => command.affected_sop_instance.as_deref(),
        Request::Set => command.requested_sop_instance.as_deref(),
    }
}

/// The SOP class a request names.
pub fn class_of(request: Request, command: &Command) -> Option<&str> {
    match request {
        Request::Create => command.affected_sop_class.as_deref(),
        Request::Set => command.requested_sop_class.as_deref(),
    }
}

/// The response to `command` for the step `instance`.
pub fn response(
    request: Request,
    command: &Command,
    instance: Option<&str>,
    status: Status,
    comment: Option<&str>,
) -> Vec<u8> {
    let answered = Command {
        message_id: command.message_id,
        affected_sop_class: Some(SOP_CLASS.to_string()),
        affected_sop_instance: instance.map(str::to_string),
        ..Default::default()
    };
    answered.response(request.response(), status, comment)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformedSeries {
    pub series_uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

/// A step's attributes as the journal keeps them (`MPPS` messages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The step's SOP instance UID (filled by the SCP from the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sop_instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_ae: Option<String>,
    /// DICOM date and time joined (`YYYYMMDDHHMMSS.FFFFFF`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure_code: Option<Code>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_procedure_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_step_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performed_series: Option<Vec<PerformedSeries>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MppsError {
    #[error("the data set is not in Implicit or Explicit VR Little Endian ({0})")]
    TransferSyntax(String),
    #[error("the data set cannot be read: {0}")]
    Unreadable(String),
}

const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const MODALITY: Tag = Tag(0x0008, 0x0060);
const STUDY_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_UID: Tag = Tag(0x0020, 0x000E);
const SERIES_DESCRIPTION: Tag = Tag(0x0008, 0x103E);
const ACCESSION: Tag = Tag(0x0008, 0x0050);
const PROCEDURE_CODES: Tag = Tag(0x0008, 0x1032);
const CODE_VALUE: Tag = Tag(0x0008, 0x0100);
const CODE_SCHEME: Tag = Tag(0x0008, 0x0102);
const CODE_MEANING: Tag = Tag(0x0008, 0x0104);
const REFERENCED_IMAGES: Tag = Tag(0x0008, 0x1140);
const REFERENCED_SOP_INSTANCE: Tag = Tag(0x0008, 0x1155);
const NON_IMAGE_COMPOSITES: Tag = Tag(0x0040, 0x0220);
const SCHEDULED_STEP_ID: Tag = Tag(0x0040, 0x0009);
const REQUESTED_PROCEDURE_ID: Tag = Tag(0x0040, 0x1001);
const STATION_AE: Tag = Tag(0x0040, 0x0241);
const START_DATE: Tag = Tag(0x0040, 0x0244);
const START_TIME: Tag = Tag(0x0040, 0x0245);
const END_DATE: Tag = Tag(0x0040, 0x0250);
const END_TIME: Tag = Tag(0x0040, 0x0251);
const STATUS: Tag = Tag(0x0040, 0x0252);
const PPS_ID: Tag = Tag(0x0040, 0x0253);
const PPS_DESCRIPTION: Tag = Tag(0x0040, 0x0254);
const SCHEDULED_STEPS: Tag = Tag(0x0040, 0x0270);
const PERFORMED_SERIES: Tag = Tag(0x0040, 0x0340);

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let s = super::uids::trim(s.trim()).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .unwrap_or(&[])
}

fn date_time(obj: &InMemDicomObject, date: Tag, time: Tag) -> Option<String> {
    let d = text(obj, date)?;
    Some(match text(obj, time) {
        Some(t) => format!("{d}{t}"),
        None => d,
    })
}

impl Step {
    /// Reads the data set of an N-CREATE or N-SET sent in `transfer_syntax`.
    pub fn read(bytes: &[u8], transfer_syntax: &str) -> Result<Step, MppsError> {
        let (ts, explicit) = match super::uids::trim(transfer_syntax) {
            super::uids::IMPLICIT_VR_LE => (IMPLICIT_VR_LITTLE_ENDIAN.erased(), false),
            super::uids::EXPLICIT_VR_LE => (EXPLICIT_VR_LITTLE_ENDIAN.erased(), true),
            other => return Err(MppsError::TransferSyntax(other.to_string())),
        };
        if let Some(why) = super::lengths::refusal(bytes, explicit) {
            return Err(MppsError::Unreadable(why));
        }
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
            .map_err(|e| MppsError::Unreadable(e.to_string()))?;
        // The first scheduled step names the order (study, accession).
        let scheduled = items(&obj, SCHEDULED_STEPS).first();
        let from_scheduled = |tag| scheduled.and_then(|s| text(s, tag));
        let performed_series = obj.element_opt(PERFORMED_SERIES).ok().flatten().map(|_| {
            items(&obj, PERFORMED_SERIES)
                .iter()
                .filter_map(|s| {
                    let instances = items(s, REFERENCED_IMAGES)
                        .iter()
                        .chain(items(s, NON_IMAGE_COMPOSITES))
                        .filter_map(|r| text(r, REFERENCED_SOP_INSTANCE))
                        .collect();
                    Some(PerformedSeries {
                        series_uid: text(s, SERIES_UID)?,
                        description: text(s, SERIES_DESCRIPTION),
                        instances,
                    })
                })
                .collect()
        });
        Ok(Step {
            sop_instance: None,
            status: text(&obj, STATUS),
            pps_id: text(&obj, PPS_ID),
            station_ae: text(&obj, STATION_AE),
            start: date_time(&obj, START_DATE, START_TIME),
            end: date_time(&obj, END_DATE, END_TIME),
            modality: text(&obj, MODALITY),
            description: text(&obj, PPS_DESCRIPTION),
            procedure_code: items(&obj, PROCEDURE_CODES).first().and_then(|c| {
                Some(Code {
                    code: text(c, CODE_VALUE)?,
                    scheme: text(c, CODE_SCHEME),
                    meaning: text(c, CODE_MEANING),
                })
            }),
            patient_id: text(&obj, PATIENT_ID),
            study_uid: from_scheduled(STUDY_UID),
            accession_number: from_scheduled(ACCESSION),
            requested_procedure_id: from_scheduled(REQUESTED_PROCEDURE_ID),
            scheduled_step_id: from_scheduled(SCHEDULED_STEP_ID),
            performed_series,
        })
    }

    /// Whether `request` may carry this step's status: the error status
    /// and comment when it may not.
    pub fn check(&self, request: Request) -> Result<(), (Status, String)> {
        let status = self.status.as_deref();
        match (request, status) {
            (Request::Create, Some(IN_PROGRESS)) => Ok(()),
            (Request::Create, other) => Err((
                INVALID_ATTRIBUTE_VALUE,
                format!(
                    "an N-CREATE's status must be IN PROGRESS, not {}",
                    other.unwrap_or("empty")
                ),
            )),
            (Request::Set, None | Some(IN_PROGRESS | COMPLETED | DISCONTINUED)) => Ok(()),
            (Request::Set, Some(other)) => Err((
                INVALID_ATTRIBUTE_VALUE,
                format!("`{other}` is not a performed procedure step status"),
            )),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Strings and lists of strings always serialise.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Step, MppsError> {
        serde_json::from_slice(bytes).map_err(|e| MppsError::Unreadable(e.to_string()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn el(tag: Tag, vr: VR, v: &str) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, vr, PrimitiveValue::from(v))
    }

    fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    }

    /// An N-CREATE data set as a modality sends it, in `ts`.
    pub(crate) fn create_data_set(status: &str, explicit: bool) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter([
            el(PATIENT_ID, VR::LO, "P-42"),
            el(MODALITY, VR::CS, "CT"),
            seq(
                SCHEDULED_STEPS,
                vec![InMemDicomObject::from_element_iter([
                    el(STUDY_UID, VR::UI, "1.2.3.4"),
                    el(ACCESSION, VR::SH, "ACC-1"),
                    el(SCHEDULED_STEP_ID, VR::SH, "SPS1"),
                ])],
            ),
            seq(
                PROCEDURE_CODES,
                vec![InMemDicomObject::from_element_iter([
                    el(CODE_VALUE, VR::SH, "CTHEAD"),
                    el(CODE_SCHEME, VR::SH, "99LOCAL"),
                    el(CODE_MEANING, VR::LO, "CT head"),
                ])],
            ),
            el(STATION_AE, VR::AE, "CT1"),
            el(START_DATE, VR::DA, "20260131"),
            el(START_TIME, VR::TM, "101500"),
            el(STATUS, VR::CS, status),
            el(PPS_ID, VR::SH, "PPS-7"),
            seq(
                PERFORMED_SERIES,
                vec![InMemDicomObject::from_element_iter([
                    el(SERIES_UID, VR::UI, "1.2.3.4.1"),
                    seq(
                        REFERENCED_IMAGES,
                        vec![InMemDicomObject::from_element_iter([el(
                            REFERENCED_SOP_INSTANCE,
                            VR::UI,
                            "1.2.3.4.1.1",
                        )])],
                    ),
                ])],
            ),
        ]);
        let ts = if explicit {
            EXPLICIT_VR_LITTLE_ENDIAN.erased()
        } else {
            IMPLICIT_VR_LITTLE_ENDIAN.erased()
        };
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &ts).unwrap();
        out
    }

    #[test]
    fn an_n_create_data_set_reads_into_its_step_in_either_little_endian_syntax() {
        for (explicit, ts) in [
            (false, super::super::uids::IMPLICIT_VR_LE),
            (true, super::super::uids::EXPLICIT_VR_LE),
        ] {
            let step = Step::read(&create_data_set("IN PROGRESS", explicit), ts).unwrap();
            assert_eq!(step.status.as_deref(), Some(IN_PROGRESS));
            assert_eq!(step.station_ae.as_deref(), Some("CT1"));
            assert_eq!(step.start.as_deref(), Some("20260131101500"));
            assert_eq!(step.end, None);
            assert_eq!(step.modality.as_deref(), Some("CT"));
            assert_eq!(step.study_uid.as_deref(), Some("1.2.3.4"));
            assert_eq!(step.accession_number.as_deref(), Some("ACC-1"));
            assert_eq!(
                step.procedure_code.as_ref().map(|c| c.code.as_str()),
                Some("CTHEAD")
            );
            let series = step.performed_series.clone().unwrap();
            assert_eq!(series[0].series_uid, "1.2.3.4.1");
            assert_eq!(series[0].instances, ["1.2.3.4.1.1"]);
            assert_eq!(step.check(Request::Create), Ok(()));
            assert_eq!(Step::from_json(&step.to_json()).unwrap(), step);
        }
    }

    #[test]
    fn an_n_create_not_in_progress_or_an_unknown_status_is_an_invalid_value() {
        let done = Step::read(
            &create_data_set("COMPLETED", false),
            super::super::uids::IMPLICIT_VR_LE,
        )
        .unwrap();
        assert_eq!(
            done.check(Request::Create).unwrap_err().0,
            INVALID_ATTRIBUTE_VALUE
        );
        assert_eq!(done.check(Request::Set), Ok(()));
        let odd = Step {
            status: Some("PAUSED".into()),
            ..Default::default()
        };
        assert!(odd.check(Request::Set).is_err());
        assert_eq!(
            Step::default().check(Request::Set),
            Ok(()),
            "an N-SET may leave the status"
        );
    }

    #[test]
    fn absent_attributes_are_left_out_so_a_merge_keeps_the_earlier_ones() {
        let set = Step {
            status: Some(COMPLETED.into()),
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(set.to_json()).unwrap(),
            r#"{"status":"COMPLETED"}"#
        );
    }

    #[test]
    fn garbage_and_a_compressed_syntax_are_errors_not_panics() {
        assert!(Step::read(&[0xff; 30], super::super::uids::IMPLICIT_VR_LE).is_err());
        assert!(Step::read(&[], "1.2.840.10008.1.2.4.50").is_err());
        let mut cut = create_data_set("IN PROGRESS", true);
        cut.truncate(cut.len() / 2);
        assert!(Step::read(&cut, super::super::uids::EXPLICIT_VR_LE).is_err());
    }

    #[test]
    fn n_create_and_n_set_commands_read_back_and_are_answered_with_their_instance() {
        use dicom_core::PrimitiveValue as P;
        let set = InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0000, 0x0003), VR::UI, P::from(SOP_CLASS)),
            DataElement::new(Tag(0x0000, 0x0100), VR::US, P::from(N_SET_RQ)),
            DataElement::new(Tag(0x0000, 0x0110), VR::US, P::from(5u16)),
            DataElement::new(Tag(0x0000, 0x0800), VR::US, P::from(0u16)),
            DataElement::new(Tag(0x0000, 0x1001), VR::UI, P::from("1.2.9.9")),
        ]);
        let mut bytes = Vec::new();
        set.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        let command = Command::read(&bytes).unwrap();
        let request = command.field.and_then(Request::of).unwrap();
        assert_eq!(request, Request::Set);
        assert!(command.has_data_set);
        assert_eq!(instance_of(request, &command), Some("1.2.9.9"));
        assert_eq!(class_of(request, &command), Some(SOP_CLASS));
        let rsp = Command::read(&response(
            request,
            &command,
            Some("1.2.9.9"),
            NO_SUCH_INSTANCE,
            None,
        ))
        .unwrap();
        assert_eq!(rsp.field.map(CommandField::code), Some(N_SET_RSP));
        assert_eq!(rsp.responded_to, Some(5));
        assert_eq!(rsp.status, Some(NO_SUCH_INSTANCE));
        assert_eq!(rsp.affected_sop_instance.as_deref(), Some("1.2.9.9"));
        assert_eq!(Request::of(CommandField::StoreRq), None);
    }
}
