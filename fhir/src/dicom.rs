//! `dicom-fhir`: what a DICOM store SCP journals for the FHIR upstream, as
//! a transaction Bundle.
//!
//! - `ImagingStudy` messages already hold the resource (built by
//!   `ecko_protocol::dicom::study` when the study went idle): it becomes one
//!   conditional `PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<uid>`,
//!   so a study announced again with more objects updates the same
//!   resource.
//!
//! The result is a function of the payload alone.

use crate::r4::{query_value, resource_id};
use crate::TransformError;
use ecko_message::StoredMessage;
use ecko_protocol::dicom::study::{self, ImagingStudy};
use serde_json::{json, Value};

pub const NAME: &str = "dicom-fhir";

/// The transaction Bundle of a DICOM source's message.
pub fn to_bundle(message: &StoredMessage) -> Result<Value, TransformError> {
    match message.message_type.as_str() {
        study::MESSAGE_TYPE => imaging_study(&message.payload),
        other => Err(TransformError::Unreadable(format!(
            "`{NAME}` maps ImagingStudy messages, not `{other}`"
        ))),
    }
}

fn imaging_study(payload: &[u8]) -> Result<Value, TransformError> {
    // Read into the model first: only a well-formed ImagingStudy is sent.
    let resource: ImagingStudy = serde_json::from_slice(payload)
        .map_err(|e| TransformError::Unreadable(format!("not an ImagingStudy: {e}")))?;
    let key = resource
        .identifier
        .iter()
        .find(|i| i.system.as_deref() == Some(study::UID_SYSTEM))
        .and_then(|i| i.value.clone())
        .ok_or_else(|| {
            TransformError::Empty("the ImagingStudy has no study instance UID".into())
        })?;
    let resource =
        serde_json::to_value(&resource).map_err(|e| TransformError::Unreadable(e.to_string()))?;
    Ok(transaction(vec![conditional_put(
        "ImagingStudy",
        study::UID_SYSTEM,
        &key,
        resource,
    )]))
}

fn conditional_put(ty: &str, system: &str, value: &str, resource: Value) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:{}", resource_id(ty, system, value)),
        "resource": resource,
        "request": {
            "method": "PUT",
            "url": format!("{ty}?identifier={}|{}", query_value(system), query_value(value)),
        },
    })
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecko_message::Envelope;
    use ecko_protocol::dicom::study::{imaging_study as build, StudyContext};
    use ecko_protocol::dicom::InstanceRecord;

    fn stored(message_type: &str, payload: Vec<u8>) -> StoredMessage {
        StoredMessage {
            id: 1,
            received_at: 0,
            envelope: Envelope {
                source: "modalities".into(),
                dedup_key: None,
                message_type: message_type.into(),
                content_type: "application/fhir+json".into(),
                control_id: None,
                patient_id: None,
                payload,
                ack: None,
                hints: Default::default(),
            },
        }
    }

    fn record(sop: &str) -> InstanceRecord {
        InstanceRecord {
            file: "f".into(),
            size: 1,
            sha256: "00".into(),
            sop_class: "1.2.840.10008.5.1.4.1.1.4".into(),
            sop_instance: sop.into(),
            transfer_syntax: "1.2.840.10008.1.2".into(),
            study_uid: "1.2.9".into(),
            series_uid: "1.2.9.1".into(),
            patient_id: Some("P1".into()),
            patient_name: None,
            accession_number: None,
            modality: Some("MR".into()),
            study_date: None,
            series_number: Some("3".into()),
            instance_number: Some("1".into()),
        }
    }

    #[test]
    fn an_imaging_study_is_one_conditional_put_on_its_study_uid() {
        let s = build(&[record("1.2.9.1.1")], &StudyContext::default()).unwrap();
        let bundle = to_bundle(&stored("ImagingStudy", s.to_json())).unwrap();
        assert!(crate::shape::is_transaction(&bundle));
        let e = &bundle["entry"][0];
        assert_eq!(
            e["request"]["url"],
            "ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.2.9"
        );
        assert_eq!(e["resource"]["resourceType"], "ImagingStudy");
        assert_eq!(e["resource"]["series"][0]["number"], 3);
    }

    #[test]
    fn a_payload_that_is_not_an_imaging_study_is_an_error_not_a_panic() {
        assert!(to_bundle(&stored("ImagingStudy", b"{}".to_vec())).is_err());
        assert!(to_bundle(&stored("ImagingStudy", b"\xff".to_vec())).is_err());
        assert!(to_bundle(&stored("DICOM", b"{}".to_vec())).is_err());
    }
}
