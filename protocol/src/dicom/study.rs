//! The FHIR R4 ImagingStudy the gateway announces once a study has been
//! idle: a pure function of the journal's records of its stored objects.
//!
//! The study is built from what the records hold, nothing else (no clock,
//! no file): the same objects always give the same resource, whatever order
//! they arrived in. Series are sorted by series number then UID, instances
//! by instance number then UID. A SOP instance received twice with other
//! content (both copies kept) is listed once: it is one instance of the
//! study.
//!
//! Identity follows DICOM's own mapping (PS3.20 / the R4 ImagingStudy
//! notes): the study instance UID as `urn:oid:` under system
//! `urn:dicom:uid`, the accession number as an `ACSN` identifier, SOP
//! classes as `urn:oid:` codes of `urn:ietf:rfc:3986`, modalities from the
//! DICOM code system. The patient is referenced by identifier only (the
//! modality's patient id under the source's local system), so nothing about
//! the patient is overwritten from a DICOM header.

use super::InstanceRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The message type of an announcement, for routes.
pub const MESSAGE_TYPE: &str = "ImagingStudy";
pub const CONTENT_TYPE: &str = "application/fhir+json";

pub const UID_SYSTEM: &str = "urn:dicom:uid";
pub const DCM_SYSTEM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const RFC3986: &str = "urn:ietf:rfc:3986";
pub const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeableConcept {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    tag = "resourceType",
    rename = "ImagingStudy"
)]
pub struct ImagingStudy {
    pub identifier: Vec<Identifier>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modality: Vec<Coding>,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoint: Vec<Reference>,
    pub number_of_series: u32,
    pub number_of_instances: u32,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    pub modality: Coding,
    pub number_of_instances: u32,
    pub instance: Vec<Instance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub uid: String,
    pub sop_class: Coding,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

/// What the study is announced with beyond its objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyContext {
    /// The identifier system of the modality's patient ids.
    pub patient_system: String,
    /// The FHIR reference of the Endpoint the study can be fetched from
    /// (e.g. `Endpoint/pacs-wado`), if one is configured.
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StudyError {
    #[error("a study needs at least one stored object")]
    Empty,
    #[error("the objects belong to more than one study ({0} and {1})")]
    MixedStudies(String, String),
}

/// A DICOM IS (integer string) as FHIR's `unsignedInt`, if it is one.
fn unsigned(value: Option<&str>) -> Option<u32> {
    value.and_then(|v| v.trim().parse::<u32>().ok())
}

/// `YYYYMMDD` as FHIR's `date` form of `dateTime`.
fn date(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let ok = v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| format!("{}-{}-{}", &v[..4], &v[4..6], &v[6..]))
}

fn modality(code: &str) -> Coding {
    Coding {
        system: Some(DCM_SYSTEM.to_string()),
        code: Some(code.to_string()),
    }
}

/// A modality code as DICOM writes it (CS: upper case, at most 16
/// characters); a missing or odd one is `OT` (other).
fn modality_code(value: Option<&str>) -> String {
    let v = value.map(str::trim).unwrap_or_default();
    let ok = !v.is_empty()
        && v.len() <= 16
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ');
    if ok {
        v.to_string()
    } else {
        "OT".to_string()
    }
}

/// The ImagingStudy of the objects in `records`, all of one study.
pub fn imaging_study(
    records: &[InstanceRecord],
    cx: &StudyContext,
) -> Result<ImagingStudy, StudyError> {
    let first = records.first().ok_or(StudyError::Empty)?;
    if let Some(other) = records.iter().find(|r| r.study_uid != first.study_uid) {
        return Err(StudyError::MixedStudies(
            first.study_uid.clone(),
            other.study_uid.clone(),
        ));
    }
    // series uid → sop instance uid → record (the first copy kept).
    let mut by_series: BTreeMap<&str, BTreeMap<&str, &InstanceRecord>> = BTreeMap::new();
    for r in records {
        by_series
            .entry(r.series_uid.as_str())
            .or_default()
            .entry(r.sop_instance.as_str())
            .or_insert(r);
    }
    let mut series: Vec<Series> = by_series
        .into_values()
        .filter_map(|instances| {
            let mut list: Vec<&InstanceRecord> = instances.into_values().collect();
            list.sort_by(|a, b| {
                (unsigned(a.instance_number.as_deref()), &a.sop_instance)
                    .cmp(&(unsigned(b.instance_number.as_deref()), &b.sop_instance))
            });
            let head = *list.first()?;
            Some(Series {
                uid: head.series_uid.clone(),
                number: unsigned(head.series_number.as_deref()),
                modality: modality(&modality_code(head.modality.as_deref())),
                number_of_instances: list.len() as u32,
                instance: list
                    .iter()
                    .map(|r| Instance {
                        uid: r.sop_instance.clone(),
                        sop_class: Coding {
                            system: Some(RFC3986.to_string()),
                            code: Some(format!("urn:oid:{}", r.sop_class)),
                        },
                        number: unsigned(r.instance_number.as_deref()),
                    })
                    .collect(),
            })
        })
        .collect();
    series.sort_by(|a, b| (a.number, &a.uid).cmp(&(b.number, &b.uid)));
    let mut modalities: Vec<Coding> = Vec::new();
    for s in &series {
        if !modalities.contains(&s.modality) {
            modalities.push(s.modality.clone());
        }
    }
    let mut identifier = vec![Identifier {
        type_: None,
        system: Some(UID_SYSTEM.to_string()),
        value: Some(format!("urn:oid:{}", first.study_uid)),
    }];
    if let Some(acc) = records.iter().find_map(|r| {
        r.accession_number
            .as_deref()
            .filter(|a| !a.trim().is_empty())
    }) {
        identifier.push(Identifier {
            type_: Some(CodeableConcept {
                coding: vec![Coding {
                    system: Some(V2_0203.to_string()),
                    code: Some("ACSN".to_string()),
                }],
            }),
            system: None,
            value: Some(acc.trim().to_string()),
        });
    }
    let subject = match records
        .iter()
        .find_map(|r| r.patient_id.as_deref().filter(|p| !p.trim().is_empty()))
    {
        Some(pid) => Reference {
            identifier: Some(Identifier {
                type_: None,
                system: Some(cx.patient_system.clone()),
                value: Some(pid.trim().to_string()),
            }),
            ..Default::default()
        },
        // subject is 1..1: a study without a patient id says so.
        None => Reference {
            display: Some("patient not identified by the modality".to_string()),
            ..Default::default()
        },
    };
    let number_of_instances = series.iter().map(|s| s.number_of_instances).sum();
    Ok(ImagingStudy {
        identifier,
        status: "available".to_string(),
        modality: modalities,
        subject,
        started: records.iter().find_map(|r| date(r.study_date.as_deref())),
        endpoint: cx
            .endpoint
            .iter()
            .map(|e| Reference {
                reference: Some(e.clone()),
                ..Default::default()
            })
            .collect(),
        number_of_series: series.len() as u32,
        number_of_instances,
        series,
    })
}

