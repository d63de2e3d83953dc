//! An HTTP service on one admitted connection: hyper's header timeout
//! for every request (including the wait for the next one on a kept-alive
//! connection), the connection closed gracefully when its permit is
//! displaced or the listener stops. The admin page and the `rest` listener
//! serve through it.

use super::{Admission, ConnectionCounters, Reason};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom an HTTP listener serves and how long a request's headers may take.
pub struct Limits {
    /// The listener's name in log lines and refusal counts.
    pub label: String,
    pub admission: Admission,
    pub counters: ConnectionCounters,
    pub header_timeout: Duration,
}

/// Accepts connections until `shutdown`: each admitted (or refused and
/// counted), its TLS handshake bounded, then served with the router
/// `app(peer)` makes for it. `beat` is called each time round and every
/// `beat_every` while it waits, for the watchdog.
pub async fn accept_loop<A, B>(
    listener: tokio::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: A,
    limits: Limits,
    beat: B,
    beat_every: Duration,
    shutdown: CancellationToken,
) where
    A: Fn(SocketAddr) -> axum::Router,
    B: Fn(),
{
    let limits = Arc::new(limits);
    let mut ticks = tokio::time::interval(beat_every);
    loop {
        beat();
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = %limits.label, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match limits.admission.admit(peer.ip()) {
            Ok(admitted) => admitted.permit,
            Err(reason) => {
                limits.counters.refused(&limits.label, peer, reason);
                continue;
            }
        };
        let app = app(peer);
        let acceptor = acceptor.clone();
        let stop = shutdown.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let timeout = limits.header_timeout;
            let cut = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_connection(s, app, timeout, &permit, stop).await,
                        Ok(Err(e)) => {
                            tracing::debug!(listener = %limits.label, peer = %peer, error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(listener = %limits.label, peer = %peer, "TLS handshake timed out");
                            Some(Reason::FrameDeadline)
                        }
                    }
                }
                None => serve_connection(stream, app, timeout, &permit, stop).await,
            };
            if let Some(reason) = cut {
                limits.counters.refused(&limits.label, peer, reason);
            }
            drop(permit);
        });
    }
}

/// Serves one connection until it ends; the reason when it was cut.
pub async fn serve_connection<S>(
    stream: S,
    app: axum::Router,
    header_timeout: Duration,
    permit: &super::Permit,
    stop: CancellationToken,
) -> Option<Reason>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn =
        builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = permit.displaced() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            return Some(Reason::Displaced);
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            return None;
        }
    };
    match ended {
        Err(e)
            if e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_timeout) =>
        {
            Some(Reason::FrameDeadline)
        }
        _ => None,
    }
}
