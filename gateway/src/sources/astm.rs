//! ASTM analyzers over TCP (`astm-tcp`, server or client) and serial lines
//! (`astm-serial`): results in, orders out.
//!
//! Each connected line runs one [`Link`](ecko_protocol::astm::Link) in
//! [`session::drive`]; this module only gets lines (accepts, connects, opens
//! the device, and again with backoff when it goes away).
//!
//! # What is stored, and when the analyzer hears about it
//!
//! - A complete `H`..`L` result message is journalled as message type
//!   `ASTM`, content type `application/x-astm`, payload = the records, each
//!   followed by CR; duplicate key = [`content_hash`] of the records; control
//!   id = H's message control id; patient id = the first P's P-3 (else P-4,
//!   P-5). The frame carrying `L` is acknowledged only when the receipt
//!   resolves. A refusal (journal full, disk low) answers that frame `NAK`
//!   (the analyzer keeps its copy and retries) and answers new `ENQ`s `NAK`
//!   until the journal takes messages again. A resend of a stored message
//!   gets its `ACK` and is not queued twice.
//! - A message whose records do not parse is stored all the same (the
//!   analyzer's copy must not be lost); the transform reports it downstream.
//!   The analyzer's sender name (H-5) is kept beside it: the analyzer is the
//!   endpoint plus that name, and orders may be aimed at one.
//! - A host query (Q records, no patients; judged by record types alone when
//!   the message does not parse) is acknowledged at once and answered in a
//!   new session from the orders in the journal (matching `O` records, or
//!   the no-information answer; `L|1|Q` when it cannot be read), so it works
//!   while the uplink is down. It is also offered to the routes as
//!   `ASTM-QUERY` (a code of its own, so a route for `ASTM` results does not
//!   take it); a configuration without a route for it simply does not keep
//!   it.
//! - Records that never became a message (no `L` before `EOT`, the receive
//!   timer, too large) are kept in the journal's `astm_incomplete` table and
//!   logged, never routed: they must never turn into results, and a route
//!   filter on `ASTM` would also match an `ASTM^…` type.
//! - Orders are marked sent only after the analyzer acknowledged the last
//!   frame of the message that carried them. With `orders = "broadcast"`,
//!   pending orders are downloaded whenever the line is idle.
//! - A line that ends settles first: see [`session`] for what that means.
//!
//! [`content_hash`]: ecko_protocol::astm::message::content_hash

pub mod answer;
pub mod live_trace;
pub mod session;

use super::SourceContext;
use crate::config::{
    AstmFraming, AstmLineTerminator, AstmOrderMode, AstmProfile, AstmSerialConfig, AstmTcpConfig,
    Endpoint, TcpRole,
};
use crate::journal::StoredOrder;
use crate::net::{Admission, Cut, Paced, Reason};
use crate::service::progress::BEAT_EVERY;
use ecko_hal::{SerialErrorKind, SerialPorts};
use ecko_protocol::astm::link::{Framing, LineTerminator, LinkConfig, Profile, Timers};
use ecko_protocol::astm::trace;
pub use live_trace::TraceHub;
use session::End;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a session needs to know about its endpoint, and what the lines of
/// one endpoint share.
pub struct Setup {
    pub name: String,
    pub link: LinkConfig,
    pub profile: AstmProfile,
    /// Where the line traffic goes for `ecko-gateway trace`.
    trace: TraceHub,
    /// Several lines at once (a TCP server several analyzers connect to).
    shared: bool,
    /// Orders in a message queued on some line, until their `sent` mark
    /// has committed or the message failed: a broadcast leaves them out.
    claimed: Mutex<HashSet<i64>>,
    /// Host-query answers whose line closed before they were taken.
    held: Mutex<Vec<session::Outgoing>>,
}

