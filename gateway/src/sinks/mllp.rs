//! The MLLP sender: delivers HL7 v2 messages to a far end and reads its ACK.
//!
//! One message is in flight per connection and the answer must acknowledge
//! the MSH-10 just sent. `AA` or `CA` means delivered; `AR`/`CR` means try
//! again; `AE`/`CE` is permanent or retryable as the endpoint says.
//!
//! # Timeouts
//!
//! Connecting (with the TLS handshake) is bounded by `connect_timeout`,
//! writing the message by `send_timeout`, waiting for the answer by
//! `ack_timeout`. The endpoint's `timeout`, which bounds the whole call, is
//! checked at load time to be longer than the three together, so the error
//! recorded is the one that says what went wrong.
//!
//! # Never twice by accident
//!
//! Connections are kept open between messages. A kept connection is probed
//! before use; one the far end closed while it sat idle is replaced before
//! anything is written. The message is written again on a fresh connection
//! within the same attempt only when the kept connection failed before the
//! far end can have answered: the write itself failed, or the connection
//! closed or was reset before a single byte came back. Any other failure
//! once the message is written (no ACK in time, an ACK for a message we
//! never sent, garbage, an oversized answer) drops the connection and ends
//! the attempt; the retry policy decides when to send again, and the far
//! end's duplicate detection (same MSH-10) absorbs that resend.
//!
//! A frame acknowledging a message sent earlier on the same connection (a
//! far end that answers `CA` and later `AA`, or repeats itself) is stale,
//! not a mismatch: it is logged and skipped. Bytes outside frames are logged
//! and dropped; an answer larger than `max_message_size` fails the attempt.

use super::{Delivery, Outcome, Sink};
use crate::config::{ApplicationErrorHandling, MllpConfig};
use ecko_protocol::hl7::{AckCode, Charset, Message, ParseOptions, ReceivedAck};
use ecko_protocol::mllp;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How many control ids of earlier messages a connection remembers to
/// recognise their late ACKs.
const REMEMBERED_IDS: usize = 32;

struct Connection {
    stream: Box<dyn Stream>,
    decoder: mllp::Decoder,
    /// Control ids acknowledged on this connection, oldest first.
    sent: VecDeque<String>,
}

/// Why an exchange ended without an outcome.
#[derive(Debug)]
enum Failure {
    /// The kept connection was dead before the far end can have answered:
    /// sending again on a fresh connection is safe.
    Stale(String),
    /// Anything else; the attempt ends here.
    Failed(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Stale(m) | Failure::Failed(m) => m,
        }
    }
}

pub struct MllpSink {
    endpoint: String,
    connect: String,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    connect_timeout: Duration,
    send_timeout: Duration,
    ack_timeout: Duration,
    application_error: ApplicationErrorHandling,
    options: ParseOptions,
    max_message_size: usize,
    idle: Mutex<Vec<Connection>>,
}

