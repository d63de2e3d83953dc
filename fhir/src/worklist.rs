//! Orders → Modality Worklist entries: what a `worklist` destination keeps
//! of each order routed to it, as DICOM scheduled procedure steps.
//!
//! Two shapes of order are read, whatever route brought them:
//!
//! - HL7 v2 ORM^O01, OMI^O23 and OML^O21 ([`crate::hl7v2::worklist`]): IHE
//!   Scheduled Workflow's "procedure scheduled" fields (IPC, ZDS, OBR-18 to
//!   OBR-20, OBR-24) where the order has them, the common order fields
//!   otherwise.
//! - A FHIR R4 Bundle or ServiceRequest (from the HL7 → FHIR transform, or
//!   sent as FHIR): one step per ServiceRequest, its patient from the
//!   Bundle's Patient it names.
//!
//! Each entry has a key, the same for every message about the same order
//! (the placer order number, else the filler number, else the accession,
//! then the step id), so a change (`XO`) or a cancellation (`CA`) finds what
//! it changes. An order the map cannot key, or a message holding no order,
//! is an error: the message goes dead with the reason and is never dropped
//! quietly. A step the order gives no modality or station gets the
//! worklist's own (`modality`, `station_ae`); a study without an instance
//! UID gets one derived from its key, so asking twice gives the same study.

use crate::TransformError;
use ecko_message::StoredMessage;
use ecko_protocol::dicom::worklist::{study_uid_for, Code, ScheduledStep};
use jiff::tz::TimeZone;
use serde_json::Value;

/// What a worklist fills in where an order is silent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorklistDefaults {
    /// The worklist's name, part of every generated study UID.
    pub worklist: String,
    pub modality: String,
    pub station_ae: String,
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Offered to modalities.
    Scheduled,
    /// Being performed: still offered (a modality that restarted asks
    /// again), with status STARTED.
    Started,
    /// Cancelled, discontinued or held: no longer offered.
    Cancelled,
    Completed,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Scheduled => "scheduled",
            StepState::Started => "started",
            StepState::Cancelled => "cancelled",
            StepState::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<StepState> {
        Some(match s {
            "scheduled" => StepState::Scheduled,
            "started" => StepState::Started,
            "cancelled" => StepState::Cancelled,
            "completed" => StepState::Completed,
            _ => return None,
        })
    }

    /// The Scheduled Procedure Step Status a modality is shown.
    pub fn dicom_status(self) -> &'static str {
        match self {
            StepState::Started => "STARTED",
            _ => "SCHEDULED",
        }
    }

    /// Whether a modality is offered the step.
    pub fn offered(self) -> bool {
        matches!(self, StepState::Scheduled | StepState::Started)
    }
}

/// One entry of the worklist as an order message sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorklistChange {
    pub key: String,
    pub state: StepState,
    pub step: ScheduledStep,
}

impl WorklistChange {
    /// The scheduled start as `YYYYMMDDHHMMSS` (empty when unknown), the
    /// order the store keeps steps in.
    pub fn start(&self) -> String {
        if self.step.start_date.is_empty() {
            return String::new();
        }
        format!("{}{:0<6}", self.step.start_date, self.step.start_time)
    }

    /// When the entry may be forgotten (ms since the Unix epoch): `keep_for`
    /// after its start in `tz`, or after `now` when it has no start, its
    /// start has passed, or it is no longer offered.
    pub fn expires_at(
        &self,
        keep_for: std::time::Duration,
        tz: &TimeZone,
        now: jiff::Timestamp,
    ) -> i64 {
        let keep = i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX / 2);
        let start = self.start();
        let start_ms = (self.state.offered() && start.len() == 14)
            .then(|| jiff::civil::DateTime::strptime("%Y%m%d%H%M%S", &start).ok())
            .flatten()
            .and_then(|dt| dt.to_zoned(tz.clone()).ok())
            .map(|z| z.timestamp().as_millisecond());
        let now = now.as_millisecond();
        start_ms.unwrap_or(now).max(now).saturating_add(keep)
    }
}

