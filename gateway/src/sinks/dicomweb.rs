//! Sends stored DICOM objects to a DICOMweb server by STOW-RS (PS3.18
//! 10.5): one `POST …/studies` per batch, a `multipart/related;
//! type="application/dicom"` body written here (reqwest's multipart is
//! form-data only), each part streamed from the object's file so a large
//! object is never held in memory.
//!
//! Each object's file is checked against its record (size and SHA-256)
//! before the request; one that changed since it was received is a dead
//! letter and is not sent. The answer decides each object: 200 all stored;
//! 202 (some failed) and 409 (all failed) name the failures in the
//! response's Failed SOP Sequence with a reason: out of resources (A7xx)
//! and processing failures (0110) are tried again, other reasons are
//! permanent; objects not named there are delivered. A 409 that names
//! nothing makes every object of the request permanent. 408, 429, 5xx and
//! network errors are retried; 401 and 403 wait with the reason, as for
//! FHIR (`sinks::fhir`); any other status is permanent.

use super::fhir::auth::Auth;
use super::fhir::{error_chain, parse_retry_after, truncate};
use super::{Delivery, Outcome, Sink};
use crate::config::{DicomWebConfig, Endpoint};
use bytes::Bytes;
use ecko_protocol::dicom::InstanceRecord;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub struct DicomWebSink {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    max_batch: usize,
    max_request_size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DicomWebSinkError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// What the server said of one request.
enum Answer {
    /// Per SOP instance UID that failed: its failure reason.
    Stored {
        failed: HashMap<String, u16>,
    },
    /// Nothing named: every object of the request failed permanently.
    AllRefused(String),
    Retry(String, Option<Duration>),
}

const KEEP_RESPONSE: usize = 2000;
/// Bytes read from a file per chunk of the request body.
const CHUNK: usize = 256 * 1024;

impl DicomWebSink {
    pub fn new(endpoint: &Endpoint, config: &DicomWebConfig) -> Result<Self, DicomWebSinkError> {
        let trust = super::fhir::https_trust(
            &config.auth,
            config.ca_file.as_deref(),
            config.pinned_cert.as_deref(),
        );
        let tls = crate::tls::https_client_config(&trust)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A large study takes long: the endpoint's timeout bounds
            // connecting and each read, not the whole upload.
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(10)))
            .read_timeout(endpoint.timeout)
            .pool_idle_timeout(Duration::from_secs(20))
            .user_agent(concat!("ecko-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DicomWebSinkError::Client(error_chain(&e)))?;
        Ok(DicomWebSink {
            http,
            url: config.url.trim().to_string(),
            auth: Auth::from_config(&config.auth),
            max_batch: config.max_batch.max(1),
            max_request_size: config.max_request_size.0,
        })
    }

    async fn post(&self, records: &[InstanceRecord]) -> Answer {
        let boundary = format!(
            "ecko-{}",
            &hex::encode(Sha256::digest(records[0].sha256.as_bytes()))[..24]
        );
        let mut refreshed = false;
        loop {
            let header = match self.auth.header(&self.http).await {
                Ok(h) => h,
                Err(e) => return Answer::Retry(format!("authentication: {e}"), None),
            };
            let mut request = self
                .http
                .post(&self.url)
                .header(
                    "Content-Type",
                    format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
                )
                .header("Accept", "application/dicom+json")
                .body(reqwest::Body::wrap_stream(body(
                    records.to_vec(),
                    boundary.clone(),
                )));
            if let Some((name, value)) = &header {
                request = request.header(name.as_str(), value.as_str());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => return Answer::Retry(error_chain(&e), None),
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = response.text().await.unwrap_or_default();
            return match status {
                202 | 409 => {
                    let failed = failed_instances(&text);
                    if status == 409 && failed.is_empty() {
                        Answer::AllRefused(format!("HTTP 409: {}", truncate(&text, KEEP_RESPONSE)))
                    } else {
                        Answer::Stored { failed }
                    }
                }
                401 if !refreshed && self.auth.rejected(&header).await => {
                    refreshed = true;
                    continue;
                }
                401 | 403 => Answer::Retry(
                    format!("HTTP {status}: the server refuses this endpoint's credentials or access (check [endpoint.auth]); objects wait: {}", truncate(&text, KEEP_RESPONSE)),
                    retry_after,
                ),
                408 | 429 | 500..=599 => Answer::Retry(format!("HTTP {status}: {}", truncate(&text, KEEP_RESPONSE)), retry_after),
                200..=299 => Answer::Stored { failed: HashMap::new() },
                _ => Answer::AllRefused(format!("HTTP {status}: {}", truncate(&text, KEEP_RESPONSE))),
            };
        }
    }
}

/// The Failed SOP Sequence (0008,1198) of a STOW-RS response in DICOM JSON:
/// Referenced SOP Instance UID (0008,1155) → Failure Reason (0008,1197).
fn failed_instances(text: &str) -> HashMap<String, u16> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return HashMap::new();
    };
    let root = if v.is_array() { v[0].clone() } else { v };
    let mut out = HashMap::new();
    for item in root["00081198"]["Value"].as_array().into_iter().flatten() {
        if let Some(uid) = item["00081155"]["Value"][0].as_str() {
            let reason = item["00081197"]["Value"][0].as_u64().unwrap_or(0x0110);
            out.insert(uid.to_string(), u16::try_from(reason).unwrap_or(0x0110));
        }
    }
    out
}

