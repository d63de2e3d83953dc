//! What a template produced, checked before it is sent.
//!
//! The output must be JSON: a `transaction` Bundle, or one resource with an
//! identifier (it then becomes a transaction of one conditional PUT on that
//! identifier, as the built-in maps send resources). First every `null`,
//! `""`, `{}` and `[]` is removed (blank fields create nothing, so a template
//! may write `{{ x | tojson }}` for a field that can be blank); then the
//! structure is checked: known R4 resource types, each entry with a request
//! whose URL names the entry's type, unique `fullUrl`s, and no `urn:uuid:`
//! reference that points at nothing in the Bundle. A Provenance naming the
//! source endpoint and the message is added as for the built-in maps.

use serde_json::{Map, Value};

/// The resource types of FHIR R4 (4.0.1).
const R4_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Removes `null`, blank strings, `{}` and `[]`, innermost first.
pub fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => {
            a.retain_mut(|c| !prune(c));
            a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, c| !prune(c));
            o.is_empty()
        }
        _ => false,
    }
}

fn resource_type(r: &Value) -> Result<&str, String> {
    let ty = r
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or("a resource without `resourceType`")?;
    if !R4_TYPES.contains(&ty) {
        return Err(format!("`{ty}` is not an R4 resource type"));
    }
    Ok(ty)
}

/// Checks a Bundle the template made; `Err` says what is wrong and where.
pub fn bundle(b: &Value) -> Result<(), String> {
    if b.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err("a Bundle must have `\"type\": \"transaction\"`".into());
    }
    let entries = b
        .get("entry")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or("the Bundle has no entries")?;
    let mut full_urls = std::collections::HashSet::new();
    for (i, e) in entries.iter().enumerate() {
        let at = |m: String| format!("entry[{i}]: {m}");
        let method = e
            .pointer("/request/method")
            .and_then(Value::as_str)
            .ok_or_else(|| at("no `request.method`".into()))?;
        let url = e
            .pointer("/request/url")
            .and_then(Value::as_str)
            .ok_or_else(|| at("no `request.url`".into()))?;
        if !matches!(method, "POST" | "PUT" | "DELETE") {
            return Err(at(format!(
                "request method `{method}` (POST, PUT or DELETE)"
            )));
        }
        let url_type = url.split(['/', '?']).next().unwrap_or("");
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let conditions = query.split('&').chain(
            e.pointer("/request/ifNoneExist")
                .and_then(Value::as_str)
                .into_iter()
                .flat_map(|q| q.split('&')),
        );
        for c in conditions.filter(|c| !c.is_empty()) {
            let value = c.split_once('=').map_or("", |(_, v)| v);
            if value.is_empty() || value.ends_with('|') {
                return Err(at(format!(
                    "the condition `{c}` of `{url}` has no value: the resource would match nothing or everything"
                )));
            }
        }
        match e.get("resource") {
            Some(r) => {
                let ty = resource_type(r).map_err(at)?;
                if ty != url_type {
                    return Err(at(format!("a {ty} sent to `{url}`")));
                }
            }
            None if method == "DELETE" => {}
            None => return Err(at(format!("{method} without a resource"))),
        }
        if let Some(full) = e.get("fullUrl") {
            let full = full
                .as_str()
                .ok_or_else(|| at("`fullUrl` is not text".into()))?;
            let ok = full
                .strip_prefix("urn:uuid:")
                .is_some_and(|u| uuid::Uuid::parse_str(u).is_ok())
                || full.starts_with("http://")
                || full.starts_with("https://");
            if !ok {
                return Err(at(format!(
                    "`fullUrl` {full:?} is neither urn:uuid:<uuid> nor a URL"
                )));
            }
            if !full_urls.insert(full.to_string()) {
                return Err(at(format!("`fullUrl` {full} appears twice")));
            }
        }
    }
    let mut dangling = Vec::new();
    references(b, &mut |r| {
        if r.starts_with("urn:uuid:") && !full_urls.contains(r) {
            dangling.push(r.to_string());
        }
    });
    if let Some(r) = dangling.first() {
        return Err(format!("reference {r} points at no entry of the Bundle"));
    }
    Ok(())
}

