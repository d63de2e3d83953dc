//! The LIVD reader fed arbitrary bytes (FHIR JSON or CSV): rows or an
//! error, never a panic; every row it gives has a vendor code and a LOINC.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = ecko_fhir::livd::read(data) {
        for r in rows {
            assert!(!r.vendor_code.is_empty() && !r.loinc.is_empty());
            let _ = ecko_fhir::livd::is_loinc(&r.loinc);
        }
    }
});
