//! The DICOM upper layer as the store SCP reads it: arbitrary bytes cut
//! into PDUs under a maximum size, each association request answered by
//! the negotiation policy, each command set read and answered.
#![no_main]

use ecko_protocol::dicom::{negotiate, wire, AcceptPolicy, Command, CommandField, Status};
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
