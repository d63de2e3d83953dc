//! DIMSE command sets (PS3.7 9 and E.1) for C-ECHO, C-STORE, C-FIND and
//! C-CANCEL, and what N-CREATE and N-SET carry (`dicom::mpps` reads those).
//!
//! A command set is always Implicit VR Little Endian, whatever the
//! presentation context says for the data. Reading takes the fields a
//! request needs and refuses one without a command field or message id;
//! writing sets the command group length, which peers check.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

const GROUP_LENGTH: Tag = Tag(0x0000, 0x0000);
const AFFECTED_SOP_CLASS: Tag = Tag(0x0000, 0x0002);
const REQUESTED_SOP_CLASS: Tag = Tag(0x0000, 0x0003);
const COMMAND_FIELD: Tag = Tag(0x0000, 0x0100);
const MESSAGE_ID: Tag = Tag(0x0000, 0x0110);
const RESPONDED_TO: Tag = Tag(0x0000, 0x0120);
const PRIORITY: Tag = Tag(0x0000, 0x0700);
const DATA_SET_TYPE: Tag = Tag(0x0000, 0x0800);
const STATUS: Tag = Tag(0x0000, 0x0900);
const ERROR_COMMENT: Tag = Tag(0x0000, 0x0902);
const AFFECTED_SOP_INSTANCE: Tag = Tag(0x0000, 0x1000);
const REQUESTED_SOP_INSTANCE: Tag = Tag(0x0000, 0x1001);

/// The value of Command Data Set Type that means "no data set follows".
const NO_DATA_SET: u16 = 0x0101;

/// The commands the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandField {
    StoreRq,
    StoreRsp,
    EchoRq,
    EchoRsp,
    FindRq,
    FindRsp,
    Cancel,
    Other(u16),
}

impl CommandField {
    pub fn code(self) -> u16 {
        match self {
            CommandField::StoreRq => 0x0001,
            CommandField::StoreRsp => 0x8001,
            CommandField::EchoRq => 0x0030,
            CommandField::EchoRsp => 0x8030,
            CommandField::FindRq => 0x0020,
            CommandField::FindRsp => 0x8020,
            CommandField::Cancel => 0x0FFF,
            CommandField::Other(c) => c,
        }
    }

    fn from_code(c: u16) -> Self {
        match c {
            0x0001 => CommandField::StoreRq,
            0x8001 => CommandField::StoreRsp,
            0x0030 => CommandField::EchoRq,
            0x8030 => CommandField::EchoRsp,
            0x0020 => CommandField::FindRq,
            0x8020 => CommandField::FindRsp,
            0x0FFF => CommandField::Cancel,
            c => CommandField::Other(c),
        }
    }
}

/// A C-STORE or C-ECHO response status (PS3.4 B.2.3, PS3.7 C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    /// Stored, but the data set does not match what it was sent as (here:
    /// the SOP instance was received before with other content; both are
    /// kept).
    pub const DATA_SET_MISMATCH: Status = Status(0xB007);
    /// Out of resources: the disk or the journal cannot take it now.
    pub const OUT_OF_RESOURCES: Status = Status(0xA700);
    /// The data set cannot be understood (no SOP instance UID, say).
    pub const CANNOT_UNDERSTAND: Status = Status(0xC000);
    /// The SOP class is not supported on this context.
    pub const SOP_CLASS_NOT_SUPPORTED: Status = Status(0x0122);
    /// Failed, for a reason given in the error comment.
    pub const PROCESSING_FAILURE: Status = Status(0x0110);

    pub fn is_success(self) -> bool {
        self.0 == 0
    }

    /// Warnings (B000–BFFF, and 0001 and 0107/0116 of some services) mean
    /// the object was stored.
    pub fn is_warning(self) -> bool {
        (0xB000..=0xBFFF).contains(&self.0)
            || self.0 == 0x0001
            || self.0 == 0x0107
            || self.0 == 0x0116
    }

    /// Failures worth trying again: out of resources (A7xx) and the
    /// processing failure some servers answer when busy.
    pub fn is_transient_failure(self) -> bool {
        (0xA700..=0xA7FF).contains(&self.0) || self.0 == 0x0110 || self.0 == 0x0213
    }
}

