//! What a client posts to a `rest` listener's FHIR path, fed arbitrary
//! bytes: a checked resource or Bundle, or an error, never a panic; a
//! Bundle of requests splits into entries that are each a resource, or
//! into one-entry transactions that each hold one entry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(posted) = ecko_fhir::inbound::read(data) {
        assert!(!posted.resource_type.is_empty());
        if posted.is_request_bundle() {
            if let Ok(entries) = posted.entries() {
                for (resource_type, resource) in entries {
                    assert_eq!(resource["resourceType"].as_str(), Some(resource_type.as_str()));
                }
            }
            if let Ok(transactions) = posted.entry_transactions() {
                for (_, bundle) in transactions {
                    assert_eq!(bundle["type"], "transaction");
                    assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(1));
                }
            }
        }
    }
});
