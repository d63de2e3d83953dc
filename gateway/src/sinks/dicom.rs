//! Forwards stored DICOM objects to a PACS by C-STORE (the SCU side).
//!
//! A batch is one association: its presentation contexts are the
//! (SOP class, transfer syntax) pairs of the objects in it, each object
//! offered exactly as it was received, so nothing is transcoded. Each
//! object's file is read from where its record says, streamed in P-DATA
//! values no larger than the PACS accepts, and hashed on the way: if the
//! bytes are not those the journal recorded, the association is aborted
//! before the last fragment, so the PACS never stores a damaged object.
//!
//! Each response status decides its object: success and warnings
//! (B000–BFFF) are delivered; out of resources (A7xx) and processing
//! failures are tried again later; any other failure is permanent (the
//! dead letter keeps the PACS's status and comment). A refused or lost
//! association is retried for the whole batch; a PACS that accepts the
//! association but not an object's SOP class or transfer syntax makes that
//! object a dead letter. Order within a lane is kept: after the first
//! object that is not delivered, the rest of the batch is not attempted.

use super::{Delivery, Outcome, Sink};
use crate::config::DicomConfig;
use dicom_ul::pdu::{
    AssociationRQ, PDataValue, PDataValueType, Pdu, PresentationContextProposed,
    PresentationContextResultReason, UserVariableItem,
};
use ecko_protocol::dicom::{command, uids, wire, Command, InstanceRecord, Status};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct DicomSink {
    endpoint: String,
    address: String,
    ae_title: String,
    peer_ae_title: String,
    max_pdu: u32,
    connect_timeout: Duration,
    dimse_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Association(String),
    #[error("{0}")]
    Object(String),
    /// The object's file changed since it was received: the association
    /// was aborted before its last fragment.
    #[error("{0}")]
    Damaged(String),
}

impl DicomSink {
    pub fn new(endpoint: &str, config: &DicomConfig) -> Self {
        DicomSink {
            endpoint: endpoint.to_string(),
            address: config.connect.clone().unwrap_or_default(),
            ae_title: config.ae_title.clone(),
            peer_ae_title: config.peer_ae_title.clone(),
            max_pdu: config.max_pdu_bytes(),
            connect_timeout: config.connect_timeout.0,
            dimse_timeout: config.dimse_timeout.0,
        }
    }
}

/// Where the data set starts in a file the SCP wrote: after the preamble,
/// `DICM` and the file meta group, whose length is its first element.
fn data_set_offset(head: &[u8]) -> Option<u64> {
    if head.len() < 144 || &head[128..132] != b"DICM" || head[132..134] != [2, 0] {
        return None;
    }
    let len = u32::from_le_bytes(head[140..144].try_into().ok()?);
    Some(144 + u64::from(len))
}

struct Link {
    stream: TcpStream,
    buf: Vec<u8>,
    peer_max_pdu: u32,
    /// Accepted contexts: (id, SOP class, transfer syntax).
    contexts: Vec<(u8, String, String)>,
    next_message_id: u16,
}

