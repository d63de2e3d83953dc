//! One association: negotiation, then C-ECHO and C-STORE requests until
//! release or abort. The rules are in the module note of `sources::dicom`.

use super::mpps::Pending;
use super::store::Incoming;
use super::{AckNow, Shared};
use crate::journal::IngestError;
use crate::net::{Cut, PaceHandle, Reason};
use dicom_ul::pdu::{AbortRQServiceProviderReason, AbortRQSource, PDataValue, PDataValueType, Pdu};
use ecko_message::Envelope;
use ecko_protocol::dicom::worklist::{self, Query, ScheduledStep};
use ecko_protocol::dicom::{
    negotiate, record, wire, AcceptedContext, Command, CommandField, InstanceRecord, Negotiated,
    Status,
};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most a command set may take: they are a few hundred bytes.
const MAX_COMMAND: usize = 64 * 1024;

/// A C-FIND whose identifier is arriving.
struct Finding {
    command: Command,
    context: AcceptedContext,
    identifier: Vec<u8>,
}

/// Why an association ended other than by release.
enum End {
    Closed,
    Cut(Reason),
    Failed(String),
}

/// The object a C-STORE is receiving.
struct Receiving {
    command: Command,
    context: AcceptedContext,
    sop_class: String,
    sop_instance: String,
    /// `None` once writing failed or the object grew past its cap: the
    /// rest of its PDVs are read and dropped, and the answer is the error.
    file: Option<Incoming>,
    error: Option<(Status, String)>,
}

struct Association<'a, S> {
    shared: &'a Shared,
    stream: S,
    buf: Vec<u8>,
    pace: &'a PaceHandle,
    peer: SocketAddr,
    negotiated: Negotiated,
    command: Vec<u8>,
    command_context: Option<u8>,
    receiving: Option<Receiving>,
    finding: Option<Finding>,
    /// The N-CREATE or N-SET whose data set is arriving (`mpps`).
    mpps: Option<Pending>,
    stored: u64,
}

impl Shared {
    /// Serves one connection; the pacing reason when it was cut.
    pub(super) async fn serve_association<S: AsyncRead + AsyncWrite + Unpin + AckNow>(
        &self,
        mut stream: S,
        pace: &PaceHandle,
        peer: SocketAddr,
    ) -> Option<Reason> {
        let mut buf = Vec::with_capacity(16 * 1024);
        let max = self.policy.max_pdu;
        let first = tokio::time::timeout(
            self.association_timeout,
            read_pdu(&mut stream, &mut buf, max),
        )
        .await;
        let rq = match first {
            Err(_) => {
                tracing::warn!(endpoint = %self.endpoint, %peer, "no association request within the association timeout");
                return None;
            }
            Ok(Err(End::Cut(r))) => return Some(r),
            Ok(Err(End::Closed)) => return None,
            Ok(Err(End::Failed(e))) => {
                tracing::warn!(endpoint = %self.endpoint, %peer, error = %e, "unreadable association request");
                let _ = self
                    .write(
                        &mut stream,
                        &abort(AbortRQServiceProviderReason::UnrecognizedPdu),
                    )
                    .await;
                return None;
            }
            Ok(Ok(Pdu::AssociationRQ(rq))) => rq,
            Ok(Ok(other)) => {
                tracing::warn!(endpoint = %self.endpoint, %peer, pdu = pdu_name(&other), "expected an association request");
                let _ = self
                    .write(
                        &mut stream,
                        &abort(AbortRQServiceProviderReason::UnexpectedPdu),
                    )
                    .await;
                return None;
            }
        };
        pace.completed();
        let negotiated = match negotiate::answer(&rq, &self.policy) {
            Ok(n) => n,
            Err(refusal) => {
                tracing::warn!(endpoint = %self.endpoint, %peer, calling_ae = %rq.calling_ae_title.trim(), called_ae = %rq.called_ae_title.trim(), reason = %refusal, "association rejected");
                let _ = self
                    .write(&mut stream, &Pdu::AssociationRJ(refusal.rejection()))
                    .await;
                return None;
            }
        };
        if self
            .write(&mut stream, &Pdu::AssociationAC(negotiated.answer.clone()))
            .await
            .is_err()
        {
            return None;
        }
        tracing::info!(endpoint = %self.endpoint, %peer, calling_ae = %negotiated.calling_ae, contexts = negotiated.contexts.len(), "association accepted");
        let mut a = Association {
            shared: self,
            stream,
            buf,
            pace,
            peer,
            negotiated,
            command: Vec::new(),
            command_context: None,
            receiving: None,
            finding: None,
            mpps: None,
            stored: 0,
        };
        let end = a.run().await;
        let stored = a.stored;
        if let Some(r) = a.receiving.take() {
            if let Some(f) = r.file {
                f.discard().await;
            }
            tracing::warn!(endpoint = %self.endpoint, %peer, sop_instance = %r.sop_instance, "association ended inside an object: it was not stored and got no answer");
        }
        match end {
            None => {
                tracing::info!(endpoint = %self.endpoint, %peer, stored, "association released");
                None
            }
            Some(End::Cut(r)) => Some(r),
            Some(End::Closed) => {
                tracing::info!(endpoint = %self.endpoint, %peer, stored, "association closed by the peer without release");
                None
            }
            Some(End::Failed(e)) => {
                tracing::warn!(endpoint = %self.endpoint, %peer, stored, error = %e, "association aborted");
                None
            }
        }
    }

