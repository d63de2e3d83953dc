//! The DICOM upper layer as the store SCP reads it: arbitrary bytes cut
//! into PDUs under a maximum size, each association request answered by
//! the negotiation policy, each command set read and answered, and every
//! data value also read as an MPPS N-CREATE/N-SET data set in both little
//! endian syntaxes (with the N-CREATE/N-SET answer of its command).
#![no_main]

use ecko_protocol::dicom::mpps::{self, Request, Step};
use ecko_protocol::dicom::{negotiate, uids, wire, AcceptPolicy, Command, CommandField, Status};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let policy = AcceptPolicy {
        ae_title: "ECKO".into(),
        any_called_ae: ctl & 1 == 1,
        allowed_calling: if ctl & 2 == 2 { vec!["MOD".into()] } else { vec![] },
        extra_sop_classes: vec![],
        max_pdu: 16384,
        worklist: true,
        mpps: ctl & 1 == 0,
    };
    let mut buf = Vec::new();
    // Chunks of a size the control byte picks, as a socket would deliver.
    let chunk = usize::from(ctl >> 2).max(1);
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match wire::next_pdu(&mut buf, 16384) {
                Ok(Some(dicom_ul::pdu::Pdu::AssociationRQ(rq))) => {
                    if let Ok(n) = negotiate::answer(&rq, &policy) {
                        let _ = wire::encode(&dicom_ul::pdu::Pdu::AssociationAC(n.answer));
                    }
                }
                Ok(Some(dicom_ul::pdu::Pdu::PData { data })) => {
                    for v in data {
                        if let Ok(c) = Command::read(&v.data) {
                            let _ = c.response(CommandField::StoreRsp, Status::SUCCESS, c.error_comment.as_deref());
                            if let Some(r) = c.field.and_then(Request::of) {
                                let instance = mpps::instance_of(r, &c);
                                let _ = mpps::response(r, &c, instance, Status::SUCCESS, None);
                            }
                        }
                        for ts in [uids::IMPLICIT_VR_LE, uids::EXPLICIT_VR_LE] {
                            if let Ok(step) = Step::read(&v.data, ts) {
                                let _ = step.check(Request::Create);
                                let _ = Step::from_json(&step.to_json());
                            }
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