/// The worklist entries `message` sets; `payload` is what the route's
/// transform made of it when that is a FHIR Bundle.
pub fn changes(
    message: &StoredMessage,
    payload: Option<&Value>,
    defaults: &WorklistDefaults,
    tz: &TimeZone,
) -> Result<Vec<WorklistChange>, TransformError> {
    if let Some(v) = payload {
        return from_fhir(v, defaults, tz);
    }
    let ct = message.content_type.to_ascii_lowercase();
    if ct.contains("json") {
        let v: Value = serde_json::from_slice(&message.payload)
            .map_err(|e| TransformError::Unreadable(format!("not JSON: {e}")))?;
        return from_fhir(&v, defaults, tz);
    }
    crate::hl7v2::worklist::changes(message, defaults, tz)
}

/// The entries of a FHIR Bundle's ServiceRequests, or of one
/// ServiceRequest.
pub fn from_fhir(
    v: &Value,
    defaults: &WorklistDefaults,
    tz: &TimeZone,
) -> Result<Vec<WorklistChange>, TransformError> {
    let resources: Vec<&Value> = match v.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => v
            .get("entry")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(|e| e.get("resource")).collect())
            .unwrap_or_default(),
        Some("ServiceRequest") => vec![v],
        Some(other) => {
            return Err(TransformError::Unreadable(format!(
                "a worklist takes orders (ServiceRequest or a Bundle of them), not {other}"
            )))
        }
        None => {
            return Err(TransformError::Unreadable(
                "not a FHIR resource (no resourceType)".into(),
            ))
        }
    };
    let entries = v.get("entry").and_then(Value::as_array);
    let mut out = Vec::new();
    for (n, sr) in resources
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("ServiceRequest"))
        .enumerate()
    {
        out.push(
            service_request(sr, entries, defaults, tz).map_err(|e| {
                TransformError::Unreadable(format!("ServiceRequest {}: {e}", n + 1))
            })?,
        );
    }
    if out.is_empty() {
        return Err(TransformError::Empty(
            "no ServiceRequest to put on the worklist".into(),
        ));
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = match p.parse::<usize>() {
            Ok(i) => v.get(i)?,
            Err(_) => v.get(p)?,
        };
    }
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The identifier of `sr` whose type is `code` (v2-0203 `PLAC`, `FILL`,
/// `ACSN`), or whose system ends in `:kind` as the HL7 → FHIR map writes
/// them.
fn identifier_of<'a>(sr: &'a Value, code: &str, kind: &str) -> Option<&'a str> {
    sr.get("identifier")?.as_array()?.iter().find_map(|i| {
        let typed = i
            .pointer("/type/coding")
            .and_then(Value::as_array)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("code").and_then(Value::as_str) == Some(code))
            });
        let by_system = i
            .get("system")
            .and_then(Value::as_str)
            .is_some_and(|s| s.ends_with(&format!(":{kind}")));
        (typed || by_system)
            .then(|| str_at(i, &["value"]))
            .flatten()
    })
}

