//! "Test connection": can the gateway reach an endpoint's far end right now?
//!
//! The steps below are shared; which of them an endpoint runs is its type's
//! choice (`EndpointType::probe` in `crate::endpoints`).
//!
//! Each check is a list of steps, each with its outcome, detail and time,
//! stopped at the first failure and bounded by a short timeout per step:
//!
//! - MLLP sender: TCP connect, the TLS handshake when configured (with the
//!   sender's own rustls configuration), and on request an MLLP round trip:
//!   an `NMQ^N01` network management query with processing id `T` (test),
//!   whose acknowledgement of any code (`AA`, `AE`, `AR`) proves the far end
//!   reads and answers MLLP. Without the round trip the report says that
//!   only TCP and TLS were checked.
//! - FHIR: TCP connect, the TLS handshake for `https` (with the endpoint's
//!   CA, pin and client certificate), then `GET [base]/metadata` with the
//!   endpoint's authentication; the CapabilityStatement's FHIR version and
//!   software are shown.
//! - MLLP listener and ASTM over TCP: a TCP connect to the address (our own
//!   listener, or the analyzer for an ASTM client). Nothing is sent: a
//!   message to our own listener would be journalled, and an analyzer line
//!   carries one session at a time.
//! - File and drop folders: the directory exists (or can be made, as the
//!   endpoint would) and a file can be created in it and removed. Serial
//!   lines: the device exists.

use crate::config::{Endpoint, FhirAuth, FhirSinkConfig, MllpConfig};
use ecko_protocol::hl7::{ParseOptions, ReceivedAck};
use ecko_protocol::mllp;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any one step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What to check beyond reaching the far end.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions {
    pub timeout: Duration,
    /// MLLP sender: also send a test query and wait for its ACK.
    pub mllp_round_trip: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            timeout: STEP_TIMEOUT,
            mllp_round_trip: false,
        }
    }
}

/// One step of a check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub ms: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    pub endpoint: String,
    pub ok: bool,
    pub steps: Vec<Step>,
    /// What was not checked, when something was not.
    pub note: Option<String>,
}

/// The steps of one check so far; each endpoint type runs its own.
pub struct Steps {
    steps: Vec<Step>,
    timeout: Duration,
}

impl Steps {
    /// Runs one step; `Err` carries its failure and ends the check.
    pub async fn run<T, F>(&mut self, name: &str, f: F) -> Option<T>
    where
        F: std::future::Future<Output = Result<(T, String), String>>,
    {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        let ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok((value, detail)) => {
                self.steps.push(Step {
                    name: name.into(),
                    ok: true,
                    detail,
                    ms,
                });
                Some(value)
            }
            Err(detail) => {
                self.steps.push(Step {
                    name: name.into(),
                    ok: false,
                    detail,
                    ms,
                });
                None
            }
        }
    }
}

/// Checks `endpoint` as configured (not as it may be running).
pub async fn probe(endpoint: &Endpoint, options: ProbeOptions) -> ProbeReport {
    let mut steps = Steps {
        steps: Vec::new(),
        timeout: options.timeout,
    };
    let note = crate::endpoints::of(&endpoint.kind)
        .probe(endpoint, &mut steps, options)
        .await;
    ProbeReport {
        endpoint: endpoint.name.clone(),
        ok: steps.steps.iter().all(|s| s.ok) && !steps.steps.is_empty(),
        steps: steps.steps,
        note,
    }
}

/// Our own listener's address as a client reaches it.
pub fn local(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

pub async fn tcp(steps: &mut Steps, addr: &str) -> Option<TcpStream> {
    let addr = addr.to_string();
    steps
        .run("TCP connect", async move {
            let s = TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let peer = s.peer_addr().map_or(addr.clone(), |p| p.to_string());
            Ok((s, format!("connected to {peer}")))
        })
        .await
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub async fn mllp_sender(c: &MllpConfig, steps: &mut Steps, round_trip: bool) -> Option<String> {
    let connect = c.connect.clone().unwrap_or_default();
    let tcp_stream = tcp(steps, &connect).await?;
    let mut stream: Box<dyn Stream> = match &c.tls {
        None => Box::new(tcp_stream),
        Some(t) => {
            let t = t.clone();
            let connect = connect.clone();
            let tls = steps
                .run("TLS handshake", async move {
                    let config = crate::tls::client_config(&t).map_err(|e| e.to_string())?;
                    let name = crate::tls::server_name(&t, &connect).map_err(|e| e.to_string())?;
                    let s = tokio_rustls::TlsConnector::from(config)
                        .connect(name.clone(), tcp_stream)
                        .await
                        .map_err(|e| format!("TLS handshake with {connect} failed: {e}"))?;
                    let version = s
                        .get_ref()
                        .1
                        .protocol_version()
                        .map_or("TLS".into(), |v| format!("{v:?}"));
                    Ok((
                        s,
                        format!("{version}, server certificate valid for {name:?}"),
                    ))
                })
                .await?;
            Box::new(tls)
        }
    };
    if !round_trip {
        return Some("Only TCP and TLS were checked; no message was sent.".into());
    }
    let options = ParseOptions {
        fallback_charset: c
            .fallback_charset()
            .unwrap_or(ecko_protocol::hl7::Charset::Windows1252),
    };
    let max = usize::try_from(c.max_message_size.0).unwrap_or(usize::MAX);
    steps
        .run("MLLP round trip", async move {
            let control = format!("ECKO-TEST-{:08X}", rand::random::<u32>());
            let now = jiff::Zoned::now().strftime("%Y%m%d%H%M%S").to_string();
            let query = format!(
                "MSH|^~\\&|ECKO-EDGE|GATEWAY|||{now}||NMQ^N01^NMQ_N01|{control}|T|2.5\rNCK|{now}\r"
            );
            stream
                .write_all(&mllp::encode(query.as_bytes()))
                .await
                .map_err(|e| format!("sending the test query failed: {e}"))?;
            stream
                .flush()
                .await
                .map_err(|e| format!("sending the test query failed: {e}"))?;
            let mut decoder = mllp::Decoder::new(max);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                while let Some(event) = decoder.next_event() {
                    let mllp::Event::Frame(frame) = event else {
                        continue;
                    };
                    let ack = ReceivedAck::parse(&frame, &options)
                        .map_err(|e| format!("the answer is not an HL7 acknowledgement: {e}"))?;
                    if !ack.acknowledges(&control) {
                        return Err(format!(
                            "the answer acknowledges `{}`, not the test query `{control}`",
                            ack.control_id
                        ));
                    }
                    let text = if ack.text.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", ack.text)
                    };
                    return Ok((
                        (),
                        format!(
                            "NMQ^N01 {control} answered {}{text} (any code proves the far end speaks MLLP)",
                            ack.code.as_str()
                        ),
                    ));
                }
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| format!("reading the answer failed: {e}"))?;
                if n == 0 {
                    return Err("the far end closed the connection without answering".into());
                }
                decoder.push(&buf[..n], Instant::now());
            }
        })
        .await;
    None
}

