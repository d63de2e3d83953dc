//! The MLLP listener: HL7 v2 in, acknowledgements that mean "stored" out.
//!
//! # Acknowledgement rules
//!
//! Each framed message is parsed, journalled and only then answered:
//!
//! - `AA` (`CA` in enhanced mode) once the journal receipt has resolved. A
//!   resend (same MSH-10 from this endpoint) finds the stored copy and gets
//!   `AA` again without being queued twice.
//! - `AE` (`CE`) when the frame is not readable HL7 (no MSH, bad separators,
//!   missing MSH-9 or MSH-10, unknown character set), with an ERR segment
//!   saying where.
//! - `AR` (`CR`) when the gateway cannot take the message now (journal over
//!   its cap, disk full, endpoint disabled), when no route accepts its type,
//!   or when it exceeds the maximum message size. The sender keeps its copy.
//!
//! In enhanced mode MSH-15 decides whether an accept acknowledgement is sent
//! at all. A batch (FHS/BHS ... BTS/FTS) is split and each message journalled
//! and answered on its own, one ACK frame per message, in order.
//!
//! # Connections
//!
//! Messages on one connection are handled one at a time, in order: the next
//! frame is read only after the previous one is answered, which is what MLLP
//! senders expect and what keeps their order. A frame that has started must
//! end within the framing timeout or it is dropped; a connection silent for
//! the idle timeout is closed. At most `max_connections` are served at once;
//! further connections are closed at once with a log line, so a sender sees
//! the refusal instead of hanging. On shutdown the listener stops accepting
//! and each connection finishes the message it is handling.

use super::SourceContext;
use crate::config::{Endpoint, MllpConfig};
use crate::journal::{IngestError, NewMessage};
use crate::protocol::hl7::{
    self, accept_ack_code, build_ack, build_ack_for_unreadable, AckCode, AckContent, AckError,
    Charset, ErrorCode, Message, Outcome, ParseOptions,
};
use crate::protocol::mllp;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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
    max_connections: usize,
}

struct Shared {
    endpoint: String,
    cx: SourceContext,
    options: ParseOptions,
    max_message_size: usize,
    frame_timeout: Duration,
    idle_timeout: Duration,
}

