//! The MPPS SCP (`mpps = true`): N-CREATE and N-SET of Modality Performed
//! Procedure Steps, each journalled as a message of type `MPPS` (the whole
//! step as it stands, see [`crate::journal::MppsOutcome`]) before the
//! answer is sent.
//!
//! Answers: `0000` once committed; `0111` an N-CREATE of a step that
//! exists; `0112` an N-SET of one that does not; `0110` an N-SET of a step
//! already `COMPLETED` or `DISCONTINUED` (the comment says which); `0106`
//! a status the request may not carry; `0110` a data set that does not
//! read or is over 1 MiB, or no route takes `MPPS`; `0213` (resource
//! limitation) when the journal refuses for now. An N-CREATE without an
//! instance UID gets one made here (`2.25.<UUID>`), named in the answer.

use super::Shared;
use crate::journal::{IngestError, MppsChange, MppsOutcome};
use ecko_message::Envelope;
use ecko_protocol::dicom::mpps::{self, Request, Step};
use ecko_protocol::dicom::{uids, AcceptedContext, Command, Status};

/// The most an MPPS data set may take: a few KiB in practice, more with a
/// long list of performed series.
const MAX_DATA_SET: usize = 1 << 20;

/// Out of resources for the moment (PS3.7 C.4: resource limitation).
const RESOURCE_LIMITATION: Status = Status(0x0213);

/// An N-CREATE or N-SET whose data set is arriving.
pub(super) struct Pending {
    request: Request,
    command: Command,
    context: AcceptedContext,
    data: Vec<u8>,
    too_big: bool,
}

impl Pending {
    /// Whether `command` is an N-CREATE or N-SET with a data set.
    pub(super) fn serves(command: &Command) -> bool {
        command.has_data_set && command.field.and_then(Request::of).is_some()
    }

    /// The request `command` is, if [`Pending::serves`] it.
    pub(super) fn start(command: &Command, context: &AcceptedContext) -> Option<Pending> {
        let request = command.field.and_then(Request::of)?;
        command.has_data_set.then(|| Pending {
            request,
            command: command.clone(),
            context: context.clone(),
            data: Vec::new(),
            too_big: false,
        })
    }

    pub(super) fn context_id(&self) -> u8 {
        self.context.id
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.data.len() + bytes.len() > MAX_DATA_SET {
            self.too_big = true;
            self.data = Vec::new();
        } else if !self.too_big {
            self.data.extend_from_slice(bytes);
        }
    }
}

/// A fresh UID for a step the modality did not name (PS3.5 B.2).
fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

impl Shared {
    /// The response command set to a complete request.
    pub(super) async fn mpps(&self, p: Pending, calling_ae: &str) -> Vec<u8> {
        let instance = match p.request {
            Request::Create => {
                Some(mpps::instance_of(p.request, &p.command).map_or_else(new_uid, str::to_string))
            }
            Request::Set => mpps::instance_of(p.request, &p.command).map(str::to_string),
        };
        let (status, comment) = self.mpps_answer(&p, instance.as_deref(), calling_ae).await;
        if status != Status::SUCCESS {
            tracing::warn!(endpoint = %self.endpoint, calling_ae, sop_instance = instance.as_deref().unwrap_or(""), status = format!("{:04X}", status.0), reason = comment.as_deref().unwrap_or(""), "MPPS request refused");
        }
        mpps::response(
            p.request,
            &p.command,
            instance.as_deref(),
            status,
            comment.as_deref(),
        )
    }

    async fn mpps_answer(
        &self,
        p: &Pending,
        instance: Option<&str>,
        calling_ae: &str,
    ) -> (Status, Option<String>) {
        let class = mpps::class_of(p.request, &p.command).unwrap_or_default();
        if class != mpps::SOP_CLASS || p.context.abstract_syntax != mpps::SOP_CLASS {
            return (
                Status::SOP_CLASS_NOT_SUPPORTED,
                Some(format!("SOP class {class} is not MPPS")),
            );
        }
        let Some(instance) = instance.filter(|i| uids::is_valid_uid(i)) else {
            return (
                mpps::NO_SUCH_INSTANCE,
                Some("no valid SOP instance UID".into()),
            );
        };
        if p.too_big {
            return (
                Status::PROCESSING_FAILURE,
                Some("data set over 1 MiB".into()),
            );
        }
        let mut step = match Step::read(&p.data, &p.context.transfer_syntax) {
            Ok(s) => s,
            Err(e) => return (Status::PROCESSING_FAILURE, Some(e.to_string())),
        };
        if let Err((status, why)) = step.check(p.request) {
            return (status, Some(why));
        }
        step.sop_instance = Some(instance.to_string());
        let envelope = Envelope {
            source: self.endpoint.clone(),
            dedup_key: None,
            message_type: mpps::MESSAGE_TYPE.to_string(),
            content_type: mpps::CONTENT_TYPE.to_string(),
            control_id: Some(instance.to_string()),
            patient_id: step.patient_id.clone(),
            payload: step.to_json(),
            ack: None,
            hints: Default::default(),
        };
        let change = match p.request {
            Request::Create => MppsChange::Create,
            Request::Set => MppsChange::Set,
        };
        self.cx.counters.received.inc();
        let recorded = match self.cx.route(envelope) {
            Ok((envelope, destinations)) => {
                self.cx
                    .journal
                    .record_mpps(
                        envelope,
                        destinations,
                        change,
                        instance.to_string(),
                        mpps::FINAL,
                        self.worklist.clone(),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match &recorded {
            Ok(MppsOutcome::Recorded(_)) => self.cx.counters.acknowledged.inc(),
            _ => self.cx.counters.refused.inc(),
        };
        match recorded {
            Ok(MppsOutcome::Recorded(receipt)) => {
                tracing::info!(endpoint = %self.endpoint, calling_ae, sop_instance = %instance, request = ?p.request, status = step.status.as_deref().unwrap_or(""), message_id = receipt.message_id, "MPPS step recorded");
                (Status::SUCCESS, None)
            }
            Ok(MppsOutcome::Duplicate) => (
                mpps::DUPLICATE_INSTANCE,
                Some("the performed procedure step exists".into()),
            ),
            Ok(MppsOutcome::NoSuchStep) => (
                mpps::NO_SUCH_INSTANCE,
                Some("no such performed procedure step".into()),
            ),
            Ok(MppsOutcome::Closed(status)) => (
                Status::PROCESSING_FAILURE,
                Some(format!("the step is {status} and may no longer be updated")),
            ),
            Err(e @ (IngestError::NoRoute { .. } | IngestError::Unmappable { .. })) => {
                (Status::PROCESSING_FAILURE, Some(e.to_string()))
            }
            Err(e) => (RESOURCE_LIMITATION, Some(e.to_string())),
        }
    }
}