impl DicomSink {
    async fn read(&self, link: &mut Link) -> Result<Pdu, Failure> {
        let wait = async {
            loop {
                match wire::next_pdu(&mut link.buf, self.max_pdu) {
                    Ok(Some(p)) => return Ok(p),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Failure::Association(format!(
                            "unreadable PDU from the PACS: {e}"
                        )))
                    }
                }
                link.buf.reserve(32 * 1024);
                // The PACS's answer must not wait for our delayed ACK of
                // its last one (see `sources::dicom::AckNow`).
                let _ = socket2::SockRef::from(&link.stream).set_tcp_quickack(true);
                match link.stream.read_buf(&mut link.buf).await {
                    Ok(0) => {
                        return Err(Failure::Association(
                            "the PACS closed the connection".into(),
                        ))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(Failure::Association(format!("reading from the PACS: {e}")))
                    }
                }
            }
        };
        tokio::time::timeout(self.dimse_timeout, wait)
            .await
            .map_err(|_| {
                Failure::Association(format!(
                    "no answer from the PACS within {:?}",
                    self.dimse_timeout
                ))
            })?
    }

    async fn send(&self, link: &mut Link, pdu: &Pdu) -> Result<(), Failure> {
        let bytes = wire::encode(pdu).map_err(|e| Failure::Association(e.to_string()))?;
        tokio::time::timeout(self.dimse_timeout, link.stream.write_all(&bytes))
            .await
            .map_err(|_| Failure::Association("writing to the PACS timed out".into()))?
            .map_err(|e| Failure::Association(format!("writing to the PACS: {e}")))
    }

    async fn associate(&self, wanted: &[(String, String)]) -> Result<Link, Failure> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| Failure::Association(format!("connecting to {} timed out", self.address)))?
            .map_err(|e| {
                Failure::Association(format!("cannot connect to {}: {e}", self.address))
            })?;
        let _ = stream.set_nodelay(true);
        let proposed: Vec<_> = wanted
            .iter()
            .enumerate()
            .map(|(i, (class, ts))| PresentationContextProposed {
                id: u8::try_from(i * 2 + 1).unwrap_or(255),
                abstract_syntax: class.clone(),
                transfer_syntaxes: vec![ts.clone()],
            })
            .collect();
        let rq = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: self.ae_title.clone(),
            called_ae_title: self.peer_ae_title.clone(),
            application_context_name: uids::APPLICATION_CONTEXT.to_string(),
            presentation_contexts: proposed.clone(),
            user_variables: vec![
                UserVariableItem::MaxLength(self.max_pdu),
                UserVariableItem::ImplementationClassUID(uids::IMPLEMENTATION_CLASS.to_string()),
                UserVariableItem::ImplementationVersionName(
                    uids::IMPLEMENTATION_VERSION.to_string(),
                ),
            ],
        };
        let mut link = Link {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            peer_max_pdu: 16 * 1024,
            contexts: Vec::new(),
            next_message_id: 1,
        };
        self.send(&mut link, &Pdu::AssociationRQ(rq)).await?;
        match self.read(&mut link).await? {
            Pdu::AssociationAC(ac) => {
                for item in &ac.user_variables {
                    if let UserVariableItem::MaxLength(n) = item {
                        link.peer_max_pdu = if *n == 0 {
                            4 << 20
                        } else {
                            (*n).clamp(1024, 4 << 20)
                        };
                    }
                }
                for r in &ac.presentation_contexts {
                    if r.reason == PresentationContextResultReason::Acceptance {
                        if let Some(p) = proposed.iter().find(|p| p.id == r.id) {
                            link.contexts.push((
                                r.id,
                                p.abstract_syntax.clone(),
                                p.transfer_syntaxes[0].clone(),
                            ));
                        }
                    }
                }
                Ok(link)
            }
            Pdu::AssociationRJ(rj) => Err(Failure::Association(format!(
                "the PACS rejected the association: {:?}",
                rj.source
            ))),
            other => Err(Failure::Association(format!(
                "unexpected answer to the association request: {other:?}"
            ))),
        }
    }

    /// Sends one object; its status.
    async fn store(&self, link: &mut Link, record: &InstanceRecord) -> Result<Status, Failure> {
        let Some(context) = link
            .contexts
            .iter()
            .find(|(_, c, t)| *c == record.sop_class && *t == record.transfer_syntax)
            .map(|(id, _, _)| *id)
        else {
            return Err(Failure::Object(format!(
                "the PACS does not accept SOP class {} in transfer syntax {}",
                record.sop_class, record.transfer_syntax
            )));
        };
        let mut file = tokio::fs::File::open(&record.file).await.map_err(|e| {
            Failure::Object(format!(
                "cannot open the stored object {}: {e}",
                record.file
            ))
        })?;
        let mut head = vec![0u8; 144];
        file.read_exact(&mut head).await.map_err(|e| {
            Failure::Object(format!(
                "the stored object {} is truncated: {e}",
                record.file
            ))
        })?;
        let offset = data_set_offset(&head).ok_or_else(|| {
            Failure::Object(format!("{} is not a stored DICOM object", record.file))
        })?;
        let mut hasher = Sha256::new();
        hasher.update(&head);
        let mut rest_of_header = vec![0u8; usize::try_from(offset - 144).unwrap_or(0)];
        file.read_exact(&mut rest_of_header).await.map_err(|e| {
            Failure::Object(format!(
                "the stored object {} is truncated: {e}",
                record.file
            ))
        })?;
        hasher.update(&rest_of_header);
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Failure::Object(e.to_string()))?;

        let message_id = link.next_message_id;
        link.next_message_id = link.next_message_id.wrapping_add(1).max(1);
        let rq = command::store_request(message_id, &record.sop_class, &record.sop_instance);
        self.send(
            link,
            &Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: rq,
                }],
            },
        )
        .await?;

        let capacity = wire::pdv_capacity(link.peer_max_pdu);
        let mut sent = offset;
        let mut chunk = vec![0u8; capacity];
        let mut pending: Option<Vec<u8>> = None;
        loop {
            let n = read_full(&mut file, &mut chunk)
                .await
                .map_err(|e| Failure::Object(format!("reading {}: {e}", record.file)))?;
            if n == 0 {
                break;
            }
            hasher.update(&chunk[..n]);
            sent += n as u64;
            // Each fragment goes out once the next is read, so the last
            // one is known as last and is held back until the hash checks.
            if let Some(data) = pending.replace(chunk[..n].to_vec()) {
                self.send(
                    link,
                    &Pdu::PData {
                        data: vec![PDataValue {
                            presentation_context_id: context,
                            value_type: PDataValueType::Data,
                            is_last: false,
                            data,
                        }],
                    },
                )
                .await?;
            }
        }
        let digest = hex::encode(hasher.finalize());
        if digest != record.sha256 || sent != record.size {
            let _ = self
                .send(
                    link,
                    &Pdu::AbortRQ {
                        source: dicom_ul::pdu::AbortRQSource::ServiceUser,
                    },
                )
                .await;
            return Err(Failure::Damaged(format!(
                "the stored object {} is not what was received (SHA-256 or size differs); not sent",
                record.file
            )));
        }
        let last = pending.unwrap_or_default();
        self.send(
            link,
            &Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Data,
                    is_last: true,
                    data: last,
                }],
            },
        )
        .await?;

        let mut response = Vec::new();
        loop {
            match self.read(link).await? {
                Pdu::PData { data } => {
                    for v in data {
                        if v.value_type == PDataValueType::Command {
                            response.extend_from_slice(&v.data);
                            if v.is_last {
                                let rsp = Command::read(&response).map_err(|e| {
                                    Failure::Association(format!(
                                        "unreadable C-STORE response: {e}"
                                    ))
                                })?;
                                if rsp.responded_to != Some(message_id) {
                                    return Err(Failure::Association(
                                        "the PACS answered another message id".into(),
                                    ));
                                }
                                let status = rsp.status.ok_or_else(|| {
                                    Failure::Association(
                                        "a C-STORE response without a status".into(),
                                    )
                                })?;
                                if let Some(c) = rsp.error_comment {
                                    tracing::info!(endpoint = %self.endpoint, sop_instance = %record.sop_instance, status = format!("{:04X}", status.0), comment = %c, "PACS comment");
                                }
                                return Ok(status);
                            }
                        }
                    }
                }
                Pdu::AbortRQ { .. } => {
                    return Err(Failure::Association(
                        "the PACS aborted the association".into(),
                    ))
                }
                other => {
                    return Err(Failure::Association(format!(
                        "unexpected {other:?} while waiting for a C-STORE response"
                    )))
                }
            }
        }
    }

    /// C-ECHO: whether the PACS answers, for "test connection".
    pub async fn echo(&self) -> Result<String, String> {
        let verification = [(
            uids::VERIFICATION.to_string(),
            uids::IMPLICIT_VR_LE.to_string(),
        )];
        let mut link = self
            .associate(&verification)
            .await
            .map_err(|e| e.to_string())?;
        let Some((context, _, _)) = link.contexts.first().cloned() else {
            return Err("the PACS does not accept verification".into());
        };
        let rq = command::echo_request(1);
        self.send(
            &mut link,
            &Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: context,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: rq,
                }],
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let answer = self.read(&mut link).await.map_err(|e| e.to_string())?;
        let status = match answer {
            Pdu::PData { data } => data
                .iter()
                .find(|v| v.value_type == PDataValueType::Command)
                .and_then(|v| Command::read(&v.data).ok())
                .and_then(|c| c.status),
            _ => None,
        };
        self.release(link).await;
        match status {
            Some(s) if s.is_success() => Ok(format!(
                "{} at {} answered C-ECHO",
                self.peer_ae_title, self.address
            )),
            Some(s) => Err(format!("C-ECHO status {:04X}", s.0)),
            None => Err("no C-ECHO response".into()),
        }
    }

    async fn release(&self, mut link: Link) {
        if self.send(&mut link, &Pdu::ReleaseRQ).await.is_ok() {
            let _ = self.read(&mut link).await;
        }
    }
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