impl MllpSink {
    pub fn new(endpoint: &str, config: &MllpConfig) -> Result<MllpSink, crate::tls::TlsError> {
        let connect = config.connect.clone().unwrap_or_default();
        let tls = match &config.tls {
            Some(t) => Some((
                TlsConnector::from(crate::tls::client_config(t)?),
                crate::tls::server_name(t, &connect)?,
            )),
            None => None,
        };
        Ok(MllpSink {
            endpoint: endpoint.to_string(),
            connect,
            tls,
            connect_timeout: config.connect_timeout.0,
            send_timeout: config.send_timeout.0,
            ack_timeout: config.ack_timeout.0,
            application_error: config.application_error,
            options: ParseOptions {
                fallback_charset: config.fallback_charset().unwrap_or(Charset::Windows1252),
            },
            max_message_size: usize::try_from(config.max_message_size.0).unwrap_or(usize::MAX),
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn open(&self) -> Result<Connection, String> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.connect))
            .await
            .map_err(|_| format!("connecting to {} timed out", self.connect))?
            .map_err(|e| format!("cannot connect to {}: {e}", self.connect))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(
                tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| format!("TLS handshake with {} timed out", self.connect))?
                    .map_err(|e| format!("TLS handshake with {} failed: {e}", self.connect))?,
            ),
        };
        tracing::info!(endpoint = %self.endpoint, to = %self.connect, "MLLP connection opened");
        Ok(Connection {
            stream,
            decoder: mllp::Decoder::new(self.max_message_size),
            sent: VecDeque::new(),
        })
    }

    /// Whether a kept connection still looks usable: not closed or reset by
    /// the far end while idle. Bytes that arrived meanwhile (a late second
    /// ACK) go to its decoder.
    async fn still_open(&self, conn: &mut Connection) -> bool {
        let mut buf = [0u8; 4096];
        // Bounded, so a far end that keeps sending cannot hold us here.
        for _ in 0..16 {
            // A zero timeout polls the read once: ready data or a closed
            // connection show, a live idle one is Pending.
            match tokio::time::timeout(Duration::ZERO, conn.stream.read(&mut buf)).await {
                Err(_) => return true,
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(n)) => conn.decoder.push(&buf[..n], std::time::Instant::now()),
            }
        }
        true
    }

    /// Sends one message and waits for its ACK. `Err` means the connection
    /// must not be reused.
    async fn exchange(
        &self,
        conn: &mut Connection,
        payload: &[u8],
        control_id: &str,
        reused: bool,
    ) -> Result<Outcome, Failure> {
        let frame = mllp::encode(payload);
        let write = async {
            conn.stream.write_all(&frame).await?;
            conn.stream.flush().await
        };
        match tokio::time::timeout(self.send_timeout, write).await {
            Err(_) => {
                return Err(Failure::Failed(format!(
                    "sending did not finish within {:?}",
                    self.send_timeout
                )))
            }
            Ok(Err(e)) if reused => return Err(Failure::Stale(format!("sending failed: {e}"))),
            Ok(Err(e)) => return Err(Failure::Failed(format!("sending failed: {e}"))),
            Ok(Ok(())) => {}
        }
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut buf = vec![0u8; 16 * 1024];
        let mut answered = false;
        loop {
            while let Some(event) = conn.decoder.next_event() {
                match event {
                    mllp::Event::Frame(frame) => {
                        let ack = ReceivedAck::parse(&frame, &self.options)
                            .map_err(|e| Failure::Failed(format!("unreadable answer: {e}")))?;
                        if ack.acknowledges(control_id) {
                            if conn.sent.len() == REMEMBERED_IDS {
                                conn.sent.pop_front();
                            }
                            conn.sent.push_back(control_id.to_string());
                            return Ok(self.outcome(&ack));
                        }
                        if conn.sent.iter().any(|id| ack.acknowledges(id)) {
                            tracing::info!(endpoint = %self.endpoint, code = ack.code.as_str(), acknowledged = %ack.control_id, "late acknowledgement of an earlier message skipped");
                            continue;
                        }
                        return Err(Failure::Failed(format!(
                            "answer acknowledges `{}`, not the message sent (`{control_id}`)",
                            ack.control_id
                        )));
                    }
                    mllp::Event::Discarded { len } => {
                        tracing::warn!(endpoint = %self.endpoint, bytes = len, "bytes outside an MLLP frame from the far end dropped");
                    }
                    mllp::Event::TooLarge { len, .. } => {
                        tracing::warn!(endpoint = %self.endpoint, bytes = len, limit = self.max_message_size, "answer larger than the limit");
                        return Err(Failure::Failed(format!(
                            "answer of {len} bytes exceeds the limit of {} bytes",
                            self.max_message_size
                        )));
                    }
                }
            }
            let read = tokio::time::timeout_at(deadline, conn.stream.read(&mut buf))
                .await
                .map_err(|_| {
                    Failure::Failed(format!("no acknowledgement within {:?}", self.ack_timeout))
                })?;
            // Closed or reset before a byte came back on a kept connection:
            // the far end had dropped it, our bytes went nowhere.
            let gone = |why: String| {
                if reused && !answered {
                    Failure::Stale(why)
                } else {
                    Failure::Failed(why)
                }
            };
            match read {
                Ok(0) => {
                    return Err(gone(
                        "connection closed by the far end before it acknowledged".into(),
                    ))
                }
                Ok(n) => {
                    answered = true;
                    conn.decoder.push(&buf[..n], std::time::Instant::now());
                }
                Err(e) => return Err(gone(format!("connection failed: {e}"))),
            }
        }
    }

    fn outcome(&self, ack: &ReceivedAck) -> Outcome {
        let describe = || {
            let mut s = ack.code.as_str().to_string();
            if !ack.text.is_empty() {
                s.push_str(": ");
                s.push_str(&ack.text);
            }
            for e in &ack.errors {
                // An error about the message as a whole has no location.
                let at = if e.location.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", e.location)
                };
                s.push_str(&format!(
                    " [ERR {} {}{at}: {}]",
                    e.code, e.code_text, e.message
                ));
            }
            s
        };
        match ack.code {
            AckCode::AA | AckCode::CA => Outcome::Delivered {
                response: Some(describe()),
            },
            AckCode::AE | AckCode::CE
                if self.application_error == ApplicationErrorHandling::Permanent =>
            {
                Outcome::Permanent { error: describe() }
            }
            _ => Outcome::Retryable {
                error: describe(),
                retry_after: None,
            },
        }
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(conn);
    }
}