impl Setup {
    pub fn new(name: &str, profile: AstmProfile) -> Self {
        let framing = match profile.framing {
            AstmFraming::E1381 => Framing::E1381,
            AstmFraming::Raw => Framing::Raw {
                terminator: match profile.line_terminator {
                    AstmLineTerminator::Cr => LineTerminator::Cr,
                    AstmLineTerminator::Crlf => LineTerminator::CrLf,
                    AstmLineTerminator::Lf => LineTerminator::Lf,
                },
            },
        };
        let link = LinkConfig {
            profile: Profile {
                framing,
                max_frame_text: profile.max_frame_text,
                checksum_required: profile.checksum_required,
                max_message_bytes: usize::try_from(profile.max_message_size).unwrap_or(usize::MAX),
            },
            timers: Timers {
                receive: profile.receive_timeout,
                answer: profile.answer_timeout,
                busy_retry: profile.busy_retry,
                contention_retry: profile.contention_retry,
                interrupt_retry: profile.interrupt_retry,
            },
            max_retransmissions: profile.max_retransmissions,
        };
        Setup {
            name: name.to_string(),
            link,
            profile,
            trace: TraceHub::default(),
            shared: false,
            claimed: Mutex::new(HashSet::new()),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Publishes the line traffic to `hub` (the gateway's, which
    /// `ecko-gateway trace` reads).
    pub fn traced_to(mut self, hub: TraceHub) -> Self {
        self.trace = hub;
        self
    }

    /// For an endpoint whose lines run side by side (TCP server).
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    fn broadcast(&self) -> bool {
        self.profile.orders == AstmOrderMode::Broadcast
    }

    fn claim(&self, orders: &[i64]) {
        lock(&self.claimed).extend(orders);
    }

    fn release(&self, orders: &[i64]) {
        let mut claimed = lock(&self.claimed);
        for id in orders {
            claimed.remove(id);
        }
    }

    fn unclaimed(&self, orders: Vec<StoredOrder>) -> Vec<StoredOrder> {
        let claimed = lock(&self.claimed);
        orders
            .into_iter()
            .filter(|o| !claimed.contains(&o.id))
            .collect()
    }

    fn hold(&self, answer: session::Outgoing) {
        lock(&self.held).push(answer);
    }

    /// Held answers a line may send: on an endpoint with one line at a time
    /// all of them; on a shared one those for the analyzer `sender` the
    /// line identified (or, before that, those for no analyzer in
    /// particular).
    fn take_held(&self, sender: Option<&str>) -> Vec<session::Outgoing> {
        let mut held = lock(&self.held);
        let (take, keep) = std::mem::take(&mut *held)
            .into_iter()
            .partition(|a| !self.shared || a.sender.as_deref() == sender);
        *held = keep;
        take
    }

    fn trace(&self, direction: trace::Direction, bytes: &[u8]) {
        self.trace.publish(&self.name, direction, bytes);
        tracing::debug!(
            target: "ecko_gateway::astm::line",
            endpoint = %self.name,
            "{}",
            trace::line("", direction, bytes).trim_start()
        );
    }
}

/// Exponential backoff between attempts to get a line.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);

    fn new(max: Duration) -> Self {
        Backoff {
            next: Self::FIRST.min(max),
            max,
        }
    }
    fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
    /// Sleeps the current backoff (or until shutdown: then `false`).
    async fn wait(&mut self, cx: &SourceContext) -> bool {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = cx.shutdown.cancelled() => false,
            _ = cx.heartbeat.sleep(wait) => true,
        }
    }
}

fn log_end(name: &str, end: &End, what: &str) {
    match end {
        End::Closed => tracing::info!(endpoint = name, "ASTM {what} closed"),
        End::Shutdown => {}
        End::Io(e) => tracing::warn!(endpoint = name, error = %e, "ASTM {what} failed"),
    }
}

/// Runs an `astm-tcp` endpoint until shutdown.
pub async fn run_tcp(
    endpoint: Endpoint,
    config: AstmTcpConfig,
    cx: SourceContext,
    trace: TraceHub,
) {
    let setup = Setup::new(&endpoint.name, config.profile()).traced_to(trace);
    let setup = Arc::new(match config.role {
        TcpRole::Server => setup.shared(),
        TcpRole::Client => setup,
    });
    match config.role {
        TcpRole::Server => serve(setup, &config, cx).await,
        TcpRole::Client => connect(setup, &config.address, cx).await,
    }
}

/// The TCP server: analyzers connect, each admitted and paced by
/// [`crate::net`] (`allow`, `max_connections_per_address`,
/// `max_connections`; `transfer_timeout`, `min_data_rate` over
/// `rate_window`, `idle_timeout`), every refusal and cut logged and counted.
async fn serve(setup: Arc<Setup>, config: &AstmTcpConfig, cx: SourceContext) {
    let address = config.address.as_str();
    let admission = Admission::new(config.admission());
    let pace = config.pace();
    let name = setup.name.clone();
    let mut backoff = Backoff::new(setup.profile.reconnect_max);
    let listener = loop {
        match crate::net::low_port::bind(address).await {
            Ok(l) => break l,
            Err(e) => {
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("{}{address}: {e}", crate::service::readiness::LISTEN_FAILED),
                );
                tracing::error!(endpoint = %name, address, error = %e, "cannot listen for ASTM connections; trying again");
                if !backoff.wait(&cx).await {
                    return;
                }
            }
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| address.to_string(), |a| a.to_string());
    tracing::info!(endpoint = %name, address = %local, "ASTM endpoint listening");
    cx.health
        .up(&name, cx.journal.now_ms(), format!("listening on {local}"));
    let mut sessions = JoinSet::new();
    let mut beat = tokio::time::interval(BEAT_EVERY);
    loop {
        cx.heartbeat.beat();
        tokio::select! {
            _ = cx.shutdown.cancelled() => break,
            _ = beat.tick() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match admission.admit(peer.ip()) {
                        Ok(admitted) => admitted.permit,
                        Err(reason) => {
                            cx.counters.connections.refused(&name, peer, reason);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    tracing::info!(endpoint = %name, %peer, "ASTM analyzer connected");
                    let setup = setup.clone();
                    let cx = cx.clone();
                    sessions.spawn(async move {
                        let stream = Paced::new(stream, pace);
                        let handle = stream.handle();
                        let drive = session::drive_paced(stream, &setup, &cx, Some(handle.clone()));
                        tokio::pin!(drive);
                        // Displaced: cut like a slow line, so the session
                        // still settles what it received.
                        let end = tokio::select! {
                            end = &mut drive => end,
                            _ = permit.displaced() => {
                                handle.cut(Reason::Displaced);
                                drive.await
                            }
                        };
                        match &end {
                            End::Io(e) if Cut::of(e).is_some() => {
                                let reason = Cut::of(e).unwrap_or(Reason::Idle);
                                cx.counters.connections.refused(&setup.name, peer, reason);
                            }
                            end => log_end(&setup.name, end, "connection"),
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "accepting an ASTM connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    cx.health.down(&name, cx.journal.now_ms(), "stopped");
    // Sessions finish the commit they started, then return.
    while sessions.join_next().await.is_some() {}
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(setup: Arc<Setup>, address: &str, cx: SourceContext) {
    let name = setup.name.clone();
    let mut backoff = Backoff::new(setup.profile.reconnect_max);
    loop {
        let attempt = tokio::select! {
            _ = cx.shutdown.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address)) => r,
        };
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(endpoint = %name, address, "connected to ASTM analyzer");
                cx.health.up(
                    &name,
                    cx.journal.now_ms(),
                    format!("connected to {address}"),
                );
                backoff.reset();
                let end = session::drive(stream, &setup, &cx).await;
                log_end(&name, &end, "connection");
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("disconnected from {address}"),
                );
                if matches!(end, End::Shutdown) {
                    return;
                }
            }
            Ok(Err(e)) => {
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("cannot connect to {address}: {e}"),
                );
                tracing::debug!(endpoint = %name, address, error = %e, "cannot connect to ASTM analyzer")
            }
            Err(_) => {
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("connecting to {address} timed out"),
                );
                tracing::debug!(endpoint = %name, address, "connecting to ASTM analyzer timed out")
            }
        }
        if !backoff.wait(&cx).await {
            return;
        }
    }
}

/// Runs an `astm-serial` endpoint until shutdown: opens the device, drives
/// it, and opens it again with backoff whenever it goes away.
pub async fn run_serial(
    endpoint: Endpoint,
    config: AstmSerialConfig,
    ports: Arc<dyn SerialPorts>,
    cx: SourceContext,
    trace: TraceHub,
) {
    let setup = Setup::new(&endpoint.name, config.profile()).traced_to(trace);
    let settings = config.serial_settings();
    let name = setup.name.clone();
    let mut backoff = Backoff::new(setup.profile.reconnect_max);
    let mut last_error: Option<SerialErrorKind> = None;
    loop {
        if cx.shutdown.is_cancelled() {
            return;
        }
        match ports.open(&settings) {
            Ok(line) => {
                tracing::info!(endpoint = %name, device = %settings.path.display(), baud = settings.baud, "ASTM serial line open");
                cx.health.up(
                    &name,
                    cx.journal.now_ms(),
                    format!("{} open", settings.path.display()),
                );
                backoff.reset();
                last_error = None;
                let end = session::drive(line, &setup, &cx).await;
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("{} closed", settings.path.display()),
                );
                if matches!(end, End::Shutdown) {
                    return;
                }
                log_end(&name, &end, "serial line");
            }
            Err(e) => {
                cx.health.down(
                    &name,
                    cx.journal.now_ms(),
                    format!("cannot open {}: {e}", settings.path.display()),
                );
                if last_error != Some(e.kind) {
                    tracing::warn!(endpoint = %name, error = %e, "cannot open the serial device; trying again");
                    last_error = Some(e.kind);
                }
            }
        }
        if !backoff.wait(&cx).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