impl Sink for DicomSink {
    fn max_batch(&self) -> usize {
        32
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let records: Vec<Result<InstanceRecord, String>> = batch
            .iter()
            .map(|d| InstanceRecord::from_json(&d.payload.to_bytes()).map_err(|e| e.to_string()))
            .collect();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for r in records.iter().flatten() {
            let pair = (r.sop_class.clone(), r.transfer_syntax.clone());
            if !wanted.contains(&pair) && wanted.len() < 128 {
                wanted.push(pair);
            }
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut link = None;
        if !wanted.is_empty() {
            match self.associate(&wanted).await {
                Ok(l) => link = Some(l),
                Err(e) => {
                    return batch
                        .iter()
                        .enumerate()
                        .map(|(i, _)| {
                            if i == 0 {
                                Outcome::Retryable {
                                    error: e.to_string(),
                                    retry_after: None,
                                }
                            } else {
                                Outcome::NotAttempted
                            }
                        })
                        .collect();
                }
            }
        }
        for r in records {
            if matches!(outcomes.last(), Some(o) if !matches!(o, Outcome::Delivered { .. })) {
                outcomes.push(Outcome::NotAttempted);
                continue;
            }
            let record = match r {
                Ok(r) => r,
                Err(e) => {
                    outcomes.push(Outcome::Permanent { error: e });
                    continue;
                }
            };
            let Some(l) = link.as_mut() else {
                outcomes.push(Outcome::NotAttempted);
                continue;
            };
            let outcome = match self.store(l, &record).await {
                Ok(s) if s.is_success() || s.is_warning() => Outcome::Delivered {
                    response: Some(format!(
                        "C-STORE status {:04X} from {}",
                        s.0, self.peer_ae_title
                    )),
                },
                Ok(s) if s.is_transient_failure() => Outcome::Retryable {
                    error: format!("the PACS answered C-STORE status {:04X}", s.0),
                    retry_after: None,
                },
                Ok(s) => Outcome::Permanent {
                    error: format!("the PACS refused the object: C-STORE status {:04X}", s.0),
                },
                Err(Failure::Object(e)) => Outcome::Permanent { error: e },
                Err(Failure::Damaged(e)) => {
                    link = None;
                    Outcome::Permanent { error: e }
                }
                Err(Failure::Association(e)) => {
                    link = None;
                    Outcome::Retryable {
                        error: e,
                        retry_after: None,
                    }
                }
            };
            outcomes.push(outcome);
        }
        if let Some(l) = link {
            self.release(l).await;
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_set_starts_after_the_file_meta_group_the_scp_wrote() {
        let header = ecko_protocol::dicom::part10::file_header(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3",
            uids::EXPLICIT_VR_LE,
            "MOD",
        )
        .unwrap();
        assert_eq!(data_set_offset(&header), Some(header.len() as u64));
        assert_eq!(data_set_offset(&header[..100]), None);
        let mut bad = header.clone();
        bad[128] = b'X';
        assert_eq!(data_set_offset(&bad), None);
    }
}