impl Sink for MllpSink {
    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for d in batch {
            if matches!(outcomes.last(), Some(o) if !matches!(o, Outcome::Delivered { .. })) {
                outcomes.push(Outcome::NotAttempted);
                continue;
            }
            let payload = d.payload.to_bytes();
            let control_id = match Message::parse(&payload, &self.options) {
                Ok(m) => m.identity().control_id.clone(),
                Err(e) => {
                    outcomes.push(Outcome::Permanent {
                        error: format!("not a sendable HL7 message: {e}"),
                    });
                    continue;
                }
            };
            outcomes.push(self.deliver_one(&payload, &control_id).await);
        }
        outcomes
    }
}

impl MllpSink {
    async fn deliver_one(&self, payload: &[u8], control_id: &str) -> Outcome {
        let mut kept = None;
        while let Some(mut conn) = self.take_idle() {
            if self.still_open(&mut conn).await {
                kept = Some(conn);
                break;
            }
            tracing::debug!(endpoint = %self.endpoint, "kept connection was closed by the far end; dropped");
        }
        let result = match kept {
            Some(mut conn) => match self.exchange(&mut conn, payload, control_id, true).await {
                Ok(outcome) => Ok((outcome, conn)),
                Err(Failure::Stale(e)) => {
                    tracing::debug!(endpoint = %self.endpoint, error = %e, "kept connection failed before any answer; sending on a fresh one");
                    self.fresh_exchange(payload, control_id).await
                }
                Err(failed) => Err(failed.into_message()),
            },
            None => self.fresh_exchange(payload, control_id).await,
        };
        match result {
            Ok((outcome, conn)) => {
                self.put_idle(conn);
                outcome
            }
            Err(error) => {
                tracing::warn!(endpoint = %self.endpoint, %error, "MLLP exchange failed; connection dropped");
                Outcome::Retryable {
                    error,
                    retry_after: None,
                }
            }
        }
    }

    async fn fresh_exchange(
        &self,
        payload: &[u8],
        control_id: &str,
    ) -> Result<(Outcome, Connection), String> {
        let mut conn = self.open().await?;
        self.exchange(&mut conn, payload, control_id, false)
            .await
            .map(|o| (o, conn))
            .map_err(Failure::into_message)
    }
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
