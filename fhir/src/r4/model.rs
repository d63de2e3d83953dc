//! The R4 (4.0.1) resources and data types the gateway emits, as plain serde
//! structs. Only the elements the maps fill are modelled; every optional
//! element is left out of the JSON when absent, so a blank HL7 or ASTM field
//! never becomes an empty string or an empty object.

use serde::{Deserialize, Serialize};

macro_rules! fhir_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Skip::skip")]
                pub $field: $ty,
            )*
        }
        impl Skip for $name {
            fn skip(&self) -> bool {
                *self == $name::default()
            }
        }
    };
}

/// Whether a value is absent and left out of the JSON.
pub trait Skip {
    fn skip(&self) -> bool;
}
impl<T> Skip for Option<T> {
    fn skip(&self) -> bool {
        self.is_none()
    }
}
impl<T> Skip for Vec<T> {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}
impl Skip for String {
    fn skip(&self) -> bool {
        self.is_empty()
    }
}
impl Skip for serde_json::Number {
    fn skip(&self) -> bool {
        false
    }
}

fhir_struct!(Coding { system: Option<String>, code: Option<String>, display: Option<String> });
fhir_struct!(CodeableConcept { coding: Vec<Coding>, text: Option<String> });
fhir_struct!(Identifier {
    #[serde(rename = "use")]
    use_: Option<String>,
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    system: Option<String>,
    value: Option<String>,
});
fhir_struct!(Reference { reference: Option<String>, display: Option<String> });
fhir_struct!(Quantity {
    value: Option<serde_json::Number>,
    comparator: Option<String>,
    unit: Option<String>,
    system: Option<String>,
    code: Option<String>,
});
fhir_struct!(Range { low: Option<Quantity>, high: Option<Quantity> });
fhir_struct!(Ratio { numerator: Option<Quantity>, denominator: Option<Quantity> });
fhir_struct!(Period { start: Option<String>, end: Option<String> });
fhir_struct!(HumanName {
    #[serde(rename = "use")]
    use_: Option<String>,
    family: Option<String>,
    given: Vec<String>,
    prefix: Vec<String>,
    suffix: Vec<String>,
});
fhir_struct!(Address {
    text: Option<String>,
    line: Vec<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
});
fhir_struct!(ContactPoint {
    system: Option<String>,
    value: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
});
fhir_struct!(Annotation { text: String, time: Option<String> });
fhir_struct!(ReferenceRange { low: Option<Quantity>, high: Option<Quantity>, text: Option<String> });
fhir_struct!(Meta { source: Option<String> });

// An extension of the core's (`patient-religion`, ...): its URL and the
// one value it carries.
fhir_struct!(Extension {
    url: String,
    value_string: Option<String>,
    value_date_time: Option<String>,
    value_codeable_concept: Option<CodeableConcept>,
    value_address: Option<Address>,
});
// The extensions of a primitive element (`_birthDate`).
fhir_struct!(PrimitiveExtensions { extension: Vec<Extension> });

fhir_struct!(Patient {
    id: Option<String>,
    extension: Vec<Extension>,
    identifier: Vec<Identifier>,
    active: Option<bool>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    gender: Option<String>,
    birth_date: Option<String>,
    #[serde(rename = "_birthDate")]
    birth_date_extensions: Option<PrimitiveExtensions>,
    deceased_boolean: Option<bool>,
    deceased_date_time: Option<String>,
    address: Vec<Address>,
    marital_status: Option<CodeableConcept>,
    multiple_birth_boolean: Option<bool>,
    multiple_birth_integer: Option<u32>,
    contact: Vec<PatientContact>,
    communication: Vec<PatientCommunication>,
    general_practitioner: Vec<Reference>,
    link: Vec<PatientLink>,
});
fhir_struct!(PatientContact {
    relationship: Vec<CodeableConcept>,
    name: Option<HumanName>,
    telecom: Vec<ContactPoint>,
    address: Option<Address>,
    gender: Option<String>,
    organization: Option<Reference>,
    period: Option<Period>,
});
fhir_struct!(PatientCommunication {
    language: CodeableConcept,
    preferred: Option<bool>,
});
fhir_struct!(PatientLink {
    other: Reference,
    #[serde(rename = "type")]
    type_: String,
});

