//! `dicom-fhir`: what a DICOM store SCP journals for the FHIR upstream, as
//! a transaction Bundle.
//!
//! - `ImagingStudy` messages already hold the resource (built by
//!   `ecko_protocol::dicom::study` when the study went idle): it becomes one
//!   conditional `PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<uid>`,
//!   so a study announced again with more objects updates the same
//!   resource.
//! - `MPPS` messages hold a performed procedure step as it stands (the
//!   N-CREATE's attributes with every N-SET's laid over them): it becomes a
//!   Procedure, a conditional `PUT` on the step's SOP instance UID, with
//!   status `in-progress`, `completed` or `not-done` (DISCONTINUED), the
//!   procedure code (or the step's description), the subject by identifier,
//!   `performedPeriod` from the step's start and end (read in the zone the
//!   message arrived in) and `basedOn` the ServiceRequest of the accession
//!   number.
//!
//! The result is a function of the payload and the context's zone.

use crate::r4::{date_time, local_system, query_value, resource_id};
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;
use ecko_protocol::dicom::mpps::{self, Step};
use ecko_protocol::dicom::study::{self, ImagingStudy};
use serde_json::{json, Value};

pub const NAME: &str = "dicom-fhir";

/// The transaction Bundle of a DICOM source's message.
pub fn to_bundle(message: &StoredMessage, cx: &TransformContext) -> Result<Value, TransformError> {
    match message.message_type.as_str() {
        study::MESSAGE_TYPE => imaging_study(&message.payload),
        mpps::MESSAGE_TYPE => procedure(message, cx),
        other => Err(TransformError::Unreadable(format!(
            "`{NAME}` maps ImagingStudy and MPPS messages, not `{other}`"
        ))),
    }
}

/// A DICOM coding scheme designator as a FHIR code system.
fn code_system(scheme: Option<&str>, source: &str) -> String {
    let scheme = scheme.unwrap_or_default();
    crate::coding_systems::uri(scheme).unwrap_or_else(|| {
        format!(
            "{}:{}",
            local_system(source, "procedure-code"),
            crate::r4::urn_part(scheme)
        )
    })
}

fn procedure(message: &StoredMessage, cx: &TransformContext) -> Result<Value, TransformError> {
    let step = Step::from_json(&message.payload)
        .map_err(|e| TransformError::Unreadable(format!("not an MPPS step: {e}")))?;
    let uid = step
        .sop_instance
        .clone()
        .ok_or_else(|| TransformError::Empty("the step has no SOP instance UID".into()))?;
    let status = match step.status.as_deref() {
        Some(mpps::COMPLETED) => "completed",
        Some(mpps::DISCONTINUED) => "not-done",
        _ => "in-progress",
    };
    let key = format!("urn:oid:{uid}");
    let mut p = json!({
        "resourceType": "Procedure",
        "identifier": [{"system": study::UID_SYSTEM, "value": key}],
        "status": status,
    });
    let source = &message.source;
    p["subject"] = match step.patient_id.as_deref() {
        Some(pid) => json!({"type": "Patient", "identifier": {
            "system": local_system(source, "patient"), "value": pid}}),
        None => json!({"display": "patient not identified by the modality"}),
    };
    match (&step.procedure_code, &step.description) {
        (Some(c), text) => {
            let mut coding =
                json!({"system": code_system(c.scheme.as_deref(), source), "code": c.code});
            if let Some(m) = &c.meaning {
                coding["display"] = json!(m);
            }
            p["code"] = json!({"coding": [coding]});
            if let Some(t) = text {
                p["code"]["text"] = json!(t);
            }
        }
        (None, Some(t)) => p["code"] = json!({"text": t}),
        (None, None) => {}
    }
    let tz = cx.time_zone_of(message);
    let mut period = serde_json::Map::new();
    for (name, value) in [("start", &step.start), ("end", &step.end)] {
        if let Some(v) = value.as_deref().and_then(|v| date_time(v, &tz)) {
            period.insert(name.to_string(), json!(v));
        }
    }
    if !period.is_empty() {
        p["performedPeriod"] = Value::Object(period);
    }
    if let Some(acc) = &step.accession_number {
        p["basedOn"] = json!([{"type": "ServiceRequest", "identifier": {
            "type": {"coding": [{"system": study::V2_0203, "code": "ACSN"}]},
            "value": acc}}]);
    }
    Ok(transaction(vec![conditional_put(
        "Procedure",
        study::UID_SYSTEM,
        &key,
        p,
    )]))
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
        let bundle = to_bundle(
            &stored("ImagingStudy", s.to_json()),
            &TransformContext::default(),
        )
        .unwrap();
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
        let cx = TransformContext::default();
        assert!(to_bundle(&stored("ImagingStudy", b"{}".to_vec()), &cx).is_err());
        assert!(to_bundle(&stored("ImagingStudy", b"\xff".to_vec()), &cx).is_err());
        assert!(
            to_bundle(&stored("MPPS", b"{}".to_vec()), &cx).is_err(),
            "no instance UID"
        );
        assert!(to_bundle(&stored("DICOM", b"{}".to_vec()), &cx).is_err());
    }

    #[test]
    fn a_step_is_a_procedure_with_its_status_period_code_and_order() {
        let payload = br#"{"sop_instance":"1.2.5","status":"DISCONTINUED","start":"20260131101500","end":"20260131",
            "procedure_code":{"code":"CTHEAD","scheme":"99LOCAL","meaning":"CT head"},"patient_id":"P-42","accession_number":"ACC-1"}"#;
        let mut m = stored("MPPS", payload.to_vec());
        m.envelope.hints.time_zone = Some("Europe/Berlin".into());
        let bundle = to_bundle(&m, &TransformContext::default()).unwrap();
        let e = &bundle["entry"][0];
        assert_eq!(
            e["request"]["url"],
            "Procedure?identifier=urn:dicom:uid|urn:oid:1.2.5"
        );
        let p = &e["resource"];
        assert_eq!(p["status"], "not-done");
        assert_eq!(p["performedPeriod"]["start"], "2026-01-31T10:15:00+01:00");
        assert_eq!(p["performedPeriod"]["end"], "2026-01-31");
        assert_eq!(p["code"]["coding"][0]["code"], "CTHEAD");
        assert_eq!(
            p["code"]["coding"][0]["system"],
            "urn:ecko-edge:modalities:procedure-code:99LOCAL"
        );
        assert_eq!(p["basedOn"][0]["identifier"]["value"], "ACC-1");
        assert_eq!(p["subject"]["identifier"]["value"], "P-42");
        let in_progress = br#"{"sop_instance":"1.2.5","status":"IN PROGRESS"}"#;
        let bundle = to_bundle(
            &stored("MPPS", in_progress.to_vec()),
            &TransformContext::default(),
        )
        .unwrap();
        assert_eq!(bundle["entry"][0]["resource"]["status"], "in-progress");
        assert!(bundle["entry"][0]["resource"]
            .get("performedPeriod")
            .is_none());
    }
}