    async fn write<S: AsyncWrite + Unpin>(&self, stream: &mut S, pdu: &Pdu) -> Result<(), End> {
        let bytes = wire::encode(pdu).map_err(|e| End::Failed(e.to_string()))?;
        match tokio::time::timeout(self.write_timeout, stream.write_all(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Failed(e.to_string())),
            Err(_) => Err(End::Failed("writing to the peer timed out".into())),
        }
    }
}

fn abort(reason: AbortRQServiceProviderReason) -> Pdu {
    Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    }
}

fn pdu_name(p: &Pdu) -> &'static str {
    match p {
        Pdu::Unknown { .. } => "unknown",
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
    }
}

async fn read_pdu<S: AsyncRead + Unpin + AckNow>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max: u32,
) -> Result<Pdu, End> {
    loop {
        match wire::next_pdu(buf, max) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(End::Failed(format!("unreadable PDU: {e}"))),
        }
        buf.reserve(32 * 1024);
        stream.ack_now();
        match stream.read_buf(buf).await {
            Ok(0) => return Err(End::Closed),
            Ok(_) => {}
            Err(e) => {
                return Err(match Cut::of(&e) {
                    Some(r) => End::Cut(r),
                    None => End::Failed(e.to_string()),
                })
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + AckNow> Association<'_, S> {
    /// Runs until release (`None`) or the reason it ended otherwise.
    async fn run(&mut self) -> Option<End> {
        let shutdown = self.shared.cx.shutdown.clone();
        loop {
            let pdu = tokio::select! {
                biased;
                _ = shutdown.cancelled(), if self.receiving.is_none() => {
                    let _ = self.shared.write(&mut self.stream, &abort(AbortRQServiceProviderReason::ReasonNotSpecified)).await;
                    return Some(End::Failed("the gateway is shutting down".into()));
                }
                p = read_pdu(&mut self.stream, &mut self.buf, self.shared.policy.max_pdu) => p,
            };
            let pdu = match pdu {
                Ok(p) => p,
                Err(e) => return Some(e),
            };
            self.pace.completed();
            match pdu {
                Pdu::PData { data } => {
                    for pdv in data {
                        if let Err(e) = self.value(pdv).await {
                            let _ = self
                                .shared
                                .write(
                                    &mut self.stream,
                                    &abort(AbortRQServiceProviderReason::UnexpectedPduParameter),
                                )
                                .await;
                            return Some(e);
                        }
                    }
                }
                Pdu::ReleaseRQ => {
                    let _ = self.shared.write(&mut self.stream, &Pdu::ReleaseRP).await;
                    return None;
                }
                Pdu::AbortRQ { .. } => return Some(End::Failed("aborted by the peer".into())),
                other => {
                    let _ = self
                        .shared
                        .write(
                            &mut self.stream,
                            &abort(AbortRQServiceProviderReason::UnexpectedPdu),
                        )
                        .await;
                    return Some(End::Failed(format!("unexpected {}", pdu_name(&other))));
                }
            }
        }
    }

    fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.negotiated.contexts.iter().find(|c| c.id == id)
    }

    async fn value(&mut self, pdv: PDataValue) -> Result<(), End> {
        if self.context(pdv.presentation_context_id).is_none() {
            return Err(End::Failed(format!(
                "presentation context {} was not accepted",
                pdv.presentation_context_id
            )));
        }
        match pdv.value_type {
            PDataValueType::Command => {
                if self.receiving.is_some() || self.finding.is_some() || self.mpps.is_some() {
                    return Err(End::Failed("a command arrived inside a data set".into()));
                }
                if *self
                    .command_context
                    .get_or_insert(pdv.presentation_context_id)
                    != pdv.presentation_context_id
                {
                    return Err(End::Failed("a command's fragments changed context".into()));
                }
                if self.command.len() + pdv.data.len() > MAX_COMMAND {
                    return Err(End::Failed("a command set over 64 KiB".into()));
                }
                self.command.extend_from_slice(&pdv.data);
                if pdv.is_last {
                    let bytes = std::mem::take(&mut self.command);
                    let context = self
                        .command_context
                        .take()
                        .unwrap_or(pdv.presentation_context_id);
                    self.command_done(&bytes, context).await?;
                }
                Ok(())
            }
            PDataValueType::Data => {
                if let Some(f) = self.finding.as_mut() {
                    if f.context.id != pdv.presentation_context_id {
                        return Err(End::Failed("a data set's fragments changed context".into()));
                    }
                    if f.identifier.len() + pdv.data.len() > MAX_COMMAND {
                        return Err(End::Failed("a C-FIND identifier over 64 KiB".into()));
                    }
                    f.identifier.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        if let Some(f) = self.finding.take() {
                            self.find(f).await?;
                        }
                    }
                    return Ok(());
                }
                if let Some(p) = self.mpps.as_mut() {
                    if p.context_id() != pdv.presentation_context_id {
                        return Err(End::Failed("a data set's fragments changed context".into()));
                    }
                    p.push(&pdv.data);
                    if pdv.is_last {
                        if let Some(p) = self.mpps.take() {
                            let context = p.context_id();
                            let rsp = self.shared.mpps(p, &self.negotiated.calling_ae).await;
                            self.send_command(context, rsp).await?;
                        }
                    }
                    return Ok(());
                }
                let Some(r) = self.receiving.as_mut() else {
                    return Err(End::Failed("a data set arrived without a command".into()));
                };
                if r.context.id != pdv.presentation_context_id {
                    return Err(End::Failed("a data set's fragments changed context".into()));
                }
                if let Some(file) = r.file.as_mut() {
                    if file.size() + pdv.data.len() as u64 > self.shared.max_object_size {
                        r.error = Some((
                            Status::OUT_OF_RESOURCES,
                            format!("object over the {} byte limit", self.shared.max_object_size),
                        ));
                    } else if let Err(e) = file.write(&pdv.data).await {
                        r.error = Some((Status::OUT_OF_RESOURCES, e.to_string()));
                    }
                    if r.error.is_some() {
                        if let Some(f) = r.file.take() {
                            f.discard().await;
                        }
                    }
                }
                if pdv.is_last {
                    if let Some(r) = self.receiving.take() {
                        self.object_done(r).await?;
                    }
                }
                Ok(())
            }
        }
    }

    async fn respond(
        &mut self,
        context: u8,
        rq: &Command,
        field: CommandField,
        status: Status,
        comment: Option<&str>,
    ) -> Result<(), End> {
        self.send_command(context, rq.response(field, status, comment))
            .await
    }

    async fn send_command(&mut self, context: u8, data: Vec<u8>) -> Result<(), End> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type: PDataValueType::Command,
                is_last: true,
                data,
            }],
        };
        self.shared.write(&mut self.stream, &pdu).await
    }

    async fn command_done(&mut self, bytes: &[u8], context_id: u8) -> Result<(), End> {
        let command = Command::read(bytes).map_err(|e| End::Failed(e.to_string()))?;
        let Some(context) = self.context(context_id).cloned() else {
            return Err(End::Failed("unknown presentation context".into()));
        };
        match command.field {
            Some(CommandField::EchoRq) => {
                tracing::debug!(endpoint = %self.shared.endpoint, peer = %self.peer, "C-ECHO");
                self.respond(
                    context.id,
                    &command,
                    CommandField::EchoRsp,
                    Status::SUCCESS,
                    None,
                )
                .await
            }
            Some(CommandField::StoreRq) if command.has_data_set => {
                let sop_class = command.affected_sop_class.clone().unwrap_or_default();
                let sop_instance = command.affected_sop_instance.clone().unwrap_or_default();
                let mut error = None;
                if sop_class != context.abstract_syntax {
                    error = Some((
                        Status::SOP_CLASS_NOT_SUPPORTED,
                        format!(
                            "SOP class {sop_class} sent on a context for {}",
                            context.abstract_syntax
                        ),
                    ));
                } else if !ecko_protocol::dicom::uids::is_valid_uid(&sop_instance) {
                    error = Some((
                        Status::CANNOT_UNDERSTAND,
                        "no valid affected SOP instance UID".to_string(),
                    ));
                }
                let file = if error.is_none() {
                    match self
                        .shared
                        .store
                        .begin(
                            &sop_class,
                            &sop_instance,
                            &context.transfer_syntax,
                            &self.negotiated.calling_ae,
                        )
                        .await
                    {
                        Ok(f) => Some(f),
                        Err(e) => {
                            error = Some((Status::OUT_OF_RESOURCES, e.to_string()));
                            None
                        }
                    }
                } else {
                    None
                };
                self.receiving = Some(Receiving {
                    command,
                    context,
                    sop_class,
                    sop_instance,
                    file,
                    error,
                });
                Ok(())
            }
            Some(_) if self.shared.policy.mpps && Pending::serves(&command) => {
                self.mpps = Pending::start(&command, &context);
                Ok(())
            }
            Some(CommandField::FindRq)
                if command.has_data_set
                    && context.abstract_syntax == worklist::FIND_SOP_CLASS
                    && self.shared.worklist.is_some() =>
            {
                self.finding = Some(Finding {
                    command,
                    context,
                    identifier: Vec::new(),
                });
                Ok(())
            }
            Some(CommandField::Cancel) => {
                // A C-CANCEL of a query already answered: nothing to stop,
                // and a C-CANCEL has no response.
                tracing::debug!(endpoint = %self.shared.endpoint, peer = %self.peer, "C-CANCEL with no query running");
                Ok(())
            }
            Some(field) => {
                // Other commands are not served here: "unrecognized
                // operation", answered, so the peer does not hang.
                tracing::info!(endpoint = %self.shared.endpoint, peer = %self.peer, command = field.code(), "command not supported");
                let rsp = CommandField::Other(field.code() | 0x8000);
                if command.has_data_set {
                    return Err(End::Failed(
                        "a command this endpoint does not serve came with a data set".into(),
                    ));
                }
                self.respond(
                    context.id,
                    &command,
                    rsp,
                    Status(0x0211),
                    Some("operation not supported by this endpoint"),
                )
                .await
            }
            None => Err(End::Failed("a command without a command field".into())),
        }
    }

    async fn object_done(&mut self, r: Receiving) -> Result<(), End> {
        let context = r.context.id;
        let (status, comment) = match (r.file, r.error) {
            (_, Some((status, why))) => {
                tracing::warn!(endpoint = %self.shared.endpoint, peer = %self.peer, sop_instance = %r.sop_instance, status = format!("{:04X}", status.0), reason = %why, "object refused");
                (status, Some(why))
            }
            (None, None) => (
                Status::PROCESSING_FAILURE,
                Some("object not received".to_string()),
            ),
            (Some(file), None) => self.keep(file, &r.sop_class, &r.sop_instance).await,
        };
        self.respond(
            context,
            &r.command,
            CommandField::StoreRsp,
            status,
            comment.as_deref(),
        )
        .await
    }

    /// Stores and journals one complete object; the status to answer.
    async fn keep(
        &mut self,
        file: Incoming,
        sop_class: &str,
        sop_instance: &str,
    ) -> (Status, Option<String>) {
        let shared = self.shared;
        let _hold = shared.store.hold().await;
        let stored = match file.finish(&shared.store, sop_class, sop_instance).await {
            Ok(s) => s,
            Err(e) => {
                let status = if e.is_resources() {
                    Status::OUT_OF_RESOURCES
                } else {
                    Status::CANNOT_UNDERSTAND
                };
                tracing::warn!(endpoint = %shared.endpoint, peer = %self.peer, %sop_instance, error = %e, "object not stored");
                return (status, Some(e.to_string()));
            }
        };
        let record = InstanceRecord::new(
            stored.summary.clone(),
            stored.path.display().to_string(),
            stored.size,
            stored.sha256.clone(),
        );
        let envelope = Envelope {
            source: shared.endpoint.clone(),
            dedup_key: Some(sop_instance.to_string()),
            message_type: record::MESSAGE_TYPE.to_string(),
            content_type: record::CONTENT_TYPE.to_string(),
            control_id: Some(sop_instance.to_string()),
            patient_id: stored.summary.patient_id.clone(),
            payload: record.to_json(),
            ack: None,
            hints: Default::default(),
        };
        let study_uid = stored.summary.study_uid.clone();
        match shared.cx.ingest_dicom_object(envelope, study_uid).await {
            Ok(receipt) => {
                self.stored += 1;
                if stored.other_version && !receipt.duplicate {
                    tracing::warn!(endpoint = %shared.endpoint, peer = %self.peer, %sop_instance, message_id = receipt.message_id, "SOP instance received before with other content: both kept");
                    (
                        Status::DATA_SET_MISMATCH,
                        Some("SOP instance received before with other content; both kept".into()),
                    )
                } else {
                    tracing::info!(endpoint = %shared.endpoint, peer = %self.peer, calling_ae = %self.negotiated.calling_ae, %sop_instance, size = stored.size, message_id = receipt.message_id, duplicate = receipt.duplicate, "object stored");
                    (Status::SUCCESS, None)
                }
            }
            Err(e) => {
                stored.withdraw().await;
                let status = match &e {
                    IngestError::NoRoute { .. } | IngestError::Unmappable { .. } => {
                        Status::PROCESSING_FAILURE
                    }
                    _ => Status::OUT_OF_RESOURCES,
                };
                tracing::warn!(endpoint = %shared.endpoint, peer = %self.peer, %sop_instance, error = %e, "object refused by the journal");
                (status, Some(e.to_string()))
            }
        }
    }

    /// Answers a worklist C-FIND: one pending response per match, then the
    /// final status (see the module note of `sources::dicom`).
    async fn find(&mut self, f: Finding) -> Result<(), End> {
        let (status, comment) = self.matches(&f).await?;
        self.respond(
            f.context.id,
            &f.command,
            CommandField::FindRsp,
            status,
            comment.as_deref(),
        )
        .await
    }

    /// Sends the pending response of each match; the final status.
    async fn matches(&mut self, f: &Finding) -> Result<(Status, Option<String>), End> {
        let ctx = f.context.id;
        let rq = &f.command;
        let Some(worklist) = self.shared.worklist.clone() else {
            return Ok((Status::SOP_CLASS_NOT_SUPPORTED, None));
        };
        let query = match Query::read(&f.identifier, &f.context.transfer_syntax) {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(endpoint = %self.shared.endpoint, peer = %self.peer, error = %e, "worklist query refused");
                return Ok((Status(e.status()), Some(e.to_string())));
            }
        };
        tracing::debug!(endpoint = %self.shared.endpoint, peer = %self.peer, query = ?query, "worklist query");
        let most = self.shared.max_worklist_matches;
        let matcher = query.clone();
        let found = self
            .shared
            .cx
            .journal
            .find_worklist(&worklist, query.start_range(), most + 1, move |item| {
                serde_json::from_str::<ScheduledStep>(item)
                    .ok()
                    .filter(|s| matcher.matches(s))
            })
            .await;
        let steps = match found {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(endpoint = %self.shared.endpoint, peer = %self.peer, error = %e, "the worklist cannot be read");
                return Ok((
                    Status::OUT_OF_RESOURCES,
                    Some("the worklist cannot be read now".into()),
                ));
            }
        };
        let over = steps.len() > most;
        let mut sent = 0usize;
        for step in steps.iter().take(most) {
            if self.cancel_arrived(rq.message_id).await? {
                tracing::info!(endpoint = %self.shared.endpoint, peer = %self.peer, calling_ae = %self.negotiated.calling_ae, sent, "worklist query cancelled");
                return Ok((Status(worklist::CANCELLED), None));
            }
            let (identifier, unsupported) = query.response(step, &f.context.transfer_syntax);
            let status = if unsupported {
                worklist::PENDING_KEYS_UNSUPPORTED
            } else {
                worklist::PENDING
            };
            let command = rq.response_with(CommandField::FindRsp, Status(status), None, true);
            self.send_values(ctx, PDataValueType::Command, command)
                .await?;
            self.send_values(ctx, PDataValueType::Data, identifier)
                .await?;
            sent += 1;
        }
        tracing::info!(endpoint = %self.shared.endpoint, peer = %self.peer, calling_ae = %self.negotiated.calling_ae, matches = sent, more = over, "worklist query answered");
        if over {
            let why = format!("more than {most} matches; narrow the query");
            return Ok((Status::OUT_OF_RESOURCES, Some(why)));
        }
        Ok((Status::SUCCESS, None))
    }

    /// Sends `bytes` as values of `kind` on `context`, in PDUs no larger
    /// than the peer takes.
    async fn send_values(
        &mut self,
        context: u8,
        kind: PDataValueType,
        bytes: Vec<u8>,
    ) -> Result<(), End> {
        let capacity = wire::pdv_capacity(self.negotiated.peer_max_pdu);
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(capacity).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: kind.clone(),
                    is_last: i == last,
                    data: chunk.to_vec(),
                }],
            };
            self.shared.write(&mut self.stream, &pdu).await?;
        }
        Ok(())
    }

    /// Whether a C-CANCEL of query `message_id` has arrived, without
    /// waiting for one. Anything else arriving in the middle of a query is
    /// a protocol error (no asynchronous operations are negotiated).
    async fn cancel_arrived(&mut self, message_id: u16) -> Result<bool, End> {
        let max = self.shared.policy.max_pdu;
        let pdu = tokio::select! {
            biased;
            p = read_pdu(&mut self.stream, &mut self.buf, max) => p?,
            _ = std::future::ready(()) => return Ok(false),
        };
        self.pace.completed();
        let cancel = match &pdu {
            Pdu::PData { data } => {
                !data.is_empty()
                    && data.iter().all(|v| {
                        v.value_type == PDataValueType::Command
                            && v.is_last
                            && Command::read(&v.data).is_ok_and(|c| {
                                c.field == Some(CommandField::Cancel)
                                    && c.responded_to == Some(message_id)
                            })
                    })
            }
            _ => false,
        };
        if cancel {
            return Ok(true);
        }
        if let Pdu::AbortRQ { .. } = pdu {
            return Err(End::Failed("aborted by the peer".into()));
        }
        let _ = self
            .shared
            .write(
                &mut self.stream,
                &abort(AbortRQServiceProviderReason::UnexpectedPdu),
            )
            .await;
        Err(End::Failed(format!(
            "{} arrived in the middle of a C-FIND",
            pdu_name(&pdu)
        )))
    }
}
