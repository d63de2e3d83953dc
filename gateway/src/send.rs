//! `ecko-gateway send`: a field engineer's check of an MLLP link.
//!
//! Messages from files go to a receiver exactly as the gateway's own MLLP
//! sender would deliver them (same framing, TLS, timeouts and ACK checks),
//! one at a time, and each answer is reported. A file may hold one message
//! or several, one after the other, with `\r`, `\n` or `\r\n` between
//! segments and optionally in MLLP frames or in an FHS/BHS batch envelope.

use crate::config::MllpConfig;
use crate::sinks::mllp::MllpSink;
use crate::sinks::{Delivery, Outcome, Sink};
use ecko_message::StoredMessage;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub connect: String,
    pub tls: Option<crate::config::TlsSettings>,
    pub timeout: Duration,
}

/// What became of one message.
#[derive(Debug, Clone)]
pub struct Sent {
    pub control_id: String,
    pub outcome: Outcome,
    pub took: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The messages in a file's bytes: each starts at an `MSH` segment; batch
/// and file headers and trailers and MLLP framing bytes are left out.
pub fn split_messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for segment in bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .map(|s| {
            let s = s.strip_prefix(&[0x0b]).unwrap_or(s);
            s.strip_suffix(&[0x1c]).unwrap_or(s)
        })
        .filter(|s| !s.iter().all(u8::is_ascii_whitespace))
    {
        if segment.starts_with(b"MSH") {
            messages.push(Vec::new());
        } else if [&b"FHS"[..], b"BHS", b"BTS", b"FTS"]
            .iter()
            .any(|h| segment.starts_with(h))
        {
            continue;
        }
        if let Some(current) = messages.last_mut() {
            current.extend_from_slice(segment);
            current.push(b'\r');
        }
    }
    messages
}

/// Sends each message and waits for its answer before the next.
pub async fn send(target: &Target, messages: Vec<Vec<u8>>) -> Result<Vec<Sent>, SendError> {
    let config = sender_config(target)?;
    let sink = MllpSink::new("send", &config)?;
    let mut results = Vec::with_capacity(messages.len());
    for (n, payload) in messages.into_iter().enumerate() {
        let control_id = control_id(&payload).unwrap_or_else(|| format!("#{}", n + 1));
        let delivery = Delivery {
            outbox_id: n as i64 + 1,
            attempt: 1,
            lane: String::new(),
            message: Arc::new(StoredMessage {
                id: n as i64 + 1,
                received_at: 0,
                envelope: ecko_message::Envelope {
                    source: "send".into(),
                    dedup_key: None,
                    message_type: String::new(),
                    content_type: "x-application/hl7-v2+er7".into(),
                    control_id: Some(control_id.clone()),
                    patient_id: None,
                    payload: payload.clone(),
                    ack: None,
                    hints: Default::default(),
                },
            }),
            payload: ecko_fhir::Payload::Bytes(payload),
        };
        let started = Instant::now();
        let outcome = match tokio::time::timeout(
            target.timeout * 3,
            sink.deliver(std::slice::from_ref(&delivery)),
        )
        .await
        {
            Ok(mut o) => o.pop().unwrap_or(Outcome::NotAttempted),
            Err(_) => Outcome::Retryable {
                error: format!("no answer within {:?}", target.timeout * 3),
                retry_after: None,
            },
        };
        results.push(Sent {
            control_id,
            outcome,
            took: started.elapsed(),
        });
    }
    Ok(results)
}

fn sender_config(target: &Target) -> Result<MllpConfig, SendError> {
    let mut table = toml::Table::new();
    table.insert("connect".into(), target.connect.clone().into());
    let timeout = format!("{}ms", target.timeout.as_millis());
    for key in ["connect_timeout", "send_timeout", "ack_timeout"] {
        table.insert(key.into(), timeout.clone().into());
    }
    let mut config: MllpConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| SendError::Settings(e.message().to_string()))?;
    config.tls = target.tls.clone();
    Ok(config)
}

/// MSH-10 read the simple way: field separator from MSH-4th byte.
fn control_id(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let msh = text.split('\r').next()?;
    let sep = msh.chars().nth(3)?;
    msh.split(sep)
        .nth(9)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_file_of_messages_with_any_line_ends_and_a_batch_envelope_is_split_at_each_msh() {
        let file = b"FHS|^~\\&\nBHS|^~\\&\nMSH|^~\\&|A|B|||20261201||ORU^R01|1|P|2.5.1\r\nPID|1\n\nMSH|^~\\&|A|B|||20261201||ORU^R01|2|P|2.5.1\rOBX|1\rBTS|2\nFTS|1\n";
        let messages = split_messages(file);
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0],
            b"MSH|^~\\&|A|B|||20261201||ORU^R01|1|P|2.5.1\rPID|1\r".to_vec()
        );
        assert_eq!(
            messages[1],
            b"MSH|^~\\&|A|B|||20261201||ORU^R01|2|P|2.5.1\rOBX|1\r".to_vec()
        );
        assert_eq!(control_id(&messages[1]).as_deref(), Some("2"));
    }

    #[test]
    fn framed_messages_lose_their_mllp_bytes() {
        let file = b"\x0bMSH|^~\\&|A|B|||x||ADT^A01|9|P|2.5\rPID|1\r\x1c\r";
        assert_eq!(
            split_messages(file),
            vec![b"MSH|^~\\&|A|B|||x||ADT^A01|9|P|2.5\rPID|1\r".to_vec()]
        );
    }

    /// A receiver that answers each message with `code`.
    async fn receiver(code: &'static str) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                    let frame: Vec<u8> = buf.drain(..end + 2).collect();
                    let id = control_id(&frame[1..]).unwrap();
                    let ack = format!(
                        "\x0bMSH|^~\\&|B|B|A|A|20261201||ACK^R01^ACK|a{id}|P|2.5.1\rMSA|{code}|{id}\r\x1c\r"
                    );
                    s.write_all(ack.as_bytes()).await.unwrap();
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_message_is_sent_and_its_answer_reported() {
        let addr = receiver("AA").await;
        let target = Target {
            connect: addr.to_string(),
            tls: None,
            timeout: Duration::from_secs(5),
        };
        let messages = split_messages(
            b"MSH|^~\\&|A|B|||x||ORU^R01|one|P|2.5.1\rPID|1\rMSH|^~\\&|A|B|||x||ORU^R01|two|P|2.5.1\rPID|2\r",
        );
        let sent = send(&target, messages).await.unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].control_id, "two");
        assert!(
            sent.iter()
                .all(|s| matches!(&s.outcome, Outcome::Delivered { response: Some(r) } if r.starts_with("AA"))),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_reported_not_hidden() {
        let addr = receiver("AR").await;
        let target = Target {
            connect: addr.to_string(),
            tls: None,
            timeout: Duration::from_secs(5),
        };
        let sent = send(
            &target,
            split_messages(b"MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1\r"),
        )
        .await
        .unwrap();
        assert!(
            matches!(&sent[0].outcome, Outcome::Retryable { error, .. } if error.starts_with("AR")),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn nobody_listening_is_a_clear_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = Target {
            connect: format!("127.0.0.1:{port}"),
            tls: None,
            timeout: Duration::from_secs(2),
        };
        let sent = send(
            &target,
            split_messages(b"MSH|^~\\&|A|B|||x||ORU^R01|1|P|2.5.1\r"),
        )
        .await
        .unwrap();
        assert!(
            matches!(&sent[0].outcome, Outcome::Retryable { error, .. } if error.contains("cannot connect")),
            "{sent:?}"
        );
    }
}