/// How long writing an ACK may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

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
        let tcp = match TcpListener::bind(parsed).await {
            Ok(t) => t,
            Err(e) => {
                cx.health.down(
                    &endpoint.name,
                    cx.journal.now_ms(),
                    format!("cannot listen on {addr}: {e}"),
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
            max_connections: config.max_connections,
            shared: Arc::new(Shared {
                endpoint: endpoint.name.clone(),
                cx,
                options: ParseOptions {
                    fallback_charset: config.fallback_charset().unwrap_or(Charset::Windows1252),
                },
                max_message_size: usize::try_from(config.max_message_size.0).unwrap_or(usize::MAX),
                frame_timeout: config.frame_timeout.0,
                idle_timeout: config.idle_timeout.0,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts connections until shutdown, then waits for open connections
    /// to finish the message they are handling.
    pub async fn serve(self) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = tokio::task::JoinSet::new();
        let shutdown = self.shared.cx.shutdown.clone();
        tracing::info!(endpoint = %self.shared.endpoint, addr = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), tls = self.tls.is_some(), "MLLP listener ready");
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
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
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                tracing::warn!(endpoint = %self.shared.endpoint, %peer, limit = self.max_connections, "connection refused: too many open connections");
                drop(stream);
                continue;
            };
            set_keepalive(&stream);
            let shared = self.shared.clone();
            let tls = self.tls.clone();
            connections.spawn(async move {
                tracing::debug!(endpoint = %shared.endpoint, %peer, "connection opened");
                match tls {
                    None => shared.serve_connection(stream, peer).await,
                    Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => shared.serve_connection(tls_stream, peer).await,
                        Ok(Err(e)) => tracing::warn!(endpoint = %shared.endpoint, %peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::warn!(endpoint = %shared.endpoint, %peer, "TLS handshake timed out"),
                    },
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

fn set_keepalive(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = stream.set_nodelay(true);
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &15);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &4);
}

impl Shared {
    async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        peer: SocketAddr,
    ) {
        let mut decoder = mllp::Decoder::new(self.max_message_size);
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_activity = Instant::now();
        'connection: loop {
            while let Some(event) = decoder.next_event() {
                let answers = match event {
                    mllp::Event::Frame(payload) => self.handle_frame(&payload).await,
                    mllp::Event::Discarded { len } => {
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = len, "bytes outside an MLLP frame dropped");
                        Vec::new()
                    }
                    mllp::Event::TooLarge { len, head, ended } => {
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = len, limit = self.max_message_size, "message larger than the limit refused");
                        if ended {
                            vec![self.too_large(&head, len)]
                        } else {
                            Vec::new()
                        }
                    }
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
                last_activity = Instant::now();
            }
            let now = Instant::now();
            let mut wait = self.idle_timeout.saturating_sub(now - last_activity);
            if let Some(since) = decoder.pending_since() {
                wait = wait.min((since + self.frame_timeout).saturating_duration_since(now));
            }
            let read = tokio::select! {
                _ = self.cx.shutdown.cancelled() => break,
                r = tokio::time::timeout(wait, stream.read(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) => {
                    if decoder.is_pending() {
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = decoder.pending_len(), "connection closed inside a frame; partial message dropped");
                    }
                    break;
                }
                Ok(Ok(n)) => {
                    last_activity = Instant::now();
                    decoder.push(&buf[..n], last_activity);
                }
                Ok(Err(e)) => {
                    tracing::debug!(endpoint = %self.endpoint, %peer, error = %e, "read failed");
                    break;
                }
                Err(_) => {
                    let now = Instant::now();
                    if decoder
                        .pending_since()
                        .is_some_and(|since| now.duration_since(since) >= self.frame_timeout)
                    {
                        let dropped = decoder.abandon_partial().unwrap_or(0);
                        tracing::warn!(endpoint = %self.endpoint, %peer, bytes = dropped, timeout = ?self.frame_timeout, "frame not finished in time; partial message dropped");
                    } else if now.duration_since(last_activity) >= self.idle_timeout {
                        tracing::info!(endpoint = %self.endpoint, %peer, "closing idle connection");
                        break;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
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
            Err(e) => vec![self.unreadable(payload, &e)],
        }
    }

    async fn handle_message(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let message = match Message::parse(raw, &self.options) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "message is not valid HL7; answered AE");
                return Some(self.unreadable(raw, &e));
            }
        };
        let id = message.identity();
        let accepted =
            accept_ack_code(id, Outcome::Accepted).map(|code| self.ack(&message, code, None, None));
        let new = NewMessage {
            source: self.endpoint.clone(),
            dedup_key: Some(id.control_id.clone()),
            message_type: message_type(&message),
            content_type: "x-application/hl7-v2+er7".into(),
            control_id: Some(id.control_id.clone()),
            patient_id: patient_id(&message),
            payload: raw.to_vec(),
            ack: accepted.clone(),
        };
        match self.cx.ingest(new).await {
            Ok(receipt) => {
                tracing::debug!(endpoint = %self.endpoint, message_id = receipt.message_id, duplicate = receipt.duplicate, "message journalled");
                accepted
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "message refused; answered reject");
                let code = match e {
                    IngestError::NoRoute { .. } => ErrorCode::UnsupportedMessageType,
                    _ => ErrorCode::ApplicationInternalError,
                };
                let error = AckError {
                    code,
                    location: None,
                    message: e.to_string(),
                };
                let reject = accept_ack_code(id, Outcome::Rejected)?;
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

    fn unreadable(&self, raw: &[u8], e: &hl7::ParseError) -> Vec<u8> {
        let now = jiff::Zoned::now().with_time_zone(self.cx.time_zone.get());
        let error = AckError::from(e);
        let text = e.to_string();
        build_ack_for_unreadable(
            raw,
            &AckContent {
                code: AckCode::AE,
                control_id: &next_control_id(),
                timestamp: &now,
                text: Some(&text),
                error: Some(&error),
            },
            &self.options,
        )
    }

    fn too_large(&self, head: &[u8], len: u64) -> Vec<u8> {
        let now = jiff::Zoned::now().with_time_zone(self.cx.time_zone.get());
        let text = format!(
            "message of {len} bytes exceeds the limit of {} bytes",
            self.max_message_size
        );
        let error = AckError {
            code: ErrorCode::ApplicationInternalError,
            location: None,
            message: text.clone(),
        };
        build_ack_for_unreadable(
            head,
            &AckContent {
                code: AckCode::AR,
                control_id: &next_control_id(),
                timestamp: &now,
                text: Some(&text),
                error: Some(&error),
            },
            &self.options,
        )
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

/// A fresh MSH-10 for an ACK: 20 characters at most, as HL7 v2.5 allows,
/// unique within this process and across restarts (time-based prefix).
fn next_control_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000_000;
    let ms = jiff::Timestamp::now()
        .as_millisecond()
        .rem_euclid(10_000_000_000_000);
    format!("{ms:013}{n:07}")
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