fhir_struct!(Encounter {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    class: Coding,
    #[serde(rename = "type")]
    type_: Vec<CodeableConcept>,
    service_type: Option<CodeableConcept>,
    priority: Option<CodeableConcept>,
    subject: Option<Reference>,
    participant: Vec<EncounterParticipant>,
    period: Option<Period>,
    length: Option<Quantity>,
    reason_code: Vec<CodeableConcept>,
    diagnosis: Vec<EncounterDiagnosis>,
    hospitalization: Option<EncounterHospitalization>,
    location: Vec<EncounterLocation>,
    service_provider: Option<Reference>,
});
fhir_struct!(EncounterDiagnosis {
    condition: Reference,
    #[serde(rename = "use")]
    use_: Option<CodeableConcept>,
    rank: Option<u32>,
});
fhir_struct!(EncounterLocation { location: Reference, status: Option<String> });
fhir_struct!(EncounterParticipant {
    #[serde(rename = "type")]
    type_: Vec<CodeableConcept>,
    period: Option<Period>,
    individual: Option<Reference>,
});
fhir_struct!(EncounterHospitalization {
    pre_admission_identifier: Option<Identifier>,
    admit_source: Option<CodeableConcept>,
    re_admission: Option<CodeableConcept>,
    diet_preference: Vec<CodeableConcept>,
    special_courtesy: Vec<CodeableConcept>,
    discharge_disposition: Option<CodeableConcept>,
});

fhir_struct!(Device {
    id: Option<String>,
    identifier: Vec<Identifier>,
    serial_number: Option<String>,
    device_name: Vec<DeviceName>,
    version: Vec<DeviceVersion>,
});
fhir_struct!(DeviceName {
    name: String,
    #[serde(rename = "type")]
    type_: String,
});
fhir_struct!(DeviceVersion { value: String });

fhir_struct!(Specimen {
    id: Option<String>,
    identifier: Vec<Identifier>,
    accession_identifier: Option<Identifier>,
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    subject: Option<Reference>,
    received_time: Option<String>,
    parent: Vec<Reference>,
    request: Vec<Reference>,
    collection: Option<SpecimenCollection>,
    container: Vec<SpecimenContainer>,
    condition: Vec<CodeableConcept>,
    note: Vec<Annotation>,
});
fhir_struct!(SpecimenCollection {
    collected_date_time: Option<String>,
    collected_period: Option<Period>,
    quantity: Option<Quantity>,
    method: Option<CodeableConcept>,
    body_site: Option<CodeableConcept>,
});
fhir_struct!(SpecimenContainer {
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    additive_codeable_concept: Option<CodeableConcept>,
});

fhir_struct!(ServiceRequest {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    intent: String,
    priority: Option<String>,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    authored_on: Option<String>,
    requester: Option<Reference>,
    specimen: Vec<Reference>,
    note: Vec<Annotation>,
    requisition: Option<Identifier>,
    quantity_quantity: Option<Quantity>,
    occurrence_date_time: Option<String>,
    occurrence_period: Option<Period>,
    reason_code: Vec<CodeableConcept>,
    patient_instruction: Option<String>,
});

fhir_struct!(Money { value: Option<serde_json::Number>, currency: Option<String> });

fhir_struct!(MedicationRequest {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    intent: String,
    priority: Option<String>,
    medication_codeable_concept: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    authored_on: Option<String>,
    requester: Option<Reference>,
    reason_code: Vec<CodeableConcept>,
    note: Vec<Annotation>,
    dosage_instruction: Vec<Dosage>,
    dispense_request: Option<DispenseRequest>,
});
fhir_struct!(Dosage {
    text: Option<String>,
    timing: Option<Timing>,
    route: Option<CodeableConcept>,
    dose_and_rate: Vec<DoseAndRate>,
});
fhir_struct!(Timing { event: Vec<String>, repeat: Option<TimingRepeat>, code: Option<CodeableConcept> });
fhir_struct!(TimingRepeat {
    bounds_period: Option<Period>,
    frequency: Option<u32>,
    period: Option<serde_json::Number>,
    period_unit: Option<String>,
    when: Vec<String>,
});
fhir_struct!(DoseAndRate { dose_quantity: Option<Quantity>, dose_range: Option<Range> });
fhir_struct!(DispenseRequest { quantity: Option<Quantity>, number_of_repeats_allowed: Option<u32> });