fn service_request(
    sr: &Value,
    entries: Option<&Vec<Value>>,
    defaults: &WorklistDefaults,
    tz: &TimeZone,
) -> Result<WorklistChange, String> {
    let placer = identifier_of(sr, "PLAC", "placer");
    let filler = identifier_of(sr, "FILL", "filler");
    let accession = identifier_of(sr, "ACSN", "accession");
    let key = placer
        .or(filler)
        .or(accession)
        .or_else(|| str_at(sr, &["requisition", "value"]))
        .or_else(|| str_at(sr, &["identifier", "0", "value"]))
        .ok_or("no identifier (placer, filler or accession number) to keep it by")?;
    let state = match str_at(sr, &["status"]).unwrap_or("active") {
        "active" | "draft" => StepState::Scheduled,
        "completed" => StepState::Completed,
        _ => StepState::Cancelled,
    };
    let accession = accession.or(filler).unwrap_or(key).to_string();
    let coding = sr.pointer("/code/coding/0");
    let code = coding.and_then(|c| {
        Some(Code {
            value: str_at(c, &["code"])?.to_string(),
            scheme: scheme_designator(str_at(c, &["system"]).unwrap_or_default()),
            meaning: str_at(c, &["display"])
                .or_else(|| str_at(sr, &["code", "text"]))
                .unwrap_or_default()
                .to_string(),
        })
    });
    let description = str_at(sr, &["code", "text"])
        .or_else(|| coding.and_then(|c| str_at(c, &["display"])))
        .unwrap_or_default()
        .to_string();
    let when =
        str_at(sr, &["occurrenceDateTime"]).or_else(|| str_at(sr, &["occurrencePeriod", "start"]));
    let (start_date, start_time) = when.map(|w| local_start(w, tz)).unwrap_or_default();
    let modality = sr
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("coding").and_then(Value::as_array))
        .flatten()
        .find(|c| str_at(c, &["system"]) == Some(DICOM_ONTOLOGY))
        .and_then(|c| str_at(c, &["code"]))
        .unwrap_or(&defaults.modality)
        .to_string();
    let mut step = ScheduledStep {
        accession_number: accession.clone(),
        requested_procedure_id: accession.clone(),
        requested_procedure_description: description.clone(),
        requested_procedure_code: code,
        priority: match str_at(sr, &["priority"]) {
            Some("stat") => "STAT",
            Some("asap") | Some("urgent") => "HIGH",
            Some("routine") => "ROUTINE",
            _ => "",
        }
        .into(),
        requesting_physician: str_at(sr, &["requester", "display"])
            .map(person_from_text)
            .unwrap_or_default(),
        modality,
        station_ae: defaults.station_ae.clone(),
        start_date,
        start_time,
        step_id: accession,
        step_description: description,
        status: state.dicom_status().into(),
        ..Default::default()
    };
    if let Some(p) = patient_of(sr, entries) {
        step.patient_id = str_at(p, &["identifier", "0", "value"])
            .unwrap_or_default()
            .to_string();
        step.issuer_of_patient_id = str_at(p, &["identifier", "0", "system"])
            .map(|s| s.trim_start_matches("urn:oid:").to_string())
            .unwrap_or_default();
        step.patient_name = p
            .pointer("/name/0")
            .map(|n| {
                let given: Vec<&str> = n
                    .get("given")
                    .and_then(Value::as_array)
                    .map(|g| g.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                person_name(
                    str_at(n, &["family"]).unwrap_or_default(),
                    given.first().copied().unwrap_or_default(),
                    &given.get(1..).unwrap_or_default().join(" "),
                    str_at(n, &["prefix", "0"]).unwrap_or_default(),
                    str_at(n, &["suffix", "0"]).unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        step.birth_date = str_at(p, &["birthDate"])
            .map(|d| d.chars().filter(char::is_ascii_digit).take(8).collect())
            .unwrap_or_default();
        step.sex = match str_at(p, &["gender"]) {
            Some("male") => "M",
            Some("female") => "F",
            Some(_) => "O",
            None => "",
        }
        .into();
    } else if let Some(id) = str_at(sr, &["subject", "identifier", "value"]) {
        step.patient_id = id.to_string();
    }
    step.study_instance_uid = sr
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|i| str_at(i, &["system"]) == Some("urn:dicom:uid"))
        .and_then(|i| str_at(i, &["value"]))
        .map(|v| v.trim_start_matches("urn:oid:").to_string())
        .unwrap_or_else(|| study_uid_for(&format!("{}/{key}", defaults.worklist)));
    Ok(WorklistChange {
        key: key.to_string(),
        state,
        step,
    })
}

const DICOM_ONTOLOGY: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// A coding system as a DICOM coding scheme designator (PS3.16 8).
pub(crate) fn scheme_designator(system: &str) -> String {
    if let Some(name) = crate::coding_systems::name_of(system) {
        return name.into();
    }
    match system {
        "" => "L".into(),
        // A local system (`urn:…`, a v2 coding system name): designators
        // are 16 characters at most.
        s => s
            .rsplit([':', '/'])
            .next()
            .unwrap_or(s)
            .chars()
            .take(16)
            .collect(),
    }
}

/// The Patient `sr.subject` names, from the Bundle.
fn patient_of<'a>(sr: &Value, entries: Option<&'a Vec<Value>>) -> Option<&'a Value> {
    let reference = str_at(sr, &["subject", "reference"])?;
    entries?.iter().find_map(|e| {
        let r = e.get("resource")?;
        let full = e.get("fullUrl").and_then(Value::as_str);
        let local = format!(
            "{}/{}",
            r.get("resourceType")?.as_str()?,
            r.get("id").and_then(Value::as_str).unwrap_or_default()
        );
        (full == Some(reference) || local == reference).then_some(r)
    })
}

/// `Family^Given^Middle^Prefix^Suffix`, without trailing empty components.
pub(crate) fn person_name(
    family: &str,
    given: &str,
    middle: &str,
    prefix: &str,
    suffix: &str,
) -> String {
    let clean = |s: &str| s.replace(['^', '\\', '='], " ").trim().to_string();
    let parts = [family, given, middle, prefix, suffix].map(clean);
    parts.join("^").trim_end_matches('^').to_string()
}

