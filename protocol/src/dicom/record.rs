//! The journal's record of one stored object: what the message row holds
//! in place of the object itself (`application/x-ecko-dicom-instance+json`).
//!
//! Objects are files under the data directory, written before the record
//! is committed; the record names the file, its size and SHA-256 (checked
//! again before it is forwarded), and the attributes a person searches by.
//! Routes filter on the message type `DICOM`.
//!
//! The record is a function of the object's bytes alone (no AE title, no
//! time of arrival), so the same object sent twice is the same record and
//! the journal's duplicate check keeps it once; who sent it is in the log.

use super::InstanceSummary;
use serde::{Deserialize, Serialize};

pub const CONTENT_TYPE: &str = "application/x-ecko-dicom-instance+json";
pub const MESSAGE_TYPE: &str = "DICOM";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub sop_class: String,
    pub sop_instance: String,
    pub transfer_syntax: String,
    pub study_uid: String,
    pub series_uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored DICOM object's record: {0}")]
pub struct RecordError(String);

impl InstanceRecord {
    pub fn new(summary: InstanceSummary, file: String, size: u64, sha256: String) -> Self {
        InstanceRecord {
            file,
            size,
            sha256,
            sop_class: summary.sop_class,
            sop_instance: summary.sop_instance,
            transfer_syntax: summary.transfer_syntax,
            study_uid: summary.study_uid,
            series_uid: summary.series_uid,
            patient_id: summary.patient_id,
            patient_name: summary.patient_name,
            accession_number: summary.accession_number,
            modality: summary.modality,
            study_date: summary.study_date,
            series_number: summary.series_number,
            instance_number: summary.instance_number,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|e| RecordError(e.to_string()))
    }
}