fhir_struct!(Appointment {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    cancelation_reason: Option<CodeableConcept>,
    service_type: Vec<CodeableConcept>,
    appointment_type: Option<CodeableConcept>,
    reason_code: Vec<CodeableConcept>,
    description: Option<String>,
    start: Option<String>,
    end: Option<String>,
    minutes_duration: Option<u32>,
    comment: Option<String>,
    participant: Vec<AppointmentParticipant>,
});
fhir_struct!(AppointmentParticipant {
    #[serde(rename = "type")]
    type_: Vec<CodeableConcept>,
    actor: Option<Reference>,
    required: Option<String>,
    status: String,
});

fhir_struct!(ChargeItem {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    code: CodeableConcept,
    subject: Reference,
    context: Option<Reference>,
    occurrence_date_time: Option<String>,
    occurrence_period: Option<Period>,
    performer: Vec<ChargeItemPerformer>,
    quantity: Option<Quantity>,
    price_override: Option<Money>,
    override_reason: Option<String>,
    enterer: Option<Reference>,
    entered_date: Option<String>,
    reason: Vec<CodeableConcept>,
    note: Vec<Annotation>,
});
fhir_struct!(ChargeItemPerformer { function: Option<CodeableConcept>, actor: Reference });

fhir_struct!(DiagnosticReport {
    id: Option<String>,
    identifier: Vec<Identifier>,
    based_on: Vec<Reference>,
    status: String,
    category: Vec<CodeableConcept>,
    code: CodeableConcept,
    subject: Option<Reference>,
    effective_date_time: Option<String>,
    issued: Option<String>,
    performer: Vec<Reference>,
    specimen: Vec<Reference>,
    result: Vec<Reference>,
    conclusion: Option<String>,
    presented_form: Vec<Attachment>,
});
fhir_struct!(Attachment {
    content_type: Option<String>,
    data: Option<String>,
    url: Option<String>,
    size: Option<u64>,
    title: Option<String>,
    creation: Option<String>,
});

fhir_struct!(Observation {
    id: Option<String>,
    identifier: Vec<Identifier>,
    based_on: Vec<Reference>,
    status: String,
    category: Vec<CodeableConcept>,
    code: CodeableConcept,
    subject: Option<Reference>,
    effective_date_time: Option<String>,
    issued: Option<String>,
    performer: Vec<Reference>,
    value_quantity: Option<Quantity>,
    value_codeable_concept: Option<CodeableConcept>,
    value_string: Option<String>,
    value_range: Option<Range>,
    value_ratio: Option<Ratio>,
    value_date_time: Option<String>,
    data_absent_reason: Option<CodeableConcept>,
    interpretation: Vec<CodeableConcept>,
    note: Vec<Annotation>,
    method: Option<CodeableConcept>,
    specimen: Option<Reference>,
    device: Option<Reference>,
    reference_range: Vec<ReferenceRange>,
    component: Vec<ObservationComponent>,
});
// One value of an Observation whose source held several (a repeating
// OBX-5): the Observation's code again, and one value[x].
fhir_struct!(ObservationComponent {
    code: CodeableConcept,
    value_quantity: Option<Quantity>,
    value_codeable_concept: Option<CodeableConcept>,
    value_string: Option<String>,
    value_range: Option<Range>,
    value_ratio: Option<Ratio>,
    value_date_time: Option<String>,
});

fhir_struct!(AllergyIntolerance {
    id: Option<String>,
    identifier: Vec<Identifier>,
    clinical_status: Option<CodeableConcept>,
    verification_status: Option<CodeableConcept>,
    #[serde(rename = "type")]
    type_: Option<String>,
    category: Vec<String>,
    criticality: Option<String>,
    code: Option<CodeableConcept>,
    patient: Reference,
    onset_date_time: Option<String>,
    onset_string: Option<String>,
    recorded_date: Option<String>,
    asserter: Option<Reference>,
    reaction: Vec<AllergyReaction>,
});
fhir_struct!(AllergyReaction {
    manifestation: Vec<CodeableConcept>,
    severity: Option<String>,
});

fhir_struct!(Condition {
    id: Option<String>,
    identifier: Vec<Identifier>,
    verification_status: Option<CodeableConcept>,
    category: Vec<CodeableConcept>,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    onset_date_time: Option<String>,
    recorded_date: Option<String>,
    asserter: Option<Reference>,
});

