//! The MLLP listener: HL7 v2 in, acknowledgements that mean "stored" out.
//!
//! # Acknowledgement rules
//!
//! Each framed message is parsed, journalled and only then answered, with
//! the codes HL7 v2 chapter 2 gives (the README has the table of every
//! case):
//!
//! - `AA` (`CA` in enhanced mode) once the journal receipt has resolved. A
//!   resend (same MSH-10 from this endpoint) finds the stored copy and gets
//!   `AA` again without being queued twice.
//! - `AR` (`CR`) for a problem in the message header: no MSH, bad
//!   separators, missing MSH-9 or MSH-10, an MSH-11 processing id outside
//!   table 0103, an MSH-12 that is not a v2 version, an unknown MSH-18;
//!   with ERR-2 at the MSH field and the table 0357 code (101, 102, 202,
//!   203 …).
//! - `AE` (`CE`) for an error in the content: a line that is not a
//!   segment, a batch whose count is wrong, and bytes not valid in the
//!   message's character set (ERR-2 the segment and field holding the
//!   first such byte, ERR-3 `102`). Those are refused unless the endpoint
//!   says `on_invalid_text = "replace"`; the log line names the place, not
//!   the bytes.
//! - `AR` (`CR`) also when the gateway cannot take the message now
//!   (journal over its cap, disk full, endpoint disabled) or no route
//!   accepts its type (ERR-3 `200`). The sender keeps its copy.
//! - MSA-2 is the MSH-10 as far as it could be read, the HL7 null `""`
//!   when none could (MSA-2 is required).
//! - A frame with no message (empty, or only line ends) is not answered and
//!   the connection goes on.
//! - A frame over `max_message_size` is answered `AR` (`CR`) from its head
//!   as soon as the limit is crossed, and the connection is closed; the
//!   rest of the frame is not read (beyond a 64 KiB, one-second linger
//!   that keeps a TCP reset from destroying the answer).
//!
//! In enhanced mode MSH-15 decides whether an accept acknowledgement is sent
//! at all, also for a frame that does not parse or is too large, as far as
//! MSH-15/16 can be read from its raw MSH. A batch (FHS/BHS ... BTS/FTS) is
//! split and each message journalled and answered on its own, one ACK frame
//! per message, in order. The application acknowledgement (MSH-16) is not
//! sent here: a route with `application_ack` has the delivery engine queue
//! it once the destination has answered.
//!
//! A disabled listener is still bound, in refuse-only mode: it answers every
//! message `AR` ("endpoint is disabled") and stores nothing, so a sender
//! hears why instead of seeing its connection refused.
//!
//! # Connections
//!
//! Messages on one connection are handled one at a time, in order: the next
//! frame is read only after the previous one is answered, which is what MLLP
//! senders expect and what keeps their order. Who is served and how fast
//! they must send is [`crate::net`]'s: the `allow` list, at most
//! `max_connections_per_address` per sender address and `max_connections`
//! in all (a new address displaces the oldest connection of the biggest
//! holder rather than being refused, see [`crate::net::admission`]); a frame
//! that has started (any byte after the last complete frame) must end
//! within `frame_timeout` and arrive at `min_data_rate` over `rate_window`,
//! or the connection is cut and the partial message dropped; a connection
//! that completes no frame for `idle_timeout` is closed. Each refusal and
//! cut is a log line and a count in `ecko_connections_refused_total`, so a
//! sender sees the refusal instead of hanging and the operator sees the
//! flood. On shutdown the listener stops accepting and each connection
//! finishes the message it is handling.

use super::SourceContext;
use crate::config::{Endpoint, EndpointKind, InvalidText, Keepalive, MllpConfig};
use crate::journal::IngestError;
use crate::net::{Admission, Cut, PaceHandle, PaceLimits, Paced, Reason};
use crate::service::progress::BEAT_EVERY;
use ecko_message::{DecodeHints, Envelope};
use ecko_protocol::hl7::{
    self, accept_ack_code, build_ack, build_ack_for_unreadable, fresh_control_id,
    unreadable_ack_code, AckCode, AckContent, AckError, Charset, ErrorCode, Message, Outcome,
    ParseOptions,
};
use ecko_protocol::mllp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("endpoint `{endpoint}`: cannot listen on {addr}: {source}")]
    Bind {
        endpoint: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("endpoint `{endpoint}`: {source}")]
    Tls {
        endpoint: String,
        source: crate::tls::TlsError,
    },
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    admission: Admission,
    pace: PaceLimits,
    keepalive: Keepalive,
}

