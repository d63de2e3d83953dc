//! What the journal indexes a stored object by, read from its header.
//!
//! Only the top of the data set is read (everything before group 0028, the
//! image pixel module): the identifying attributes all sit in groups 0008,
//! 0010 and 0020, so a 2 GB multi-frame object costs the same few
//! kilobytes as a chest X-ray. That head is walked first (`lengths`), so
//! an element lying about its length is refused before anything is
//! allocated for it; then dicom-object reads what was walked and decodes
//! text in the object's Specific Character Set. A deflated data set is
//! inflated as it is walked.

use super::lengths::{self, Encoding};
use super::uids;
use dicom_core::Tag;
use dicom_object::meta::FileMetaTable;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_BIG_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
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
/// The file meta group is a few hundred bytes.
const META_CAP: usize = 64 << 10;
/// What the head of an object may take in memory: far more than the
/// identifying attributes of any real object, far less than a frame.
const HEAD_CAP: usize = 32 << 20;
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e.to_str().ok()?;
    let s = super::uids::trim(s.trim()).trim().to_string();
    (!s.is_empty()).then_some(s)
}

impl InstanceSummary {
    /// Reads a Part 10 stream that starts at `DICM` (the preamble skipped).
    pub fn read(mut from: impl Read) -> Result<InstanceSummary, SummaryError> {
        let unreadable = SummaryError::Unreadable;
        let mut magic = [0u8; 4];
        if from.read_exact(&mut magic).is_err() || &magic != b"DICM" {
            return Err(unreadable("no DICM code after the preamble".into()));
        }
        let meta = lengths::read_head(
            &mut from,
            Encoding::ExplicitLittle,
            Some(Tag(0x0003, 0x0000)),
            META_CAP,
        )
        .map_err(|e| unreadable(format!("file meta group: {e}")))?;
        let table = FileMetaTable::from_reader(&[&b"DICM"[..], &meta.bytes].concat()[..])
            .map_err(|e| unreadable(e.to_string()))?;
        let transfer_syntax = uids::trim(table.transfer_syntax()).to_string();
        if uids::transfer_syntax_name(&transfer_syntax).is_none() {
            return Err(unreadable(format!(
                "transfer syntax {transfer_syntax} is not one an object is accepted in"
            )));
        }
        let data_set = std::io::Cursor::new(meta.next).chain(from);
        let (encoding, read_as) = match transfer_syntax.as_str() {
            uids::IMPLICIT_VR_LE => (Encoding::ImplicitLittle, IMPLICIT_VR_LITTLE_ENDIAN.erased()),
            BIG_ENDIAN => (Encoding::ExplicitBig, EXPLICIT_VR_BIG_ENDIAN.erased()),
            // Encapsulated syntaxes differ from this one only in the pixel
            // data, which is past the head.
            _ => (Encoding::ExplicitLittle, EXPLICIT_VR_LITTLE_ENDIAN.erased()),
        };
        let head = if transfer_syntax == DEFLATED {
            let mut inflated = flate2::read::DeflateDecoder::new(data_set);
            lengths::read_head(&mut inflated, encoding, Some(STOP_AT), HEAD_CAP)
        } else {
            let mut data_set = data_set;
            lengths::read_head(&mut data_set, encoding, Some(STOP_AT), HEAD_CAP)
        }
        .map_err(unreadable)?;
        let obj = InMemDicomObject::read_dataset_with_ts(&head.bytes[..], &read_as)
            .map_err(|e| unreadable(e.to_string()))?;
        let sop_instance =
            text(&obj, SOP_INSTANCE).ok_or(SummaryError::Missing("SOP instance UID"))?;
        let sop_class = text(&obj, SOP_CLASS).ok_or(SummaryError::Missing("SOP class UID"))?;
        Ok(InstanceSummary {
            transfer_syntax,
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

    fn object(elements: Vec<(Tag, VR, &str)>) -> Vec<u8> {
        object_in(super::super::uids::EXPLICIT_VR_LE, elements)
    }

    fn object_in(transfer_syntax: &str, elements: Vec<(Tag, VR, &str)>) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter(
            elements
                .into_iter()
                .map(|(t, vr, v)| DataElement::new(t, vr, PrimitiveValue::from(v))),
        );
        let mut bytes = super::super::part10::file_header(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3.4.5",
            transfer_syntax,
            "MOD",
        )
        .unwrap();
        let mut data_set = Vec::new();
        let written_as = match transfer_syntax {
            super::super::uids::IMPLICIT_VR_LE => IMPLICIT_VR_LITTLE_ENDIAN.erased(),
            BIG_ENDIAN => EXPLICIT_VR_BIG_ENDIAN.erased(),
            _ => EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        };
        obj.write_dataset_with_ts(&mut data_set, &written_as)
            .unwrap();
        if transfer_syntax == DEFLATED {
            let mut deflate =
                flate2::write::DeflateEncoder::new(&mut bytes, flate2::Compression::default());
            std::io::Write::write_all(&mut deflate, &data_set).unwrap();
            deflate.finish().unwrap();
        } else {
            bytes.extend(data_set);
        }
        bytes
    }

    fn identified(extra: Vec<(Tag, VR, &'static str)>) -> Vec<(Tag, VR, &'static str)> {
        let mut e = vec![
            (SOP_CLASS, VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
            (SOP_INSTANCE, VR::UI, "1.2.3.4.5"),
            (PATIENT_NAME, VR::PN, "Doe^Jane"),
            (STUDY_UID, VR::UI, "1.2.3"),
            (SERIES_UID, VR::UI, "1.2.3.4"),
        ];
        e.extend(extra);
        e
    }

    #[test]
    fn an_object_is_summarised_in_every_transfer_syntax_it_is_accepted_in() {
        for ts in [
            super::super::uids::IMPLICIT_VR_LE,
            super::super::uids::EXPLICIT_VR_LE,
            DEFLATED,
            BIG_ENDIAN,
            "1.2.840.10008.1.2.4.50",
        ] {
            let bytes = object_in(ts, identified(vec![(Tag(0x0028, 0x0010), VR::US, "512")]));
            let s = InstanceSummary::read(&bytes[super::super::part10::PREAMBLE_LEN..])
                .unwrap_or_else(|e| panic!("{ts}: {e}"));
            assert_eq!(s.transfer_syntax, ts);
            assert_eq!(s.sop_instance, "1.2.3.4.5", "{ts}");
            assert_eq!(s.series_uid, "1.2.3.4", "{ts}");
            assert_eq!(s.patient_name.as_deref(), Some("Doe^Jane"), "{ts}");
        }
    }

    #[test]
    fn an_element_of_the_head_lying_about_its_length_is_refused_before_it_is_allocated() {
        // A real header, then (0009,1010) OB declaring more than it holds:
        // 3.5 GB is past the head's cap, 1 MB is under it; neither is
        // allocated.
        let lying = |declared: u32| {
            let mut bytes = object(identified(vec![]));
            bytes.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
            bytes.extend_from_slice(&declared.to_le_bytes());
            bytes.extend_from_slice(b"tiny");
            InstanceSummary::read(&bytes[super::super::part10::PREAMBLE_LEN..])
                .unwrap_err()
                .to_string()
        };
        let e = lying(0xD1C0_0000);
        assert!(
            e.contains("(0009,1010)") && e.contains("past 33554432 bytes"),
            "{e}"
        );
        let e = lying(1 << 20);
        assert!(e.contains("(0009,1010)"), "{e}");
        assert!(e.contains("declares 1048576 bytes where 4 follow"), "{e}");
        // The same lie in the file meta group.
        let mut meta = b"DICM".to_vec();
        meta.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0]);
        meta.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
        let e = InstanceSummary::read(&meta[..]).unwrap_err();
        assert!(e.to_string().contains("file meta group"), "{e}");
        // And a transfer syntax no object is accepted in.
        let odd = object_in("1.2.3.4.5.6", identified(vec![]));
        let e = InstanceSummary::read(&odd[super::super::part10::PREAMBLE_LEN..]).unwrap_err();
        assert!(e.to_string().contains("1.2.3.4.5.6"), "{e}");
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