/// A command set as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    pub field: Option<CommandField>,
    pub message_id: u16,
    pub responded_to: Option<u16>,
    pub affected_sop_class: Option<String>,
    pub affected_sop_instance: Option<String>,
    /// N-SET, N-GET, N-ACTION, N-DELETE name their object with these.
    pub requested_sop_class: Option<String>,
    pub requested_sop_instance: Option<String>,
    pub priority: u16,
    pub has_data_set: bool,
    pub status: Option<Status>,
    pub error_comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command set cannot be read: {0}")]
    Unreadable(String),
    #[error("the command set has no {0}")]
    Missing(&'static str),
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let s = super::uids::trim(s.trim()).to_string();
    (!s.is_empty()).then_some(s)
}

fn number(obj: &InMemDicomObject, tag: Tag) -> Option<u16> {
    obj.element_opt(tag).ok().flatten()?.to_int::<u16>().ok()
}

impl Command {
    /// Reads a command set (its fragments joined).
    pub fn read(bytes: &[u8]) -> Result<Command, CommandError> {
        let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
        if let Some(why) = super::lengths::refusal(bytes, false) {
            return Err(CommandError::Unreadable(why));
        }
        let obj = InMemDicomObject::read_dataset_with_ts(bytes, &ts)
            .map_err(|e| CommandError::Unreadable(e.to_string()))?;
        let field = number(&obj, COMMAND_FIELD)
            .map(CommandField::from_code)
            .ok_or(CommandError::Missing("command field"))?;
        let message_id = number(&obj, MESSAGE_ID);
        let responded_to = number(&obj, RESPONDED_TO);
        if message_id.is_none() && responded_to.is_none() {
            return Err(CommandError::Missing("message id"));
        }
        Ok(Command {
            field: Some(field),
            message_id: message_id.unwrap_or_default(),
            responded_to,
            affected_sop_class: text(&obj, AFFECTED_SOP_CLASS),
            affected_sop_instance: text(&obj, AFFECTED_SOP_INSTANCE),
            requested_sop_class: text(&obj, REQUESTED_SOP_CLASS),
            requested_sop_instance: text(&obj, REQUESTED_SOP_INSTANCE),
            priority: number(&obj, PRIORITY).unwrap_or(0),
            has_data_set: number(&obj, DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET),
            status: number(&obj, STATUS).map(Status),
            error_comment: text(&obj, ERROR_COMMENT),
        })
    }

    /// The response to this request with `status`.
    pub fn response(&self, field: CommandField, status: Status, comment: Option<&str>) -> Vec<u8> {
        self.response_with(field, status, comment, false)
    }

    /// The response to this request with `status`, saying whether a data
    /// set (a C-FIND match) follows it.
    pub fn response_with(
        &self,
        field: CommandField,
        status: Status,
        comment: Option<&str>,
        data_set: bool,
    ) -> Vec<u8> {
        let mut elements = Vec::new();
        if let Some(c) = &self.affected_sop_class {
            elements.push(DataElement::new(
                AFFECTED_SOP_CLASS,
                VR::UI,
                PrimitiveValue::from(c.as_str()),
            ));
        }
        elements.push(DataElement::new(
            COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(field.code()),
        ));
        elements.push(DataElement::new(
            RESPONDED_TO,
            VR::US,
            PrimitiveValue::from(self.message_id),
        ));
        elements.push(DataElement::new(
            DATA_SET_TYPE,
            VR::US,
            PrimitiveValue::from(if data_set { 0x0001 } else { NO_DATA_SET }),
        ));
        elements.push(DataElement::new(
            STATUS,
            VR::US,
            PrimitiveValue::from(status.0),
        ));
        if let Some(c) = comment {
            // LO: at most 64 characters.
            let c: String = c
                .chars()
                .filter(|ch| ch.is_ascii() && !ch.is_ascii_control())
                .take(64)
                .collect();
            elements.push(DataElement::new(
                ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(c),
            ));
        }
        if let Some(i) = &self.affected_sop_instance {
            elements.push(DataElement::new(
                AFFECTED_SOP_INSTANCE,
                VR::UI,
                PrimitiveValue::from(i.as_str()),
            ));
        }
        encode(elements)
    }
}

