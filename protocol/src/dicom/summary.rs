//! What the journal indexes a stored object by, read from its header.
//!
//! Only the top of the data set is read (everything before group 0028, the
//! image pixel module): the identifying attributes all sit in groups 0008,
//! 0010 and 0020, so a 2 GB multi-frame object costs the same few
//! kilobytes as a chest X-ray. Text is decoded in the object's Specific
//! Character Set by dicom-object.

use dicom_core::Tag;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use std::io::Read;

/// The identity and the facts a person looks for, of one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceSummary {
    pub sop_class: String,
    pub sop_instance: String,
    pub transfer_syntax: String,
    pub study_uid: String,
    pub series_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub accession_number: Option<String>,
    pub modality: Option<String>,
    pub study_date: Option<String>,
    pub series_number: Option<String>,
    pub instance_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("not a DICOM object: {0}")]
    Unreadable(String),
    #[error("the data set has no {0}")]
    Missing(&'static str),
    #[error("the data set's {what} `{found}` is not the request's `{expected}`")]
    Mismatch {
        what: &'static str,
        found: String,
        expected: String,
    },
}

const SOP_INSTANCE: Tag = Tag(0x0008, 0x0018);
const SOP_CLASS: Tag = Tag(0x0008, 0x0016);
const STUDY_DATE: Tag = Tag(0x0008, 0x0020);
const ACCESSION: Tag = Tag(0x0008, 0x0050);
const MODALITY: Tag = Tag(0x0008, 0x0060);
const PATIENT_NAME: Tag = Tag(0x0010, 0x0010);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const STUDY_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_UID: Tag = Tag(0x0020, 0x000E);
const SERIES_NUMBER: Tag = Tag(0x0020, 0x0011);
const INSTANCE_NUMBER: Tag = Tag(0x0020, 0x0013);
/// Reading stops at the first element of this group or later.
const STOP_AT: Tag = Tag(0x0028, 0x0000);

fn text(obj: &FileDicomObject<InMemDicomObject>, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let s = super::uids::trim(s.trim()).trim().to_string();
    (!s.is_empty()).then_some(s)
}

impl InstanceSummary {
    /// Reads a Part 10 stream that starts at `DICM` (the preamble skipped).
    pub fn read(from: impl Read) -> Result<InstanceSummary, SummaryError> {
        let obj = OpenFileOptions::new()
            .read_until(STOP_AT)
            .from_reader(from)
            .map_err(|e| SummaryError::Unreadable(e.to_string()))?;
        let meta = obj.meta();
        let sop_instance =
            text(&obj, SOP_INSTANCE).ok_or(SummaryError::Missing("SOP instance UID"))?;
        let sop_class = text(&obj, SOP_CLASS).ok_or(SummaryError::Missing("SOP class UID"))?;
        Ok(InstanceSummary {
            transfer_syntax: super::uids::trim(meta.transfer_syntax()).to_string(),
            study_uid: text(&obj, STUDY_UID).ok_or(SummaryError::Missing("study instance UID"))?,
            series_uid: text(&obj, SERIES_UID)
                .ok_or(SummaryError::Missing("series instance UID"))?,
            patient_id: text(&obj, PATIENT_ID),
            patient_name: text(&obj, PATIENT_NAME),
            accession_number: text(&obj, ACCESSION),
            modality: text(&obj, MODALITY),
            study_date: text(&obj, STUDY_DATE),
            series_number: text(&obj, SERIES_NUMBER),
            instance_number: text(&obj, INSTANCE_NUMBER),
            sop_instance,
            sop_class,
        })
    }

    /// Checks the data set is the object the C-STORE request announced.
    pub fn matches_request(&self, sop_class: &str, sop_instance: &str) -> Result<(), SummaryError> {
        if self.sop_instance != sop_instance {
            return Err(SummaryError::Mismatch {
                what: "SOP instance UID",
                found: self.sop_instance.clone(),
                expected: sop_instance.into(),
            });
        }
        if self.sop_class != sop_class {
            return Err(SummaryError::Mismatch {
                what: "SOP class UID",
                found: self.sop_class.clone(),
                expected: sop_class.into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

    fn object(elements: Vec<(Tag, VR, &str)>) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter(
            elements
                .into_iter()
                .map(|(t, vr, v)| DataElement::new(t, vr, PrimitiveValue::from(v))),
        );
        let mut bytes = super::super::part10::file_header(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3.4.5",
            super::super::uids::EXPLICIT_VR_LE,
            "MOD",
        )
        .unwrap();
        obj.write_dataset_with_ts(&mut bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        bytes
    }

    #[test]
    fn the_identifying_attributes_are_read_from_a_stored_header() {
        let bytes = object(vec![
            (SOP_CLASS, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
            (SOP_INSTANCE, VR::UI, "1.2.3.4.5"),
            (ACCESSION, VR::SH, "ACC42"),
            (MODALITY, VR::CS, "OT"),
            (PATIENT_NAME, VR::PN, "Doe^Jane"),
            (PATIENT_ID, VR::LO, "P-1"),
            (STUDY_UID, VR::UI, "1.2.3"),
            (SERIES_UID, VR::UI, "1.2.3.4"),
            (Tag(0x0028, 0x0010), VR::US, "512"),
        ]);
        let s = InstanceSummary::read(&bytes[super::super::part10::PREAMBLE_LEN..]).unwrap();
        assert_eq!(s.sop_instance, "1.2.3.4.5");
        assert_eq!(s.study_uid, "1.2.3");
        assert_eq!(s.series_uid, "1.2.3.4");
        assert_eq!(s.patient_name.as_deref(), Some("Doe^Jane"));
        assert_eq!(s.accession_number.as_deref(), Some("ACC42"));
        assert_eq!(s.transfer_syntax, super::super::uids::EXPLICIT_VR_LE);
        assert!(s
            .matches_request("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5")
            .is_ok());
        assert!(s
            .matches_request("1.2.840.10008.5.1.4.1.1.7", "9.9")
            .is_err());
    }

    #[test]
    fn an_object_without_a_study_uid_or_garbage_is_an_error() {
        let bytes = object(vec![
            (SOP_CLASS, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
            (SOP_INSTANCE, VR::UI, "1.2.3.4.5"),
        ]);
        assert_eq!(
            InstanceSummary::read(&bytes[128..]).unwrap_err(),
            SummaryError::Missing("study instance UID")
        );
        assert!(InstanceSummary::read(&b"DICMgarbage"[..]).is_err());
        assert!(InstanceSummary::read(&[][..]).is_err());
    }
}