/// Whether `endpoint` is started even when disabled: an MLLP listener is,
/// to answer `AR` rather than leave senders with a refused connection.
pub fn answers_while_disabled(endpoint: &Endpoint) -> bool {
    matches!(&endpoint.kind, EndpointKind::Mllp(c) if c.listen.is_some())
}

struct Shared {
    endpoint: String,
    cx: SourceContext,
    options: ParseOptions,
    max_message_size: usize,
    on_invalid_text: InvalidText,
    disabled: bool,
}

/// How long writing an ACK may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// After answering a frame over the size limit: how much more of it is
/// read (and dropped) before the connection is closed, and for how long.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

impl Listener {
    /// Binds the endpoint's address. Fails at start-up, not later, so an
    /// operator sees a port in use at once.
    pub async fn bind(
        endpoint: &Endpoint,
        config: &MllpConfig,
        cx: SourceContext,
    ) -> Result<Listener, ListenError> {
        let addr = config.listen.clone().unwrap_or_default();
        let bind_err = |source| ListenError::Bind {
            endpoint: endpoint.name.clone(),
            addr: addr.clone(),
            source,
        };
        let parsed: SocketAddr = addr.parse().map_err(|e| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{e}"),
            ))
        })?;
        let tcp = match crate::net::low_port::bind(&parsed.to_string()).await {
            Ok(t) => t,
            Err(e) => {
                cx.health.down(
                    &endpoint.name,
                    cx.journal.now_ms(),
                    format!("{}{addr}: {e}", crate::service::readiness::LISTEN_FAILED),
                );
                return Err(bind_err(e));
            }
        };
        let tls = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t).map_err(
                |source| ListenError::Tls {
                    endpoint: endpoint.name.clone(),
                    source,
                },
            )?)),
            None => None,
        };
        let bound = tcp.local_addr().map_or(addr.clone(), |a| a.to_string());
        cx.health.up(
            &endpoint.name,
            cx.journal.now_ms(),
            format!("listening on {bound}"),
        );
        Ok(Listener {
            tcp,
            tls,
            admission: Admission::new(config.admission()),
            pace: config.pace(),
            keepalive: config.keepalive,
            shared: Arc::new(Shared {
                endpoint: endpoint.name.clone(),
                cx,
                options: ParseOptions {
                    fallback_charset: config.fallback_charset().unwrap_or(Charset::Windows1252),
                },
                max_message_size: usize::try_from(config.max_message_size.0).unwrap_or(usize::MAX),
                on_invalid_text: config.on_invalid_text,
                disabled: !endpoint.enabled,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts connections until shutdown, then waits for open connections
    /// to finish the message they are handling.
    pub async fn serve(self) {
        let mut connections = tokio::task::JoinSet::new();
        let shutdown = self.shared.cx.shutdown.clone();
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if self.shared.disabled {
            tracing::info!(endpoint = %self.shared.endpoint, %addr, tls = self.tls.is_some(), "MLLP listener ready, disabled: every message is answered AR");
        } else {
            tracing::info!(endpoint = %self.shared.endpoint, %addr, tls = self.tls.is_some(), "MLLP listener ready");
        }
        let heartbeat = self.shared.cx.heartbeat.clone();
        let mut beat = tokio::time::interval(BEAT_EVERY);
        loop {
            heartbeat.beat();
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                _ = beat.tick() => continue,
                a = self.tcp.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    tracing::warn!(endpoint = %self.shared.endpoint, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = match self.admission.admit(peer.ip()) {
                Ok(a) => a,
                Err(reason) => {
                    self.shared.refused(peer, reason);
                    drop(stream);
                    continue;
                }
            };
            if let Some(from) = admitted.displaced {
                tracing::debug!(endpoint = %self.shared.endpoint, %peer, displaced = %from, "room made for a new address");
            }
            let permit = admitted.permit;
            set_keepalive(&stream, &self.keepalive);
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            let stream = Paced::new(stream, self.pace);
            let pace = stream.handle();
            connections.spawn(async move {
                tracing::debug!(endpoint = %shared.endpoint, %peer, "connection opened");
                let served = async {
                    match tls {
                        None => shared.serve_connection(stream, &pace, peer).await,
                        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                // The handshake is no frame of the sender's.
                                pace.completed();
                                shared.serve_connection(tls_stream, &pace, peer).await
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(endpoint = %shared.endpoint, %peer, error = %e, "TLS handshake failed");
                                Cut::of(&e)
                            }
                            Err(_) => {
                                tracing::warn!(endpoint = %shared.endpoint, %peer, "TLS handshake timed out");
                                None
                            }
                        },
                    }
                };
                tokio::pin!(served);
                // Displaced: cut at its next read, after the frame in hand
                // is answered.
                let cut = tokio::select! {
                    cut = &mut served => cut,
                    _ = permit.displaced() => {
                        pace.cut(Reason::Displaced);
                        served.await
                    }
                };
                if let Some(reason) = cut {
                    shared.refused(peer, reason);
                }
                tracing::debug!(endpoint = %shared.endpoint, %peer, "connection closed");
                drop(permit);
            });
        }
        drop(self.tcp);
        let cx = &self.shared.cx;
        cx.health
            .down(&self.shared.endpoint, cx.journal.now_ms(), "stopped");
        while connections.join_next().await.is_some() {}
        tracing::info!(endpoint = %self.shared.endpoint, "MLLP listener stopped");
    }
}

fn set_keepalive(stream: &TcpStream, k: &Keepalive) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = stream.set_nodelay(true);
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    let _ = setsockopt(stream, sockopt::KeepAlive, &k.enabled);
    if k.enabled {
        let _ = setsockopt(stream, sockopt::TcpKeepIdle, &secs(k.idle.0));
        let _ = setsockopt(stream, sockopt::TcpKeepInterval, &secs(k.interval.0));
        let _ = setsockopt(stream, sockopt::TcpKeepCount, &k.probes);
    }
}

impl Shared {
    fn refused(&self, peer: SocketAddr, reason: Reason) {
        self.cx
            .counters
            .connections
            .refused(&self.endpoint, peer, reason);
    }

    /// Serves one connection until it closes; the reason when it was cut.
    async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        pace: &PaceHandle,
        peer: SocketAddr,
    ) -> Option<Reason> {
        let mut decoder = mllp::Decoder::new(self.max_message_size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut cut = None;
        'connection: loop {
            loop {
                // A frame over the limit: answered from its head and the
                // connection closed, without reading the rest of it.
                let oversized = decoder.oversized().map(|(len, head)| (len, head.to_vec()));
                let (answers, close) = match decoder.next_event() {
                    Some(mllp::Event::Frame(payload)) => {
                        pace.completed();
                        if payload.iter().all(u8::is_ascii_whitespace) {
                            // Nothing to answer: a keepalive, or a sender
                            // flushing its line.
                            tracing::debug!(endpoint = %self.endpoint, %peer, "MLLP frame without a message ignored");
                            (Vec::new(), false)
                        } else {
                            (self.handle_frame(&payload).await, false)
                        }
                    }
                    Some(mllp::Event::Discarded { len }) => {
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = len, "bytes outside an MLLP frame dropped");
                        (Vec::new(), false)
                    }
                    Some(mllp::Event::TooLarge { len, head, .. }) => {
                        (self.too_large(peer, &head, len).into_iter().collect(), true)
                    }
                    None => match oversized {
                        Some((len, head)) => {
                            (self.too_large(peer, &head, len).into_iter().collect(), true)
                        }
                        None => break,
                    },
                };
                for ack in answers {
                    let frame = mllp::encode(&ack);
                    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&frame)).await {
                        Ok(Ok(())) => {}
                        _ => {
                            tracing::warn!(endpoint = %self.endpoint, %peer, "cannot write the acknowledgement; closing");
                            break 'connection;
                        }
                    }
                }
                if close {
                    // The answer goes out with a FIN. Closing with the
                    // sender's bytes unread makes the kernel send a reset,
                    // which can destroy the answer before the sender reads
                    // it; so at most LINGER_BYTES more are read and thrown
                    // away, for at most LINGER_TIME, never the whole frame.
                    let _ = tokio::time::timeout(LINGER_TIME, stream.shutdown()).await;
                    let until = tokio::time::Instant::now() + LINGER_TIME;
                    let mut thrown = 0;
                    while thrown < LINGER_BYTES {
                        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => thrown += n,
                            _ => break,
                        }
                    }
                    break 'connection;
                }
            }
            let read = tokio::select! {
                _ = self.cx.shutdown.cancelled() => break,
                r = stream.read(&mut buf) => r,
            };
            match read {
                Ok(0) => {
                    if decoder.is_pending() {
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = decoder.pending_len(), "connection closed inside a frame; partial message dropped");
                    }
                    break;
                }
                Ok(n) => decoder.push(&buf[..n], Instant::now()),
                Err(e) => {
                    cut = Cut::of(&e);
                    match cut {
                        Some(_) if decoder.is_pending() => {
                            tracing::warn!(endpoint = %self.endpoint, %peer, bytes = decoder.pending_len(), "frame not finished in time; partial message dropped");
                        }
                        Some(_) => {}
                        None => {
                            tracing::debug!(endpoint = %self.endpoint, %peer, error = %e, "read failed")
                        }
                    }
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        cut
    }

    /// Answers for one frame: one ACK per message (several for a batch).
    async fn handle_frame(&self, payload: &[u8]) -> Vec<Vec<u8>> {
        if !hl7::is_batch(payload) {
            return self.handle_message(payload).await.into_iter().collect();
        }
        match hl7::split_batch(payload) {
            Ok(batch) => {
                let mut acks = Vec::with_capacity(batch.messages.len());
                for message in batch.messages {
                    acks.extend(self.handle_message(message).await);
                }
                acks
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "batch is not valid HL7; refused");
                self.unreadable(payload, &e).into_iter().collect()
            }
        }
    }

    async fn handle_message(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let message = match Message::parse(raw, &self.options) {
            Ok(m) => m,
            Err(e) => {
                let answer = if e.is_header_problem() {
                    "AR (CR in enhanced mode)"
                } else {
                    "AE (CE in enhanced mode)"
                };
                tracing::warn!(endpoint = %self.endpoint, error = %e, answer, "message is not valid HL7; refused");
                return self.unreadable(raw, &e);
            }
        };
        let id = message.identity();
        if let Err(e) = message.check_header() {
            tracing::warn!(endpoint = %self.endpoint, control_id = %id.control_id, error = %e, "message header not supported; answered AR (CR in enhanced mode)");
            self.cx.refused_unreadable();
            let reject = accept_ack_code(id, Outcome::Rejected)?;
            return Some(self.ack(
                &message,
                reject,
                Some(&e.to_string()),
                Some(&AckError::from(&e)),
            ));
        }
        if self.on_invalid_text == InvalidText::Refuse {
            if let Some(location) = message.invalid_text() {
                // The location and the charset only: the bytes themselves
                // may be patient data.
                let text = format!(
                    "{location}: bytes not valid in the character set {}",
                    message.charset().hl7_name()
                );
                tracing::warn!(endpoint = %self.endpoint, control_id = %id.control_id, %location, charset = message.charset().hl7_name(), "message holds bytes invalid in its character set; answered AE (CE in enhanced mode), nothing stored");
                self.cx.refused_unreadable();
                let error = AckError {
                    code: ErrorCode::DataTypeError,
                    location: Some(location),
                    message: text.clone(),
                };
                let code = accept_ack_code(id, Outcome::Error)?;
                return Some(self.ack(&message, code, Some(&text), Some(&error)));
            }
        }
        let accepted =
            accept_ack_code(id, Outcome::Accepted).map(|code| self.ack(&message, code, None, None));
        let new = Envelope {
            source: self.endpoint.clone(),
            dedup_key: Some(id.control_id.clone()),
            message_type: message_type(&message),
            content_type: "x-application/hl7-v2+er7".into(),
            control_id: Some(id.control_id.clone()),
            patient_id: patient_id(&message),
            payload: raw.to_vec(),
            ack: accepted.clone(),
            hints: DecodeHints {
                charset: Some(self.options.fallback_charset.hl7_name().to_string()),
                time_zone: None,
            },
        };
        match self.cx.ingest(new).await {
            Ok(receipt) => {
                tracing::debug!(endpoint = %self.endpoint, message_id = receipt.message_id, duplicate = receipt.duplicate, "message journalled");
                accepted
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "message refused; answered reject");
                let (code, outcome) = match e {
                    IngestError::NoRoute { .. } => {
                        (ErrorCode::UnsupportedMessageType, Outcome::Rejected)
                    }
                    // Its content: resending it unchanged cannot help.
                    IngestError::Unmappable { .. } => {
                        (ErrorCode::ApplicationInternalError, Outcome::Error)
                    }
                    _ => (ErrorCode::ApplicationInternalError, Outcome::Rejected),
                };
                let error = AckError {
                    code,
                    location: None,
                    message: e.to_string(),
                };
                let reject = accept_ack_code(id, outcome)?;
                Some(self.ack(&message, reject, Some(&e.to_string()), Some(&error)))
            }
        }
    }

    fn ack(
        &self,
        message: &Message,
        code: AckCode,
        text: Option<&str>,
        error: Option<&AckError>,
    ) -> Vec<u8> {
        let now = jiff::Zoned::now().with_time_zone(self.cx.time_zone.get());
        build_ack(
            message,
            &AckContent {
                code,
                control_id: &next_control_id(),
                timestamp: &now,
                text,
                error,
            },
        )
    }

    /// For a frame that is not HL7: `AR` (`CR`) when the header is at
    /// fault, `AE` (`CE`) when the content is, or nothing, as MSH-15 asks.
    fn unreadable(&self, raw: &[u8], e: &hl7::ParseError) -> Option<Vec<u8>> {
        self.cx.refused_unreadable();
        let code = unreadable_ack_code(raw, e.outcome())?;
        let now = jiff::Zoned::now().with_time_zone(self.cx.time_zone.get());
        let error = AckError::from(e);
        let text = e.to_string();
        Some(build_ack_for_unreadable(
            raw,
            &AckContent {
                code,
                control_id: &next_control_id(),
                timestamp: &now,
                text: Some(&text),
                error: Some(&error),
            },
            &self.options,
        ))
    }

    /// `AR` (`CR`, or nothing, as MSH-15 asks) for a frame over the limit;
    /// the connection is closed after it.
    fn too_large(&self, peer: SocketAddr, head: &[u8], len: u64) -> Option<Vec<u8>> {
        tracing::warn!(endpoint = %self.endpoint, %peer, bytes_seen = len, limit = self.max_message_size, "message larger than the limit refused; connection closed without reading the rest");
        let code = unreadable_ack_code(head, Outcome::Rejected)?;
        let now = jiff::Zoned::now().with_time_zone(self.cx.time_zone.get());
        let text = format!(
            "message exceeds the limit of {} bytes ({len} bytes read)",
            self.max_message_size
        );
        let error = AckError {
            code: ErrorCode::ApplicationInternalError,
            location: None,
            message: text.clone(),
        };
        Some(build_ack_for_unreadable(
            head,
            &AckContent {
                code,
                control_id: &next_control_id(),
                timestamp: &now,
                text: Some(&text),
                error: Some(&error),
            },
            &self.options,
        ))
    }
}

/// `CODE^TRIGGER`, what routes filter on.
fn message_type(m: &Message) -> String {
    let id = m.identity();
    if id.trigger_event.is_empty() {
        id.message_code.clone()
    } else {
        format!("{}^{}", id.message_code, id.trigger_event)
    }
}

/// PID-3, first identifier: the partition key for per-patient order.
fn patient_id(m: &Message) -> Option<String> {
    let pid3 = m.segment("PID")?.field(3)?;
    let first = pid3.repetition(1)?.component(1)?.value().trim().to_string();
    (!first.is_empty()).then_some(first)
}

/// A fresh MSH-10 for an ACK.
fn next_control_id() -> String {
    fresh_control_id(jiff::Timestamp::now().as_millisecond())
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
