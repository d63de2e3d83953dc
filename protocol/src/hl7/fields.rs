//! Field names of the HL7 v2.5 segments the gateway meets (results,
//! orders, ADT, scheduling, charges, acknowledgements), for the message
//! viewer. Names follow the standard's data element names, shortened where
//! the standard repeats the segment (`Set ID - PID` is `Set ID`). OBX-20 to
//! OBX-25 are the v2.5.1 additions; everything else is v2.5.

mod orders;
mod patient;
mod scheduling;

use orders::*;
use patient::*;
use scheduling::*;

/// The name of field `position` (1-based) of `segment`, if known.
pub fn field_name(segment: &str, position: usize) -> Option<&'static str> {
    let names: &[&str] = match segment {
        "MSH" => &MSH,
        "EVN" => &EVN,
        "PID" => &PID,
        "PD1" => &PD1,
        "NK1" => &NK1,
        "PV1" => &PV1,
        "PV2" => &PV2,
        "ORC" => &ORC,
        "OBR" => &OBR,
        "OBX" => &OBX,
        "NTE" => &NTE,
        "SPM" => &SPM,
        "SAC" => &SAC,
        "TQ1" => &TQ1,
        "RXO" => &RXO,
        "RXE" => &RXE,
        "RXR" => &RXR,
        "SCH" => &SCH,
        "AIS" => &AIS,
        "AIG" => &AIG,
        "AIL" => &AIL,
        "AIP" => &AIP,
        "FT1" => &FT1,
        "MRG" => &MRG,
        "MSA" => &MSA,
        "ERR" => &ERR,
        "DG1" => &DG1,
        "IN1" => &IN1,
        "AL1" => &AL1,
        _ => return None,
    };
    position.checked_sub(1).and_then(|i| names.get(i)).copied()
}

/// The segments with a table here.
#[cfg(test)]
pub const SEGMENTS: &[&str] = &[
    "MSH", "EVN", "PID", "PD1", "NK1", "PV1", "PV2", "ORC", "OBR", "OBX", "NTE", "SPM", "SAC",
    "TQ1", "RXO", "RXE", "RXR", "SCH", "AIS", "AIG", "AIL", "AIP", "FT1", "MRG", "MSA", "ERR",
    "DG1", "IN1", "AL1",
];

const MSH: [&str; 21] = [
    "Field Separator",
    "Encoding Characters",
    "Sending Application",
    "Sending Facility",
    "Receiving Application",
    "Receiving Facility",
    "Date/Time of Message",
    "Security",
    "Message Type",
    "Message Control ID",
    "Processing ID",
    "Version ID",
    "Sequence Number",
    "Continuation Pointer",
    "Accept Acknowledgment Type",
    "Application Acknowledgment Type",
    "Country Code",
    "Character Set",
    "Principal Language of Message",
    "Alternate Character Set Handling Scheme",
    "Message Profile Identifier",
];
const EVN: [&str; 7] = [
    "Event Type Code",
    "Recorded Date/Time",
    "Date/Time Planned Event",
    "Event Reason Code",
    "Operator ID",
    "Event Occurred",
    "Event Facility",
];
const MSA: [&str; 6] = [
    "Acknowledgment Code",
    "Message Control ID",
    "Text Message",
    "Expected Sequence Number",
    "Delayed Acknowledgment Type",
    "Error Condition",
];
const ERR: [&str; 12] = [
    "Error Code and Location",
    "Error Location",
    "HL7 Error Code",
    "Severity",
    "Application Error Code",
    "Application Error Parameter",
    "Diagnostic Information",
    "User Message",
    "Inform Person Indicator",
    "Override Type",
    "Override Reason Code",
    "Help Desk Contact Point",
];
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_match_the_standard() {
        for (segment, position, name) in [
            ("MSH", 1, "Field Separator"),
            ("MSH", 9, "Message Type"),
            ("MSH", 10, "Message Control ID"),
            ("MSH", 21, "Message Profile Identifier"),
            ("EVN", 2, "Recorded Date/Time"),
            ("PID", 3, "Patient Identifier List"),
            ("PID", 5, "Patient Name"),
            ("PID", 18, "Patient Account Number"),
            ("PID", 39, "Tribal Citizenship"),
            ("PV1", 2, "Patient Class"),
            ("PV1", 19, "Visit Number"),
            ("PV1", 44, "Admit Date/Time"),
            ("PV1", 52, "Other Healthcare Provider"),
            ("ORC", 1, "Order Control"),
            ("ORC", 12, "Ordering Provider"),
            ("OBR", 4, "Universal Service Identifier"),
            ("OBR", 25, "Result Status"),
            ("OBR", 50, "Parent Universal Service Identifier"),
            ("OBX", 5, "Observation Value"),
            ("OBX", 11, "Observation Result Status"),
            ("OBX", 19, "Date/Time of the Analysis"),
            ("OBX", 23, "Performing Organization Name"),
            ("NTE", 3, "Comment"),
            ("SPM", 2, "Specimen ID"),
            ("SPM", 4, "Specimen Type"),
            ("SPM", 17, "Specimen Collection Date/Time"),
            ("SAC", 3, "Container Identifier"),
            ("SAC", 44, "Other Environmental Factors"),
            ("TQ1", 9, "Priority"),
            ("RXO", 1, "Requested Give Code"),
            ("RXE", 2, "Give Code"),
            ("RXE", 44, "Pharmacy Order Type"),
            ("RXR", 1, "Route"),
            ("SCH", 2, "Filler Appointment ID"),
            ("SCH", 25, "Filler Status Code"),
            ("AIS", 3, "Universal Service Identifier"),
            ("AIG", 3, "Resource ID"),
            ("AIL", 3, "Location Resource ID"),
            ("AIP", 3, "Personnel Resource ID"),
            ("FT1", 7, "Transaction Code"),
            ("FT1", 31, "Transaction Reference Key"),
            ("MRG", 1, "Prior Patient Identifier List"),
            ("MSA", 1, "Acknowledgment Code"),
            ("ERR", 3, "HL7 Error Code"),
            ("DG1", 3, "Diagnosis Code"),
            ("IN1", 36, "Policy Number"),
            ("IN1", 53, "VIP Indicator"),
            ("AL1", 3, "Allergen Code/Mnemonic/Description"),
            ("PD1", 4, "Patient Primary Care Provider"),
            ("NK1", 2, "Name"),
            ("NK1", 39, "VIP Indicator"),
            ("PV2", 3, "Admit Reason"),
            ("PV2", 49, "Notify Clergy Code"),
        ] {
            assert_eq!(
                field_name(segment, position),
                Some(name),
                "{segment}-{position}"
            );
        }
    }

    #[test]
    fn unknown_segments_and_positions_have_no_name() {
        assert_eq!(field_name("ZXY", 1), None);
        assert_eq!(field_name("PID", 0), None);
        assert_eq!(field_name("MSA", 7), None);
        assert_eq!(SEGMENTS.len(), 29);
    }
}