/// "Dr. Ann Smith" as a person name: the last word the family name.
fn person_from_text(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.split_last() {
        Some((family, given)) => person_name(family, &given.join(" "), "", "", ""),
        None => String::new(),
    }
}

/// A FHIR dateTime (or HL7 DTM made ISO) as the site's local date and time.
pub(crate) fn local_start(when: &str, tz: &TimeZone) -> (String, String) {
    if let Ok(ts) = when.parse::<jiff::Timestamp>() {
        let local = ts.to_zoned(tz.clone());
        return (
            local.strftime("%Y%m%d").to_string(),
            local.strftime("%H%M%S").to_string(),
        );
    }
    // No offset: already local. `2026-12-04T09:30:00` or `2026-12-04`.
    let digits: String = when.chars().filter(char::is_ascii_digit).collect();
    let date: String = digits.chars().take(8).collect();
    let time: String = digits.chars().skip(8).take(6).collect();
    if date.len() < 8 {
        return (String::new(), String::new());
    }
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> WorklistDefaults {
        WorklistDefaults {
            worklist: "ct".into(),
            modality: "CT".into(),
            station_ae: "CT01".into(),
        }
    }

    #[test]
    fn a_bundle_of_a_service_request_and_its_patient_is_one_step() {
        let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient",
                "identifier": [{"system": "urn:oid:1.2.3", "value": "P77"}],
                "name": [{"family": "Müller", "given": ["Jörg", "Karl"]}],
                "birthDate": "1970-01-02", "gender": "male"}},
            {"resource": {"resourceType": "ServiceRequest", "status": "active",
                "identifier": [
                    {"type": {"coding": [{"code": "PLAC"}]}, "value": "ORD1"},
                    {"type": {"coding": [{"code": "ACSN"}]}, "value": "ACC9"}],
                "category": [{"coding": [{"system": DICOM_ONTOLOGY, "code": "MR"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "24590-2", "display": "MR Brain"}]},
                "priority": "stat",
                "occurrenceDateTime": "2026-12-04T08:30:00Z",
                "subject": {"reference": "urn:uuid:p1"}}}
        ]});
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let c = from_fhir(&bundle, &defaults(), &tz).unwrap();
        assert_eq!(c.len(), 1);
        let c = &c[0];
        assert_eq!(c.key, "ORD1");
        assert_eq!(c.state, StepState::Scheduled);
        let s = &c.step;
        assert_eq!(s.patient_name, "Müller^Jörg^Karl");
        assert_eq!(
            (s.patient_id.as_str(), s.issuer_of_patient_id.as_str()),
            ("P77", "1.2.3")
        );
        assert_eq!((s.birth_date.as_str(), s.sex.as_str()), ("19700102", "M"));
        assert_eq!(s.accession_number, "ACC9");
        assert_eq!(s.modality, "MR", "the category wins over the default");
        assert_eq!(s.station_ae, "CT01");
        assert_eq!(
            (s.start_date.as_str(), s.start_time.as_str()),
            ("20261204", "093000"),
            "in the site's zone"
        );
        assert_eq!(s.priority, "STAT");
        assert_eq!(s.requested_procedure_code.as_ref().unwrap().scheme, "LN");
        assert_eq!(s.study_instance_uid, study_uid_for("ct/ORD1"));
        assert_eq!(c.start(), "20261204093000");
    }

    #[test]
    fn a_revoked_request_cancels_and_a_bundle_without_requests_is_an_error() {
        let sr = json!({"resourceType": "ServiceRequest", "status": "revoked",
            "identifier": [{"system": "urn:ecko-edge:his:placer", "value": "ORD1"}]});
        let c = from_fhir(&sr, &defaults(), &TimeZone::UTC).unwrap();
        assert_eq!(
            (c[0].key.as_str(), c[0].state),
            ("ORD1", StepState::Cancelled)
        );
        let empty =
            json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]});
        assert!(matches!(
            from_fhir(&empty, &defaults(), &TimeZone::UTC),
            Err(TransformError::Empty(_))
        ));
        let unkeyed = json!({"resourceType": "ServiceRequest", "status": "active"});
        assert!(from_fhir(&unkeyed, &defaults(), &TimeZone::UTC).is_err());
        let other = json!({"resourceType": "Observation"});
        assert!(from_fhir(&other, &defaults(), &TimeZone::UTC).is_err());
    }
}
