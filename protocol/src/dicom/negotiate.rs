//! Which associations are accepted, and with which presentation contexts.
//!
//! An A-ASSOCIATE-RQ is answered from the endpoint's policy alone:
//!
//! - The called AE title must be ours, unless the policy accepts any
//!   (`Refusal::CalledAeTitle` otherwise: "called AE title not
//!   recognized", permanent).
//! - The calling AE title must be in the allowed list when there is one
//!   ("calling AE title not recognized", permanent).
//! - Protocol version 1 and the DICOM application context, or a permanent
//!   rejection naming which.
//! - Each presentation context is accepted when its abstract syntax is
//!   verification or an accepted storage class, with the first transfer
//!   syntax of the sender's list that we know: the sender's preference is
//!   kept, so nothing is transcoded. Others are answered "abstract syntax
//!   not supported" or "transfer syntaxes not supported", and the
//!   association goes on with the rest; a sender offering nothing
//!   acceptable gets an association it cannot use, which is what the
//!   standard asks (PS3.8 9.3.3.2).
//! - The largest PDU we take is ours to say; what we send is bounded by the
//!   sender's maximum (0 means unlimited, which we cap at our own).

use super::{uids, worklist};
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};

/// What an endpoint accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptPolicy {
    /// Our AE title.
    pub ae_title: String,
    /// Accept an association whatever AE title it calls.
    pub any_called_ae: bool,
    /// Calling AE titles allowed; empty: any.
    pub allowed_calling: Vec<String>,
    /// Storage SOP classes accepted beyond the built-in list.
    pub extra_sop_classes: Vec<String>,
    /// The largest PDU we receive.
    pub max_pdu: u32,
    /// Modality Worklist C-FIND is served.
    pub worklist: bool,
    /// Accept Modality Performed Procedure Step (N-CREATE, N-SET), in
    /// Implicit or Explicit VR Little Endian only.
    pub mpps: bool,
}

/// One accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// An accepted association: the answer to send and what it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub answer: AssociationAC,
    pub contexts: Vec<AcceptedContext>,
    pub calling_ae: String,
    pub called_ae: String,
    /// The largest PDU the sender takes from us.
    pub peer_max_pdu: u32,
}

/// Why an association was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("called AE title `{0}` is not ours")]
    CalledAeTitle(String),
    #[error("calling AE title `{0}` is not allowed")]
    CallingAeTitle(String),
    #[error("protocol version {0} is not supported")]
    ProtocolVersion(u16),
    #[error("application context `{0}` is not DICOM's")]
    ApplicationContext(String),
}

impl Refusal {
    /// The A-ASSOCIATE-RJ that says so.
    pub fn rejection(&self) -> AssociationRJ {
        let source = match self {
            Refusal::CalledAeTitle(_) => AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ),
            Refusal::CallingAeTitle(_) => AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            ),
            Refusal::ProtocolVersion(_) => AssociationRJSource::ServiceProviderASCE(
                AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
            ),
            Refusal::ApplicationContext(_) => AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
            ),
        };
        AssociationRJ {
            result: AssociationRJResult::Permanent,
            source,
        }
    }
}

/// Smallest and largest PDU sizes a peer may ask for (PS3.8 D.1).
const MIN_PDU: u32 = 1024;
const MAX_PDU: u32 = 16 << 20;