fn references(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference") {
                f(r);
            }
            o.values().for_each(|c| references(c, f));
        }
        Value::Array(a) => a.iter().for_each(|c| references(c, f)),
        _ => {}
    }
}

/// One resource → a transaction of one conditional PUT on its first
/// identifier.
pub fn wrap(resource: Value) -> Result<Value, String> {
    let ty = resource_type(&resource)?.to_string();
    let key = resource.pointer("/identifier/0");
    let (Some(system), Some(value)) = (
        key.and_then(|k| k.get("system")).and_then(Value::as_str),
        key.and_then(|k| k.get("value")).and_then(Value::as_str),
    ) else {
        return Err(format!(
            "a single {ty} needs `identifier[0]` with system and value (the key a resend updates); otherwise produce a transaction Bundle"
        ));
    };
    let id = crate::r4::resource_id(&ty, system, value);
    let url = format!(
        "{ty}?identifier={}|{}",
        crate::r4::query_value(system),
        crate::r4::query_value(value)
    );
    let mut entry = Map::new();
    entry.insert("fullUrl".into(), Value::String(format!("urn:uuid:{id}")));
    entry.insert("resource".into(), resource);
    entry.insert(
        "request".into(),
        serde_json::json!({"method": "PUT", "url": url}),
    );
    Ok(
        serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [Value::Object(entry)]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blank_values_are_removed_innermost_first() {
        let mut v = json!({"a": "", "b": {"c": [null, {}, " "]}, "d": 1, "e": [{"f": ""}, "x"]});
        prune(&mut v);
        assert_eq!(v, json!({"d": 1, "e": ["x"]}));
    }

    #[test]
    fn a_bundle_is_refused_for_what_a_server_would_refuse_with_the_entry_named() {
        let entry = |ty: &str, url: &str, full: &str| json!({"fullUrl": full, "resource": {"resourceType": ty}, "request": {"method": "PUT", "url": url}});
        let u1 = "urn:uuid:6f1c2a8e-4b7d-4e0a-9c35-1d2e8f60a7b4";
        let ok = json!({"type": "transaction", "entry": [entry("Patient", "Patient?identifier=a|b", u1)]});
        assert_eq!(bundle(&ok), Ok(()));
        let wrong_type =
            json!({"type": "transaction", "entry": [entry("Patient", "Observation/1", u1)]});
        assert!(bundle(&wrong_type)
            .unwrap_err()
            .starts_with("entry[0]: a Patient sent to"));
        let unknown = json!({"type": "transaction", "entry": [entry("Patiant", "Patiant/1", u1)]});
        assert!(bundle(&unknown)
            .unwrap_err()
            .contains("not an R4 resource type"));
        let dangling = json!({"type": "transaction", "entry": [
            {"fullUrl": u1, "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}},
             "request": {"method": "POST", "url": "Observation"}}]});
        assert!(bundle(&dangling)
            .unwrap_err()
            .contains("points at no entry"));
        assert!(bundle(&json!({"type": "batch", "entry": []})).is_err());
        let blank_key = json!({"type": "transaction", "entry": [entry("Patient", "Patient?identifier=urn:x|", u1)]});
        assert!(bundle(&blank_key).unwrap_err().contains("has no value"));
    }

    #[test]
    fn a_single_resource_becomes_a_conditional_put_or_is_refused_without_identifier() {
        let w = wrap(
            json!({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "7"}]}),
        )
        .unwrap();
        assert_eq!(
            w["entry"][0]["request"]["url"],
            "Patient?identifier=urn:x|7"
        );
        assert_eq!(bundle(&w), Ok(()));
        assert!(wrap(json!({"resourceType": "Patient"}))
            .unwrap_err()
            .contains("identifier[0]"));
    }
}