pub async fn fhir(endpoint: &Endpoint, c: &FhirSinkConfig, steps: &mut Steps) {
    let url = c.url.trim().to_string();
    let parsed = match reqwest::Url::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            steps
                .run::<(), _>("URL", async move { Err(format!("`{url}`: {e}")) })
                .await;
            return;
        }
    };
    let host = parsed.host_str().unwrap_or("").to_string();
    let Some(port) = parsed.port_or_known_default() else {
        return;
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let Some(tcp_stream) = tcp(steps, &addr).await else {
        return;
    };
    if parsed.scheme() == "https" {
        let trust = crate::tls::HttpsTrust {
            ca_file: c.ca_file.as_deref().map(crate::config::resolve),
            pinned_cert: c.pinned_cert.as_deref().map(crate::config::resolve),
            identity: match &c.auth {
                FhirAuth::ClientCertificate { cert, key } => {
                    Some((crate::config::resolve(cert), crate::config::resolve(key)))
                }
                _ => None,
            },
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let handshake = steps
            .run("TLS handshake", async move {
                let config = crate::tls::https_client_config(&trust).map_err(|e| e.to_string())?;
                let name = crate::tls::client::host_name(&host).map_err(|e| e.to_string())?;
                let s = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                    .connect(name, tcp_stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
                let version = s
                    .get_ref()
                    .1
                    .protocol_version()
                    .map_or("TLS".into(), |v| format!("{v:?}"));
                Ok(((), format!("{version}, server certificate accepted")))
            })
            .await;
        if handshake.is_none() {
            return;
        }
    } else {
        drop(tcp_stream);
    }
    let mut short = endpoint.clone();
    short.timeout = steps.timeout;
    let sink = match crate::sinks::fhir::FhirSink::new(&short, c) {
        Ok(s) => s,
        Err(e) => {
            let e = e.to_string();
            steps
                .run::<(), _>("HTTP client", async move { Err(e) })
                .await;
            return;
        }
    };
    let base = url.trim_end_matches('/').to_string();
    steps
        .run("GET metadata", async move {
            let (status, body) = sink.metadata().await?;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let what = match v.get("resourceType").and_then(|r| r.as_str()) {
                Some("CapabilityStatement") => format!(
                    "CapabilityStatement, FHIR {}{}",
                    v.get("fhirVersion").and_then(|f| f.as_str()).unwrap_or("?"),
                    v.pointer("/software/name")
                        .and_then(|s| s.as_str())
                        .map(|s| format!(", {s}"))
                        .unwrap_or_default()
                ),
                Some(other) => format!("a {other}, not a CapabilityStatement"),
                None => "no FHIR resource".into(),
            };
            let detail = format!("{base}/metadata answered HTTP {status}: {what}");
            match status {
                200..=299 if what.starts_with("CapabilityStatement") => Ok(((), detail)),
                401 | 403 => Err(format!("{detail} (authentication refused)")),
                _ => Err(detail),
            }
        })
        .await;
}

pub async fn directory(steps: &mut Steps, dir: &std::path::Path) {
    let dir = dir.to_path_buf();
    steps
        .run("directory", async move {
            // The endpoint makes its directory when it is missing; so does
            // the check.
            let existed = tokio::fs::metadata(&dir).await.is_ok();
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let probe = dir.join(format!(".ecko-probe-{:08x}", rand::random::<u32>()));
            tokio::fs::write(&probe, b"")
                .await
                .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
            let _ = tokio::fs::remove_file(&probe).await;
            Ok((
                (),
                format!(
                    "{} {} and is writable",
                    dir.display(),
                    if existed { "exists" } else { "was created" }
                ),
            ))
        })
        .await;
}

#[cfg(test)]
mod tests;