/// A C-STORE-RQ for one object.
pub fn store_request(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    encode(vec![
        DataElement::new(AFFECTED_SOP_CLASS, VR::UI, PrimitiveValue::from(sop_class)),
        DataElement::new(
            COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(CommandField::StoreRq.code()),
        ),
        DataElement::new(MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(PRIORITY, VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(DATA_SET_TYPE, VR::US, PrimitiveValue::from(0x0000u16)),
        DataElement::new(
            AFFECTED_SOP_INSTANCE,
            VR::UI,
            PrimitiveValue::from(sop_instance),
        ),
    ])
}

/// A C-ECHO-RQ.
pub fn echo_request(message_id: u16) -> Vec<u8> {
    encode(vec![
        DataElement::new(
            AFFECTED_SOP_CLASS,
            VR::UI,
            PrimitiveValue::from(super::uids::VERIFICATION),
        ),
        DataElement::new(
            COMMAND_FIELD,
            VR::US,
            PrimitiveValue::from(CommandField::EchoRq.code()),
        ),
        DataElement::new(MESSAGE_ID, VR::US, PrimitiveValue::from(message_id)),
        DataElement::new(DATA_SET_TYPE, VR::US, PrimitiveValue::from(NO_DATA_SET)),
    ])
}

fn encode(elements: Vec<DataElement<InMemDicomObject>>) -> Vec<u8> {
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::from_element_iter(elements);
    let mut body = Vec::new();
    // Writing primitive values into memory cannot fail.
    if obj.write_dataset_with_ts(&mut body, &ts).is_err() {
        body.clear();
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&GROUP_LENGTH.group().to_le_bytes());
    out.extend_from_slice(&GROUP_LENGTH.element().to_le_bytes());
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_request_reads_back_with_its_uids_and_a_data_set() {
        let rq = Command::read(&store_request(7, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4")).unwrap();
        assert_eq!(rq.field, Some(CommandField::StoreRq));
        assert_eq!(rq.message_id, 7);
        assert_eq!(
            rq.affected_sop_class.as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.2")
        );
        assert_eq!(rq.affected_sop_instance.as_deref(), Some("1.2.3.4"));
        assert!(rq.has_data_set);
    }

    #[test]
    fn a_response_answers_the_message_id_with_its_status_and_group_length() {
        let rq = Command::read(&store_request(9, "1.2.840.10008.5.1.4.1.1.7", "1.2.3.5")).unwrap();
        let bytes = rq.response(
            CommandField::StoreRsp,
            Status::OUT_OF_RESOURCES,
            Some("disk full"),
        );
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 12, "group length counts what follows it");
        let rsp = Command::read(&bytes).unwrap();
        assert_eq!(rsp.field, Some(CommandField::StoreRsp));
        assert_eq!(rsp.responded_to, Some(9));
        assert_eq!(rsp.status, Some(Status::OUT_OF_RESOURCES));
        assert_eq!(rsp.error_comment.as_deref(), Some("disk full"));
        assert!(!rsp.has_data_set);
    }

    #[test]
    fn garbage_and_a_command_without_a_field_are_errors_not_panics() {
        assert!(Command::read(&[1, 2, 3]).is_err());
        assert!(Command::read(&[0xff; 40]).is_err());
        assert!(Command::read(&[]).is_err());
    }
}