impl ImagingStudy {
    pub fn to_json(&self) -> Vec<u8> {
        // Structs of strings and numbers always serialise.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(series: &str, sop: &str, number: &str, modality: &str) -> InstanceRecord {
        InstanceRecord {
            file: format!("/d/{sop}.dcm"),
            size: 10,
            sha256: "00".into(),
            sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance: sop.into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            study_uid: "1.2.3".into(),
            series_uid: series.into(),
            patient_id: Some("P-7".into()),
            patient_name: Some("DOE^JANE".into()),
            accession_number: Some("ACC9".into()),
            modality: Some(modality.into()),
            study_date: Some("20260131".into()),
            series_number: Some(if series == "1.2.3.1" { "1" } else { "2" }.into()),
            instance_number: Some(number.into()),
        }
    }

    fn cx() -> StudyContext {
        StudyContext {
            patient_system: "urn:ecko-edge:modalities:patient".into(),
            endpoint: Some("Endpoint/pacs".into()),
        }
    }

    #[test]
    fn a_study_lists_its_series_and_instances_in_order_whatever_the_arrival_order() {
        let records = vec![
            record("1.2.3.2", "1.2.3.2.1", "1", "SR"),
            record("1.2.3.1", "1.2.3.1.10", "10", "CT"),
            record("1.2.3.1", "1.2.3.1.2", "2", "CT"),
        ];
        let a = imaging_study(&records, &cx()).unwrap();
        let mut reversed = records.clone();
        reversed.reverse();
        assert_eq!(a, imaging_study(&reversed, &cx()).unwrap());
        assert_eq!(a.number_of_series, 2);
        assert_eq!(a.number_of_instances, 3);
        assert_eq!(a.series[0].uid, "1.2.3.1");
        let uids: Vec<_> = a.series[0]
            .instance
            .iter()
            .map(|i| i.uid.as_str())
            .collect();
        assert_eq!(uids, ["1.2.3.1.2", "1.2.3.1.10"], "by number, not as text");
        let modalities: Vec<_> = a
            .modality
            .iter()
            .filter_map(|c| c.code.as_deref())
            .collect();
        assert_eq!(modalities, ["CT", "SR"]);
        assert_eq!(a.started.as_deref(), Some("2026-01-31"));
        assert_eq!(a.identifier[0].value.as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(a.identifier[1].value.as_deref(), Some("ACC9"));
        let json: serde_json::Value = serde_json::from_slice(&a.to_json()).unwrap();
        assert_eq!(json["resourceType"], "ImagingStudy");
        assert_eq!(json["endpoint"][0]["reference"], "Endpoint/pacs");
        assert_eq!(
            json["subject"]["identifier"]["system"],
            "urn:ecko-edge:modalities:patient"
        );
        assert_eq!(
            json["series"][0]["instance"][0]["sopClass"]["code"],
            "urn:oid:1.2.840.10008.5.1.4.1.1.2"
        );
        assert!(json.to_string().find("DOE").is_none(), "no patient name");
    }

    #[test]
    fn an_instance_kept_twice_is_listed_once_and_a_missing_modality_is_other() {
        let mut odd = record("1.2.3.1", "1.2.3.1.1", "x", "");
        odd.modality = None;
        let records = vec![odd.clone(), odd];
        let a = imaging_study(&records, &cx()).unwrap();
        assert_eq!(a.number_of_instances, 1);
        assert_eq!(a.series[0].modality.code.as_deref(), Some("OT"));
        assert_eq!(a.series[0].instance[0].number, None);
    }

    #[test]
    fn no_objects_or_objects_of_two_studies_are_errors() {
        assert_eq!(imaging_study(&[], &cx()), Err(StudyError::Empty));
        let mut other = record("1.2.3.1", "9.1", "1", "CT");
        other.study_uid = "9".into();
        let records = vec![record("1.2.3.1", "1.1", "1", "CT"), other];
        assert!(matches!(
            imaging_study(&records, &cx()),
            Err(StudyError::MixedStudies(..))
        ));
    }
}
