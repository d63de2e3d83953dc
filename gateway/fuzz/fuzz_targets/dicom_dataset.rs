//! The header of a stored DICOM object as the journal indexes it: any
//! bytes after the preamble, read until the pixel data's group.
#![no_main]

use ecko_protocol::dicom::InstanceSummary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = InstanceSummary::read(data) {
        let _ = s.matches_request("1.2.840.10008.5.1.4.1.1.7", "1.2.3");
    }
});