fhir_struct!(Procedure {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    category: Option<CodeableConcept>,
    code: Option<CodeableConcept>,
    subject: Reference,
    encounter: Option<Reference>,
    performed_date_time: Option<String>,
    performed_period: Option<Period>,
    performer: Vec<ProcedurePerformer>,
    reason_code: Vec<CodeableConcept>,
});
fhir_struct!(ProcedurePerformer { function: Option<CodeableConcept>, actor: Reference });

fhir_struct!(Organization {
    id: Option<String>,
    identifier: Vec<Identifier>,
    name: Option<String>,
    telecom: Vec<ContactPoint>,
    address: Vec<Address>,
});

fhir_struct!(RelatedPerson {
    id: Option<String>,
    identifier: Vec<Identifier>,
    patient: Reference,
    relationship: Vec<CodeableConcept>,
    name: Vec<HumanName>,
    telecom: Vec<ContactPoint>,
    gender: Option<String>,
    birth_date: Option<String>,
    address: Vec<Address>,
});

fhir_struct!(Account {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    subject: Vec<Reference>,
    guarantor: Vec<AccountGuarantor>,
});
fhir_struct!(AccountGuarantor { party: Reference, period: Option<Period> });

fhir_struct!(Coverage {
    id: Option<String>,
    identifier: Vec<Identifier>,
    status: String,
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    subscriber: Option<Reference>,
    subscriber_id: Option<String>,
    beneficiary: Reference,
    relationship: Option<CodeableConcept>,
    period: Option<Period>,
    payor: Vec<Reference>,
    class: Vec<CoverageClass>,
    order: Option<u32>,
});
fhir_struct!(CoverageClass {
    #[serde(rename = "type")]
    type_: CodeableConcept,
    value: String,
    name: Option<String>,
});

fhir_struct!(Provenance {
    id: Option<String>,
    target: Vec<Reference>,
    recorded: String,
    activity: Option<CodeableConcept>,
    agent: Vec<ProvenanceAgent>,
    entity: Vec<ProvenanceEntity>,
});
fhir_struct!(ProvenanceAgent {
    #[serde(rename = "type")]
    type_: Option<CodeableConcept>,
    who: Reference,
});
fhir_struct!(ProvenanceEntity {
    role: String,
    what: Reference
});

/// Every resource type a map may put into a Bundle.
// Built once per entry and serialised at once: boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    Patient(Patient),
    Encounter(Encounter),
    Device(Device),
    Specimen(Specimen),
    ServiceRequest(ServiceRequest),
    DiagnosticReport(DiagnosticReport),
    Observation(Observation),
    MedicationRequest(MedicationRequest),
    Appointment(Appointment),
    ChargeItem(ChargeItem),
    AllergyIntolerance(AllergyIntolerance),
    Condition(Condition),
    Procedure(Procedure),
    Organization(Organization),
    Coverage(Coverage),
    RelatedPerson(RelatedPerson),
    Account(Account),
    Provenance(Provenance),
}

impl Resource {
    pub fn type_name(&self) -> &'static str {
        match self {
            Resource::Patient(_) => "Patient",
            Resource::Encounter(_) => "Encounter",
            Resource::Device(_) => "Device",
            Resource::Specimen(_) => "Specimen",
            Resource::ServiceRequest(_) => "ServiceRequest",
            Resource::DiagnosticReport(_) => "DiagnosticReport",
            Resource::Observation(_) => "Observation",
            Resource::MedicationRequest(_) => "MedicationRequest",
            Resource::Appointment(_) => "Appointment",
            Resource::ChargeItem(_) => "ChargeItem",
            Resource::AllergyIntolerance(_) => "AllergyIntolerance",
            Resource::Condition(_) => "Condition",
            Resource::Procedure(_) => "Procedure",
            Resource::Organization(_) => "Organization",
            Resource::Coverage(_) => "Coverage",
            Resource::RelatedPerson(_) => "RelatedPerson",
            Resource::Account(_) => "Account",
            Resource::Provenance(_) => "Provenance",
        }
    }
}

fhir_struct!(BundleRequest {
    method: String,
    url: String,
    if_none_exist: Option<String>,
});

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    pub full_url: String,
    pub resource: Resource,
    pub request: BundleRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType", rename = "Bundle")]
pub struct Bundle {
    #[serde(rename = "type")]
    pub type_: String,
    pub entry: Vec<BundleEntry>,
}
