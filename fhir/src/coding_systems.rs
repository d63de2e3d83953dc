//! Coding-system names as senders write them (HL7 v2 table 0396 in CWE-3
//! and CWE-6, DICOM coding scheme designators) and the canonical FHIR
//! system URIs they stand for, after the HL7 V2-to-FHIR IG's coding-system
//! map and FHIR R4's list of external code systems.
//!
//! A name is looked up trimmed and case-insensitively (`LN`, `ln`, `Loinc`
//! are one system: senders differ). `HL7nnnn` names an HL7 v2 table
//! (`http://terminology.hl7.org/CodeSystem/v2-nnnn`). Only a name that no
//! standard system claims falls back to the sender's local system, so a
//! LOINC or SNOMED code is never treated as local, and an endpoint's code
//! map (which rewrites local codes only) cannot shadow it.

use crate::r4::{LOINC, SNOMED, UCUM};

/// Each standard system: the names it is sent under, the first one being
/// the name written back where a name is wanted (a DICOM designator), and
/// its URI.
const SYSTEMS: &[(&[&str], &str)] = &[
    (&["LN", "LOINC"], LOINC),
    (
        &[
            "SCT",
            "SNOMEDCT",
            "SNOMED-CT",
            "SNOMED CT",
            "SNOMED",
            "SNM",
            "SRT",
        ],
        SNOMED,
    ),
    (&["UCUM"], UCUM),
    (
        &["I10", "ICD10", "ICD-10"],
        "http://hl7.org/fhir/sid/icd-10",
    ),
    (
        &["I10C", "ICD10CM", "ICD-10-CM"],
        "http://hl7.org/fhir/sid/icd-10-cm",
    ),
    (
        &["I10P", "ICD10PCS", "ICD-10-PCS"],
        "http://www.cms.gov/Medicare/Coding/ICD10",
    ),
    (
        &["I9C", "I9", "ICD9", "ICD9CM", "ICD-9-CM"],
        "http://hl7.org/fhir/sid/icd-9-cm",
    ),
    (
        &["RXNORM", "RXN"],
        "http://www.nlm.nih.gov/research/umls/rxnorm",
    ),
    (&["NDC"], "http://hl7.org/fhir/sid/ndc"),
    (
        &["CPT", "C4", "C5", "CPT4"],
        "http://www.ama-assn.org/go/cpt",
    ),
    (
        &["HCPCS", "HCPT"],
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    ),
    (&["CVX"], "http://hl7.org/fhir/sid/cvx"),
    (&["MVX"], "http://hl7.org/fhir/sid/mvx"),
    (&["NUCC", "NUCCPT"], "http://nucc.org/provider-taxonomy"),
    (&["CDCREC"], "urn:oid:2.16.840.1.113883.6.238"),
    (&["DCM"], "http://dicom.nema.org/resources/ontology/DCM"),
    (&["ATC", "WHOATC"], "http://www.whocc.no/atc"),
    (&["NCI", "NCIT"], "http://ncimeta.nci.nih.gov"),
    (&["HGNC"], "http://www.genenames.org"),
    (
        &["MDR", "MEDDRA"],
        "http://terminology.hl7.org/CodeSystem/mdr",
    ),
    (&["UMLS"], "http://www.nlm.nih.gov/research/umls"),
    (&["ISO3166", "ISO3166_1"], "urn:iso:std:iso:3166"),
];

/// The canonical URI of a standard system named `name`; `None` for a name
/// no standard system claims (a local one, or none).
pub fn uri(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Some(table) = v2_table(name) {
        return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
    }
    SYSTEMS
        .iter()
        .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(_, uri)| (*uri).to_string())
}

/// The short name of the standard system at `uri` (`LN` for LOINC), for
/// formats that name systems rather than give URIs.
pub fn name_of(uri: &str) -> Option<&'static str> {
    SYSTEMS
        .iter()
        .find(|(_, u)| *u == uri)
        .map(|(names, _)| names[0])
}

/// `HL70203` (and the zero-padded `HL700203` some senders write) is v2
/// table `0203`.
fn v2_table(name: &str) -> Option<&str> {
    let digits = name
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("HL7"))
        .map(|_| &name[3..])?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match digits.len() {
        4 => Some(digits),
        5 if digits.starts_with('0') => Some(&digits[1..]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_found_whatever_its_case_and_padding() {
        for name in ["LN", "ln", " Loinc ", "LOINC"] {
            assert_eq!(uri(name).as_deref(), Some(LOINC), "{name:?}");
        }
        for name in ["SCT", "snomedct", "SNOMED CT", "SRT"] {
            assert_eq!(uri(name).as_deref(), Some(SNOMED), "{name:?}");
        }
    }

    #[test]
    fn the_icd_families_are_kept_apart() {
        assert_eq!(uri("I10").unwrap(), "http://hl7.org/fhir/sid/icd-10");
        assert_eq!(uri("I10C").unwrap(), "http://hl7.org/fhir/sid/icd-10-cm");
        assert_eq!(uri("icd10cm").unwrap(), "http://hl7.org/fhir/sid/icd-10-cm");
        assert_eq!(
            uri("I10P").unwrap(),
            "http://www.cms.gov/Medicare/Coding/ICD10"
        );
        assert_eq!(uri("I9C").unwrap(), "http://hl7.org/fhir/sid/icd-9-cm");
    }

    #[test]
    fn drug_procedure_and_vaccine_systems_have_their_fhir_uris() {
        for (name, expected) in [
            ("RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"),
            ("NDC", "http://hl7.org/fhir/sid/ndc"),
            ("C4", "http://www.ama-assn.org/go/cpt"),
            ("CPT", "http://www.ama-assn.org/go/cpt"),
            ("CVX", "http://hl7.org/fhir/sid/cvx"),
            ("UCUM", UCUM),
            ("CDCREC", "urn:oid:2.16.840.1.113883.6.238"),
        ] {
            assert_eq!(uri(name).as_deref(), Some(expected), "{name}");
        }
    }

    #[test]
    fn hl7_tables_are_v2_code_systems() {
        let expected = "http://terminology.hl7.org/CodeSystem/v2-0203";
        for name in ["HL70203", "hl70203", "HL700203"] {
            assert_eq!(uri(name).as_deref(), Some(expected), "{name}");
        }
        for not_a_table in ["HL7", "HL7020", "HL7ABCD", "HL7020304", "HL710203"] {
            assert_eq!(uri(not_a_table), None, "{not_a_table}");
        }
    }

    #[test]
    fn only_names_no_standard_system_claims_are_local() {
        for local in ["", "  ", "L", "99LAB", "LOCAL", "LNX"] {
            assert_eq!(uri(local), None, "{local:?}");
        }
    }

    #[test]
    fn a_uri_gives_back_its_preferred_name() {
        assert_eq!(name_of(LOINC), Some("LN"));
        assert_eq!(name_of(SNOMED), Some("SCT"));
        assert_eq!(
            name_of("http://dicom.nema.org/resources/ontology/DCM"),
            Some("DCM")
        );
        assert_eq!(name_of("urn:ecko-edge:lab:code"), None);
    }

    #[test]
    fn every_name_belongs_to_one_system_only() {
        let mut seen = std::collections::HashMap::new();
        for (names, uri) in SYSTEMS {
            for n in *names {
                if let Some(other) = seen.insert(n.to_ascii_uppercase(), uri) {
                    panic!("{n} names both {other} and {uri}");
                }
            }
        }
    }
}