/// The answer to `rq` under `policy`.
pub fn answer(rq: &AssociationRQ, policy: &AcceptPolicy) -> Result<Negotiated, Refusal> {
    let called = rq.called_ae_title.trim().to_string();
    let calling = rq.calling_ae_title.trim().to_string();
    if rq.protocol_version & 1 == 0 {
        return Err(Refusal::ProtocolVersion(rq.protocol_version));
    }
    if uids::trim(&rq.application_context_name) != uids::APPLICATION_CONTEXT {
        return Err(Refusal::ApplicationContext(
            rq.application_context_name.clone(),
        ));
    }
    if !policy.any_called_ae && called != policy.ae_title.trim() {
        return Err(Refusal::CalledAeTitle(called));
    }
    if !policy.allowed_calling.is_empty()
        && !policy.allowed_calling.iter().any(|a| a.trim() == calling)
    {
        return Err(Refusal::CallingAeTitle(calling));
    }
    let mut peer_max_pdu = MAX_PDU.min(policy.max_pdu.max(MIN_PDU));
    for item in &rq.user_variables {
        if let UserVariableItem::MaxLength(n) = item {
            if *n != 0 {
                peer_max_pdu = (*n).clamp(MIN_PDU, MAX_PDU);
            }
        }
    }
    let mut results = Vec::new();
    let mut contexts = Vec::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = uids::trim(&pc.abstract_syntax).to_string();
        let known_class = abstract_syntax == uids::VERIFICATION
            || uids::is_storage_class(&abstract_syntax)
            || policy
                .extra_sop_classes
                .iter()
                .any(|c| c == &abstract_syntax);
        // A query's identifier is read and answered by us, so only the
        // uncompressed little endian syntaxes are taken for it.
        let is_worklist = policy.worklist && abstract_syntax == worklist::FIND_SOP_CLASS;

        let is_mpps = policy.mpps && abstract_syntax == super::mpps::SOP_CLASS;
        let known_class = known_class || is_worklist || is_mpps;
        let chosen = pc
            .transfer_syntaxes
            .iter()
            .map(|t| uids::trim(t))
            .find(|t| {
                if is_worklist || is_mpps {
                    *t == uids::EXPLICIT_VR_LE || *t == uids::IMPLICIT_VR_LE
                } else {
                    uids::transfer_syntax_name(t).is_some()
                }
            });
        let (reason, ts) = match (known_class, chosen) {
            (false, _) => (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                uids::IMPLICIT_VR_LE.to_string(),
            ),
            (true, None) => (
                PresentationContextResultReason::TransferSyntaxesNotSupported,
                uids::IMPLICIT_VR_LE.to_string(),
            ),
            (true, Some(ts)) => {
                contexts.push(AcceptedContext {
                    id: pc.id,
                    abstract_syntax: abstract_syntax.clone(),
                    transfer_syntax: ts.to_string(),
                });
                (PresentationContextResultReason::Acceptance, ts.to_string())
            }
        };
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax: ts,
        });
    }
    let answer = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: uids::APPLICATION_CONTEXT.to_string(),
        presentation_contexts: results,
        user_variables: vec![
            UserVariableItem::MaxLength(policy.max_pdu),
            UserVariableItem::ImplementationClassUID(uids::IMPLEMENTATION_CLASS.to_string()),
            UserVariableItem::ImplementationVersionName(uids::IMPLEMENTATION_VERSION.to_string()),
        ],
    };
    Ok(Negotiated {
        answer,
        contexts,
        calling_ae: calling,
        called_ae: called,
        peer_max_pdu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    fn policy() -> AcceptPolicy {
        AcceptPolicy {
            ae_title: "ECKO".into(),
            any_called_ae: false,
            allowed_calling: vec![],
            extra_sop_classes: vec![],
            max_pdu: 65536,
            worklist: false,
            mpps: false,
        }
    }

    #[test]
    fn the_worklist_is_offered_only_when_served_and_only_uncompressed() {
        let contexts = vec![(
            1,
            worklist::FIND_SOP_CLASS,
            vec![JPEG_LOSSLESS, uids::EXPLICIT_VR_LE, uids::IMPLICIT_VR_LE],
        )];
        let off = answer(&rq("CT1", "ECKO", contexts.clone()), &policy()).unwrap();
        assert!(off.contexts.is_empty(), "no worklist configured: refused");
        let served = AcceptPolicy {
            worklist: true,
            ..policy()
        };
        let on = answer(&rq("CT1", "ECKO", contexts), &served).unwrap();
        assert_eq!(on.contexts.len(), 1);
        assert_eq!(on.contexts[0].transfer_syntax, uids::EXPLICIT_VR_LE);
    }

    fn rq(calling: &str, called: &str, contexts: Vec<(u8, &str, Vec<&str>)>) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: calling.into(),
            called_ae_title: called.into(),
            application_context_name: uids::APPLICATION_CONTEXT.into(),
            presentation_contexts: contexts
                .into_iter()
                .map(|(id, a, ts)| PresentationContextProposed {
                    id,
                    abstract_syntax: a.into(),
                    transfer_syntaxes: ts.into_iter().map(String::from).collect(),
                })
                .collect(),
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        }
    }

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.70";

    #[test]
    fn the_senders_first_known_transfer_syntax_is_accepted_so_nothing_is_transcoded() {
        let n = answer(
            &rq(
                "MOD",
                "ECKO",
                vec![(
                    1,
                    CT,
                    vec!["1.2.3.4.5", JPEG_LOSSLESS, uids::EXPLICIT_VR_LE],
                )],
            ),
            &policy(),
        )
        .unwrap();
        assert_eq!(n.contexts.len(), 1);
        assert_eq!(n.contexts[0].transfer_syntax, JPEG_LOSSLESS);
        assert_eq!(
            n.answer.presentation_contexts[0].reason,
            PresentationContextResultReason::Acceptance
        );
        assert_eq!(n.peer_max_pdu, 16384);
    }

    #[test]
    fn an_unknown_sop_class_is_refused_per_context_and_the_rest_accepted() {
        let n = answer(
            &rq(
                "MOD",
                "ECKO",
                vec![
                    (1, "1.2.3.999", vec![uids::IMPLICIT_VR_LE]),
                    (3, uids::VERIFICATION, vec![uids::IMPLICIT_VR_LE]),
                    (5, CT, vec!["9.9.9"]),
                ],
            ),
            &policy(),
        )
        .unwrap();
        let reasons: Vec<_> = n
            .answer
            .presentation_contexts
            .iter()
            .map(|r| r.reason.clone())
            .collect();
        assert_eq!(
            reasons,
            vec![
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                PresentationContextResultReason::Acceptance,
                PresentationContextResultReason::TransferSyntaxesNotSupported,
            ]
        );
        assert_eq!(n.contexts.iter().map(|c| c.id).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn mpps_is_accepted_only_where_the_endpoint_serves_it_and_only_in_little_endian() {
        let contexts = || {
            vec![
                (
                    1,
                    super::super::mpps::SOP_CLASS,
                    vec![JPEG_LOSSLESS, uids::EXPLICIT_VR_LE],
                ),
                (3, super::super::mpps::SOP_CLASS, vec![JPEG_LOSSLESS]),
            ]
        };
        let off = answer(&rq("MOD", "ECKO", contexts()), &policy()).unwrap();
        assert!(off.contexts.is_empty());
        let mut p = policy();
        p.mpps = true;
        let on = answer(&rq("MOD", "ECKO", contexts()), &p).unwrap();
        assert_eq!(on.contexts.len(), 1);
        assert_eq!(on.contexts[0].transfer_syntax, uids::EXPLICIT_VR_LE);
        assert_eq!(
            on.answer.presentation_contexts[1].reason,
            PresentationContextResultReason::TransferSyntaxesNotSupported
        );
    }

    #[test]
    fn a_wrong_called_ae_title_or_a_calling_title_not_allowed_is_rejected_permanently() {
        assert_eq!(
            answer(&rq("MOD", "OTHER", vec![]), &policy()).unwrap_err(),
            Refusal::CalledAeTitle("OTHER".into())
        );
        let mut p = policy();
        p.allowed_calling = vec!["CT1".into()];
        let e = answer(&rq("MR1", "ECKO", vec![]), &p).unwrap_err();
        assert_eq!(e, Refusal::CallingAeTitle("MR1".into()));
        assert_eq!(e.rejection().result, AssociationRJResult::Permanent);
        assert!(
            answer(&rq("CT1  ", "ECKO ", vec![]), &p).is_ok(),
            "padding is not part of a title"
        );
        p.any_called_ae = true;
        assert!(answer(&rq("CT1", "WHATEVER", vec![]), &p).is_ok());
    }
}