/// The request body: each object's file between boundaries, read as the
/// request is written.
fn body(
    records: Vec<InstanceRecord>,
    boundary: String,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct State {
        records: std::vec::IntoIter<InstanceRecord>,
        file: Option<tokio::fs::File>,
        boundary: String,
        first: bool,
        done: bool,
    }
    let state = State {
        records: records.into_iter(),
        file: None,
        boundary,
        first: true,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(f) = s.file.as_mut() {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => s.file = None,
                Ok(n) => {
                    buf.truncate(n);
                    return Some((Ok(Bytes::from(buf)), s));
                }
                Err(e) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
        let lead = if s.first { "" } else { "\r\n" };
        match s.records.next() {
            Some(r) => match tokio::fs::File::open(&r.file).await {
                Ok(f) => {
                    s.file = Some(f);
                    s.first = false;
                    let head = format!(
                        "{lead}--{}\r\nContent-Type: application/dicom\r\n\r\n",
                        s.boundary
                    );
                    Some((Ok(Bytes::from(head)), s))
                }
                Err(e) => {
                    s.done = true;
                    Some((Err(e), s))
                }
            },
            None => {
                s.done = true;
                Some((Ok(Bytes::from(format!("{lead}--{}--\r\n", s.boundary))), s))
            }
        }
    })
}

/// Whether the file still holds what was received.
async fn unchanged(record: &InstanceRecord) -> Result<(), String> {
    let path = record.file.clone();
    let (size, sha256) = (record.size, record.sha256.clone());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot open the stored object {path}: {e}"))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut n_total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| format!("reading {path}: {e}"))?;
            if n == 0 {
                break;
            }
            n_total += n as u64;
            hasher.update(&buf[..n]);
        }
        if n_total != size || hex::encode(hasher.finalize()) != sha256 {
            return Err(format!("the stored object {path} is not what was received (SHA-256 or size differs); not sent"));
        }
        Ok(())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

fn is_retryable_reason(reason: u16) -> bool {
    (0xA700..=0xA7FF).contains(&reason) || reason == 0x0110 || reason == 0x0213
}

impl Sink for DicomWebSink {
    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn deliver(&self, batch: &[Delivery]) -> Vec<Outcome> {
        // The objects sent: in order, up to the first that cannot be, and
        // within the request's size (at least one).
        let mut records = Vec::new();
        let mut stopped: Option<Outcome> = None;
        let mut bytes = 0u64;
        for d in batch {
            let record = match InstanceRecord::from_json(&d.payload.to_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    stopped = Some(Outcome::Permanent {
                        error: e.to_string(),
                    });
                    break;
                }
            };
            if !records.is_empty() && bytes + record.size > self.max_request_size {
                break;
            }
            if let Err(e) = unchanged(&record).await {
                stopped = Some(Outcome::Permanent { error: e });
                break;
            }
            bytes += record.size;
            records.push(record);
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        if !records.is_empty() {
            match self.post(&records).await {
                Answer::Stored { failed } => {
                    for r in &records {
                        outcomes.push(match failed.get(&r.sop_instance) {
                            None => Outcome::Delivered {
                                response: Some(format!("stored by STOW-RS at {}", self.url)),
                            },
                            Some(&reason) if is_retryable_reason(reason) => Outcome::Retryable {
                                error: format!(
                                    "the server failed to store it: reason {reason:04X}"
                                ),
                                retry_after: None,
                            },
                            Some(&reason) => Outcome::Permanent {
                                error: format!("the server refused it: reason {reason:04X}"),
                            },
                        });
                        // Keep the lane's order: nothing after a failure counts as delivered.
                        if !matches!(outcomes.last(), Some(Outcome::Delivered { .. })) {
                            break;
                        }
                    }
                }
                Answer::AllRefused(e) => {
                    outcomes.push(Outcome::Permanent { error: e });
                }
                Answer::Retry(e, retry_after) => {
                    outcomes.push(Outcome::Retryable {
                        error: e,
                        retry_after,
                    });
                }
            }
        }
        if outcomes.len() == records.len() {
            if let Some(o) = stopped {
                outcomes.push(o);
            }
        }
        outcomes.resize(batch.len(), Outcome::NotAttempted);
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_sop_sequence_names_each_failure_with_its_reason() {
        let text = r#"{"00081198":{"vr":"SQ","Value":[{"00081150":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},"00081155":{"vr":"UI","Value":["1.2.3"]},"00081197":{"vr":"US","Value":[42752]}}]},"00081199":{"vr":"SQ","Value":[]}}"#;
        let failed = failed_instances(text);
        assert_eq!(failed.get("1.2.3"), Some(&0xA700));
        assert!(is_retryable_reason(0xA700));
        assert!(!is_retryable_reason(0xC000));
        assert!(failed_instances("not json").is_empty());
    }

    #[tokio::test]
    async fn the_body_is_each_file_between_boundaries() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let record = |name: &str, content: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            InstanceRecord {
                file: path.display().to_string(),
                size: content.len() as u64,
                sha256: hex::encode(Sha256::digest(content)),
                sop_class: String::new(),
                sop_instance: name.into(),
                transfer_syntax: String::new(),
                study_uid: String::new(),
                series_uid: String::new(),
                patient_id: None,
                patient_name: None,
                accession_number: None,
                modality: None,
                study_date: None,
                series_number: None,
                instance_number: None,
            }
        };
        let records = vec![record("a", b"AAAA"), record("b", b"BB")];
        assert!(unchanged(&records[0]).await.is_ok());
        let parts: Vec<Bytes> = body(records.clone(), "XYZ".into())
            .map(|c| c.unwrap())
            .collect()
            .await;
        let text = String::from_utf8(parts.concat()).unwrap();
        assert_eq!(
            text,
            "--XYZ\r\nContent-Type: application/dicom\r\n\r\nAAAA\r\n--XYZ\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--XYZ--\r\n"
        );
        std::fs::write(&records[1].file, b"CC").unwrap();
        assert!(unchanged(&records[1])
            .await
            .unwrap_err()
            .contains("not what was received"));
    }
}
