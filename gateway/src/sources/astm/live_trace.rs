//! Line traces of the running gateway, for `ecko-gateway trace ENDPOINT`.
//!
//! Every ASTM line publishes what it reads and writes to the gateway's
//! [`TraceHub`] (a broadcast channel: with nobody watching, publishing is a
//! counter check). The gateway serves the hub on a Unix socket beside its
//! journal ([`socket_path`]), so a field engineer watches one endpoint of the
//! running service without stopping it or taking its ports:
//!
//! ```text
//! client → gateway   ENDPOINT\n
//! gateway → client   ok ENDPOINT\n  then one line per chunk of traffic, until either side closes
//!              or    error: …\n     and the socket closes
//! ```
//!
//! A line reads `2026-01-15 08:25:00.120+01:00 <- <ENQ>`: the time in the
//! site's zone (`[site] time_zone`) with its offset, `<-` from the analyzer,
//! `->` to it, control characters by name ([`ecko_protocol::astm::trace`]).
//!
//! The traffic carries patient data: the socket is created with mode 0600,
//! so only the gateway's own user (or root) can attach. A client that reads
//! slower than the line loses chunks (and is told how many) rather than
//! holding the line up.

use ecko_protocol::astm::trace::{self, Direction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Chunks kept for a watcher that is behind.
const BACKLOG: usize = 1024;
/// Longest a client may take to name its endpoint.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// One read from, or write to, a line.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub endpoint: Arc<str>,
    pub at: jiff::Timestamp,
    pub direction: Direction,
    pub bytes: Vec<u8>,
}

/// Where every ASTM line of the gateway publishes its traffic.
#[derive(Debug, Clone)]
pub struct TraceHub {
    tx: broadcast::Sender<Arc<Chunk>>,
}

