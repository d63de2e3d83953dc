//! The MLLP sender: delivers HL7 v2 messages to a far end and reads its ACK.
//!
//! One message is in flight per connection and the answer must acknowledge
//! the MSH-10 just sent; anything else (an ACK for another message, garbage,
//! silence past the ACK timeout, a closed connection) drops the connection
//! and counts as a retryable failure, so the next attempt starts clean. `AA`
//! or `CA` means delivered; `AR`/`CR` means try again; `AE`/`CE` is permanent
//! or retryable as the endpoint says. Connections are kept open between
//! messages (one per lane in flight) and reopened on the next attempt after
//! a failure; the retry policy supplies the backoff.

use super::{Delivery, Outcome, Sink};
use crate::config::{ApplicationErrorHandling, MllpConfig};
use crate::protocol::hl7::{AckCode, Charset, Message, ParseOptions, ReceivedAck};
use crate::protocol::mllp;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Connection {
    stream: Box<dyn Stream>,
    decoder: mllp::Decoder,
}

pub struct MllpSink {
    endpoint: String,
    connect: String,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    connect_timeout: Duration,
    ack_timeout: Duration,
    application_error: ApplicationErrorHandling,
    options: ParseOptions,
    max_message_size: usize,
    idle: Mutex<Vec<Connection>>,
}

impl MllpSink {
    pub fn new(
        endpoint: &str,
        config: &MllpConfig,
        connect_timeout: Duration,
    ) -> Result<MllpSink, crate::tls::TlsError> {
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
            connect_timeout,
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
        })
    }

    /// Sends one message and waits for its ACK. `Err` means the connection
    /// must not be reused.
    async fn exchange(
        &self,
        conn: &mut Connection,
        payload: &[u8],
        control_id: &str,
    ) -> Result<Outcome, String> {
        conn.stream
            .write_all(&mllp::encode(payload))
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        conn.stream
            .flush()
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            while let Some(event) = conn.decoder.next_event() {
                let mllp::Event::Frame(frame) = event else {
                    continue;
                };
                let ack = ReceivedAck::parse(&frame, &self.options)
                    .map_err(|e| format!("unreadable answer: {e}"))?;
                if !ack.acknowledges(control_id) {
                    return Err(format!(
                        "answer acknowledges `{}`, not the message sent (`{control_id}`)",
                        ack.control_id
                    ));
                }
                return Ok(self.outcome(&ack));
            }
            let n = tokio::time::timeout_at(deadline, conn.stream.read(&mut buf))
                .await
                .map_err(|_| format!("no acknowledgement within {:?}", self.ack_timeout))?
                .map_err(|e| format!("connection failed: {e}"))?;
            if n == 0 {
                return Err("connection closed by the far end before it acknowledged".into());
            }
            conn.decoder.push(&buf[..n], std::time::Instant::now());
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
                s.push_str(&format!(
                    " [ERR {} {} at {}: {}]",
                    e.code, e.code_text, e.location, e.message
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
            let control_id = match Message::parse(&d.payload, &self.options) {
                Ok(m) => m.identity().control_id.clone(),
                Err(e) => {
                    outcomes.push(Outcome::Permanent {
                        error: format!("not a sendable HL7 message: {e}"),
                    });
                    continue;
                }
            };
            // A kept connection may have been closed by the far end while idle
            // (some servers take one message per connection): one failure on
            // it is answered by trying once more on a fresh connection.
            let reused = self.take_idle();
            let was_reused = reused.is_some();
            let mut result = match reused {
                Some(mut conn) => self
                    .exchange(&mut conn, &d.payload, &control_id)
                    .await
                    .map(|o| (o, conn)),
                None => Err(String::new()),
            };
            if result.is_err() {
                if let Err(e) = &result {
                    if was_reused {
                        tracing::debug!(endpoint = %self.endpoint, error = %e, "kept connection failed; reconnecting");
                    }
                }
                result = match self.open().await {
                    Ok(mut conn) => self
                        .exchange(&mut conn, &d.payload, &control_id)
                        .await
                        .map(|o| (o, conn)),
                    Err(e) => Err(e),
                };
            }
            match result {
                Ok((outcome, conn)) => {
                    self.put_idle(conn);
                    outcomes.push(outcome);
                }
                Err(error) => {
                    tracing::warn!(endpoint = %self.endpoint, %error, "MLLP exchange failed; connection dropped");
                    outcomes.push(Outcome::Retryable {
                        error,
                        retry_after: None,
                    });
                }
            }
        }
        outcomes
    }
}

#[cfg(test)]
#[path = "mllp_tests.rs"]
mod tests;
