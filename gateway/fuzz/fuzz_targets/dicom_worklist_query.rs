//! A Modality Worklist C-FIND identifier as the SCP reads it, in either
//! uncompressed syntax, matched against a step and answered.
#![no_main]

use ecko_protocol::dicom::uids::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use ecko_protocol::dicom::worklist::{Query, ScheduledStep};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let ts = if ctl & 1 == 1 { EXPLICIT_VR_LE } else { IMPLICIT_VR_LE };
    if let Ok(q) = Query::read(rest, ts) {
        let step = ScheduledStep {
            patient_name: "DOE^JOHN".into(),
            modality: "CT".into(),
            start_date: "20261204".into(),
            start_time: "0930".into(),
            ..Default::default()
        };
        let _ = q.matches(&step);
        let _ = q.start_range();
        let _ = q.response(&step, ts);
    }
});