impl Default for TraceHub {
    fn default() -> Self {
        TraceHub {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl TraceHub {
    /// Publishes a chunk, timestamped now; nothing happens while nobody
    /// watches.
    pub fn publish(&self, endpoint: &str, direction: Direction, bytes: &[u8]) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let _ = self.tx.send(Arc::new(Chunk {
            endpoint: endpoint.into(),
            at: jiff::Timestamp::now(),
            direction,
            bytes: bytes.to_vec(),
        }));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Chunk>> {
        self.tx.subscribe()
    }
}

/// The trace socket of the gateway whose journal is at `journal`.
pub fn socket_path(journal: &Path) -> PathBuf {
    journal
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("astm-trace.sock")
}

/// One trace line, the time in `tz`.
pub fn format_chunk(chunk: &Chunk, tz: &jiff::tz::TimeZone) -> String {
    let at = chunk
        .at
        .to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S%.3f%:z")
        .to_string();
    trace::line(&at, chunk.direction, &chunk.bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("no running gateway serves line traces at {0}")]
    NoGateway(PathBuf),
    #[error("the gateway refused: {0}")]
    Refused(String),
    #[error("trace socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the trace socket, replacing a stale one; refuses while another
/// process serves it.
pub async fn bind(path: &Path) -> Result<UnixListener, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another gateway serves line traces here",
            )));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves line traces of `endpoints` until `stop`; removes the socket file
/// when done.
/// The ASTM endpoints running now: asked at each client's hello, so an
/// endpoint added by an edit can be traced without a restart.
pub type RunningAstmEndpoints = std::sync::Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    hub: TraceHub,
    tz: crate::sources::SiteTimeZone,
    endpoints: RunningAstmEndpoints,
    stop: CancellationToken,
) {
    tracing::info!(socket = %path.display(), "serving ASTM line traces (ecko-gateway trace)");
    let mut clients = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let hub = hub.clone();
                    let tz = tz.clone();
                    let endpoints = endpoints.clone();
                    let stop = stop.clone();
                    clients.spawn(async move {
                        if let Err(e) = watch(stream, &hub, &tz.get(), &endpoints(), &stop).await {
                            tracing::debug!(error = %e, "a line trace client went away");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a line trace client failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    clients.shutdown().await;
    let _ = std::fs::remove_file(&path);
}

async fn watch(
    stream: UnixStream,
    hub: &TraceHub,
    tz: &jiff::tz::TimeZone,
    endpoints: &[String],
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read.take(256));
    let mut hello = String::new();
    match tokio::time::timeout(HELLO_TIMEOUT, read.read_line(&mut hello)).await {
        Ok(result) => result?,
        Err(_) => return Ok(()),
    };
    let endpoint = hello.trim();
    if !endpoints.iter().any(|e| e == endpoint) {
        let known = endpoints.join(", ");
        write
            .write_all(
                format!("error: `{endpoint}` is not an ASTM endpoint of the running gateway (it has: {known})\n")
                    .as_bytes(),
            )
            .await?;
        return Ok(());
    }
    let mut chunks = hub.subscribe();
    write
        .write_all(format!("ok {endpoint}\n").as_bytes())
        .await?;
    let mut rest = [0u8; 64];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            // The client hung up (or sent more than its hello).
            _ = read.read(&mut rest) => return Ok(()),
            chunk = chunks.recv() => match chunk {
                Ok(chunk) if &*chunk.endpoint == endpoint => {
                    let mut line = format_chunk(&chunk, tz);
                    line.push('\n');
                    write.write_all(line.as_bytes()).await?;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    write
                        .write_all(format!("… {n} chunks not shown: the trace fell behind the line\n").as_bytes())
                        .await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// Attaches to the running gateway's trace of `endpoint` and copies it to
/// `out` until the gateway closes it.
pub async fn follow<W>(path: &Path, endpoint: &str, out: &mut W) -> Result<(), TraceError>
where
    W: AsyncWrite + Unpin,
{
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(TraceError::NoGateway(path.to_path_buf()))
        }
        Err(e) => return Err(io(e)),
    };
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{endpoint}\n").as_bytes())
        .await
        .map_err(io)?;
    let mut read = BufReader::new(read);
    let mut answer = String::new();
    read.read_line(&mut answer).await.map_err(io)?;
    if !answer.starts_with("ok ") {
        let reason = answer.trim().trim_start_matches("error: ").to_string();
        return Err(TraceError::Refused(if reason.is_empty() {
            "the connection closed".into()
        } else {
            reason
        }));
    }
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.map_err(io)? == 0 {
            return Ok(());
        }
        out.write_all(line.as_bytes()).await.map_err(io)?;
        out.flush().await.map_err(io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watcher_sees_its_endpoints_traffic_in_the_site_zone_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("journal.db"));
        let hub = TraceHub::default();
        let stop = CancellationToken::new();
        let listener = bind(&path).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tz = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        let server = tokio::spawn(serve(
            listener,
            path.clone(),
            hub.clone(),
            tz.into(),
            std::sync::Arc::new(|| vec!["chem".into(), "haem".into()]),
            stop.clone(),
        ));
        let (mut ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let follower = {
            let path = path.clone();
            tokio::spawn(async move { follow(&path, "chem", &mut ours).await })
        };
        // Publish until the watcher is subscribed, then a few chunks.
        for _ in 0..100 {
            if hub.tx.receiver_count() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hub.publish("haem", Direction::In, &[0x05]);
        hub.publish("chem", Direction::In, &[0x05]);
        hub.publish("chem", Direction::Out, &[0x06]);
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while text.lines().count() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(5), theirs.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("+05:30 <- <ENQ>"), "{text}");
        assert!(lines[1].ends_with("+05:30 -> <ACK>"), "{text}");
        let today = jiff::Timestamp::now()
            .to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
            .strftime("%Y-%m-%d")
            .to_string();
        assert!(lines[0].starts_with(&today), "{text}");
        // Shutdown ends the watch and removes the socket.
        stop.cancel();
        server.await.unwrap();
        assert!(follower.await.unwrap().is_ok());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_unknown_endpoint_or_no_gateway_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_path(&dir.path().join("journal.db"));
        let mut sink = tokio::io::sink();
        assert!(matches!(
            follow(&path, "chem", &mut sink).await,
            Err(TraceError::NoGateway(_))
        ));
        let stop = CancellationToken::new();
        let listener = bind(&path).await.unwrap();
        // A second gateway cannot take the socket over.
        assert!(bind(&path).await.is_err());
        let server = tokio::spawn(serve(
            listener,
            path.clone(),
            TraceHub::default(),
            jiff::tz::TimeZone::UTC.into(),
            std::sync::Arc::new(|| vec!["chem".into()]),
            stop.clone(),
        ));
        match follow(&path, "mllp-in", &mut sink).await {
            Err(TraceError::Refused(reason)) => {
                assert!(
                    reason.contains("`mllp-in` is not an ASTM endpoint"),
                    "{reason}"
                );
                assert!(reason.contains("chem"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        stop.cancel();
        server.await.unwrap();
        // A stale socket file left by a crash is replaced.
        std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(bind(&path).await.is_ok());
    }
}
