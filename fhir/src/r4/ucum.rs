//! Units as senders write them → UCUM codes.
//!
//! A unit becomes a coded UCUM quantity only when this table knows it: the
//! first column is what analyzers and HIS send, the second the UCUM code
//! (case-sensitive, as UCUM is). Anything else keeps its text as
//! `Quantity.unit` without a system, because a wrong UCUM code is worse than
//! none. Spellings that are not UCUM but mean one UCUM unit unambiguously
//! (`mEq/L`, `mcg`, `µmol/L`, `IU/L`, `sec`, `10^9/L`) are translated.

/// (as sent, UCUM code)
const UNITS: &[(&str, &str)] = &[
    // Fractions and counts
    ("%", "%"),
    ("L/L", "L/L"),
    ("/uL", "/uL"),
    ("/nL", "/nL"),
    ("/mm3", "/mm3"),
    ("10*3/uL", "10*3/uL"),
    ("10*6/uL", "10*6/uL"),
    ("10*9/L", "10*9/L"),
    ("10*12/L", "10*12/L"),
    ("10^3/uL", "10*3/uL"),
    ("10^6/uL", "10*6/uL"),
    ("10^9/L", "10*9/L"),
    ("10^12/L", "10*12/L"),
    ("x10^9/L", "10*9/L"),
    ("x10^12/L", "10*12/L"),
    ("/[HPF]", "/[HPF]"),
    ("/[LPF]", "/[LPF]"),
    // Mass and mass concentration
    ("kg", "kg"),
    ("g", "g"),
    ("mg", "mg"),
    ("ug", "ug"),
    ("mcg", "ug"),
    ("µg", "ug"),
    ("ng", "ng"),
    ("pg", "pg"),
    ("g/L", "g/L"),
    ("g/dL", "g/dL"),
    ("mg/L", "mg/L"),
    ("mg/dL", "mg/dL"),
    ("ug/L", "ug/L"),
    ("µg/L", "ug/L"),
    ("ug/dL", "ug/dL"),
    ("ug/mL", "ug/mL"),
    ("ng/mL", "ng/mL"),
    ("ng/dL", "ng/dL"),
    ("ng/L", "ng/L"),
    ("pg/mL", "pg/mL"),
    ("mg/g", "mg/g"),
    ("mg/mmol", "mg/mmol"),
    ("mg/(24.h)", "mg/(24.h)"),
    ("g/(24.h)", "g/(24.h)"),
    // Substance concentration
    ("mol/L", "mol/L"),
    ("mmol/L", "mmol/L"),
    ("umol/L", "umol/L"),
    ("µmol/L", "umol/L"),
    ("nmol/L", "nmol/L"),
    ("pmol/L", "pmol/L"),
    ("mmol/mol", "mmol/mol"),
    ("umol/mmol", "umol/mmol"),
    ("mmol/(24.h)", "mmol/(24.h)"),
    ("mosm/kg", "mosm/kg"),
    ("mOsm/kg", "mosm/kg"),
    ("meq/L", "meq/L"),
    ("mEq/L", "meq/L"),
    ("meq", "meq"),
    ("mEq", "meq"),
    // Enzymes and international units
    ("U/L", "U/L"),
    ("U/mL", "U/mL"),
    ("kU/L", "kU/L"),
    ("[IU]/L", "[IU]/L"),
    ("IU/L", "[IU]/L"),
    ("[IU]/mL", "[IU]/mL"),
    ("IU/mL", "[IU]/mL"),
    ("m[IU]/L", "m[IU]/L"),
    ("mIU/L", "m[IU]/L"),
    ("u[IU]/mL", "u[IU]/mL"),
    ("uIU/mL", "u[IU]/mL"),
    ("[iU]", "[iU]"),
    ("[IU]", "[IU]"),
    // Volume and flow
    ("L", "L"),
    ("mL", "mL"),
    ("uL", "uL"),
    ("fL", "fL"),
    ("mL/h", "mL/h"),
    ("mL/min", "mL/min"),
    ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
    ("mL/min/1.73m2", "mL/min/{1.73_m2}"),
    // Doses
    ("mg/kg", "mg/kg"),
    ("ug/kg", "ug/kg"),
    ("mg/kg/d", "mg/kg/d"),
    ("mg/d", "mg/d"),
    ("ug/kg/min", "ug/kg/min"),
    ("ug/kg/h", "ug/kg/h"),
    ("mg/h", "mg/h"),
    ("[IU]/kg", "[IU]/kg"),
    ("U/kg", "U/kg"),
    ("U/h", "U/h"),
    ("mg/m2", "mg/m2"),
    // Time, rate, length, pressure, temperature, acidity
    ("s", "s"),
    ("sec", "s"),
    ("min", "min"),
    ("h", "h"),
    ("hr", "h"),
    ("d", "d"),
    ("/min", "/min"),
    ("{beats}/min", "{beats}/min"),
    ("mm/h", "mm/h"),
    ("m", "m"),
    ("cm", "cm"),
    ("mm", "mm"),
    ("um", "um"),
    ("m2", "m2"),
    ("kg/m2", "kg/m2"),
    ("mm[Hg]", "mm[Hg]"),
    ("mmHg", "mm[Hg]"),
    ("kPa", "kPa"),
    ("Cel", "Cel"),
    ("[degF]", "[degF]"),
    ("[pH]", "[pH]"),
    ("{ratio}", "{ratio}"),
    ("{INR}", "{INR}"),
    ("{index}", "{index}"),
];

/// The UCUM code for `unit` as sent, if it is one this table knows.
pub fn code(unit: &str) -> Option<&'static str> {
    let unit = unit.trim();
    UNITS
        .iter()
        .find(|(sent, _)| *sent == unit)
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_units_get_their_ucum_code_and_non_ucum_spellings_are_translated() {
        assert_eq!(code("mmol/L"), Some("mmol/L"));
        assert_eq!(code("mEq/L"), Some("meq/L"));
        assert_eq!(code("mcg"), Some("ug"));
        assert_eq!(code("mL/h"), Some("mL/h"));
        assert_eq!(code("mg/kg"), Some("mg/kg"));
        assert_eq!(code("IU/L"), Some("[IU]/L"));
        assert_eq!(code(" mg "), Some("mg"));
    }

    #[test]
    fn words_that_are_not_ucum_units_get_no_code() {
        assert_eq!(code("ratio"), None);
        assert_eq!(code("cells"), None);
        assert_eq!(code("MMOL/L"), None);
        assert_eq!(code(""), None);
    }

    #[test]
    fn every_code_in_the_table_maps_to_itself() {
        for (_, c) in UNITS {
            assert_eq!(code(c), Some(*c), "{c} must be in the table as sent");
        }
    }
}
