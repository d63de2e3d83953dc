//! One connected line (a TCP stream or an open serial device) driven by one
//! [`Link`] until it ends.
//!
//! # Nothing is dropped when the line ends
//!
//! A line ends by end of file, an I/O error or shutdown. Before [`drive`]
//! returns, `Session::finish`:
//!
//! 1. handles what the link already produced (a write that failed midway
//!    leaves events behind: a completed message among them is committed),
//!    then awaits every commit, in order; on shutdown, while the line is
//!    still there, the analyzer gets the `ACK` (or `NAK`) of each;
//! 2. closes the link ([`Link::close`]): records that never formed a message
//!    become incomplete transmissions, messages not yet sent are handed back;
//! 3. awaits every journal write in the background (incomplete
//!    transmissions, orders marked sent, host-query lookups, queries kept);
//! 4. keeps host-query answers that could not be sent with the endpoint
//!    (`Setup::hold`): the next line to the same analyzer sends them.
//!
//! # Orders are never downloaded twice
//!
//! An order is *claimed* on its endpoint (`Setup::claim`) from the moment a
//! message carrying it is queued until its `sent` mark has committed (or the
//! message failed). A broadcast leaves claimed orders out, and a new
//! broadcast starts only when no mark of this line is still being written:
//! the journal's `pending` list is only read once it is true.
//!
//! # Answers are retried
//!
//! A host-query answer that the analyzer did not take (six `NAK`s on one
//! frame, no answer in time, the line closing) is queued again, up to
//! [`ANSWER_ATTEMPTS`] attempts in all; then it is given up with an error in
//! the log. Broadcasts need no such count: their orders stay pending and the
//! next broadcast carries them.

use super::{answer, Setup};
use crate::journal::{IngestError, Receipt, StoredOrder};
use crate::net::PaceHandle;
use crate::service::progress::BEAT_EVERY;
use crate::sources::SourceContext;
use ecko_message::Envelope;
use ecko_protocol::astm::link::{
    CloseCause, Event, Link, LinkPhase, OutboundId, Output, SendFailure,
};
use ecko_protocol::astm::message::{Message, ParseOptions};
use ecko_protocol::astm::trace::Direction;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Longest a write to the line may take (a line held by flow control must
/// not hang the session).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a line that had to refuse messages asks the journal again.
const READY_PROBE: Duration = Duration::from_secs(1);
/// Most orders downloaded in one message.
const BROADCAST_BATCH: usize = 50;
/// How many times a host-query answer is offered before it is given up.
pub const ANSWER_ATTEMPTS: u32 = 5;

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed the line (or the device disappeared: EOF).
    Closed,
    Shutdown,
    Io(std::io::Error),
}

/// What an outbound message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// The answer to a host query: retried, kept across lines.
    Answer,
    /// A download of pending orders: its orders stay pending if it fails.
    Broadcast,
}

/// An outbound message with the orders it carries.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    purpose: Purpose,
    records: Vec<Vec<u8>>,
    orders: Vec<i64>,
    /// The analyzer it is for (H-5), when known.
    pub(super) sender: Option<String>,
    /// Attempts that failed so far.
    failures: u32,
}

/// A journal write or lookup running beside the line, and what it found.
enum Settled {
    /// Orders for a host query, ready to send.
    Answer(Outgoing),
    /// Pending orders for a broadcast (possibly none).
    Broadcast(Vec<StoredOrder>),
    /// The `sent` mark of these orders committed (or failed).
    Marked(Vec<i64>),
    /// Something kept for inspection or for the routes; nothing follows.
    Kept,
}

type Commit = Pin<Box<dyn Future<Output = Result<Receipt, IngestError>> + Send>>;

/// Drives `io` until the peer closes it, it fails, or shutdown; returns
/// only when everything the line delivered is settled (see the module
/// notes).
pub async fn drive<S>(io: S, setup: &Setup, cx: &SourceContext) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive_paced(io, setup, cx, None).await
}

/// [`drive`], telling `pace` when a transfer is complete: when the link
/// returns to neutral (the analyzer's `EOT`, or ours) and when a message
/// completes (raw framing has no `EOT`). Bytes that start no transfer (noise
/// on a neutral line) complete nothing, so a trickle of them is cut.
pub async fn drive_paced<S>(
    mut io: S,
    setup: &Setup,
    cx: &SourceContext,
    pace: Option<PaceHandle>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(setup, cx);
    session.pace = pace;
    let end = session.run(&mut io).await;
    let cause = match end {
        End::Shutdown => CloseCause::Shutdown,
        End::Closed | End::Io(_) => CloseCause::LineClosed,
    };
    session.finish(&mut io, cause).await;
    end
}

struct Session<'a> {
    setup: &'a Setup,
    cx: &'a SourceContext,
    name: &'a str,
    link: Link,
    /// Raw framing can complete several messages in one read; they are
    /// committed concurrently and answered in order.
    commits: FuturesOrdered<Commit>,
    background: JoinSet<Settled>,
    in_flight: HashMap<OutboundId, Outgoing>,
    /// A broadcast is being fetched or sent.
    broadcasting: bool,
    /// `sent` marks of this line not yet committed.
    marking: usize,
    ready: bool,
    /// The analyzer on this line, as its last H record named it.
    sender: Option<String>,
    /// After the loop: answers are held, not queued, and nothing is written.
    finishing: bool,
    /// Told when a transfer is complete (TCP server lines).
    pace: Option<PaceHandle>,
    /// The link's phase when last looked at.
    last_phase: LinkPhase,
}

impl<'a> Session<'a> {
    fn new(setup: &'a Setup, cx: &'a SourceContext) -> Self {
        Session {
            setup,
            cx,
            name: setup.name.as_str(),
            link: Link::new(setup.link.clone()),
            commits: FuturesOrdered::new(),
            background: JoinSet::new(),
            in_flight: HashMap::new(),
            broadcasting: false,
            marking: 0,
            ready: true,
            sender: None,
            finishing: false,
            pace: None,
            last_phase: LinkPhase::Neutral,
        }
    }

    async fn run<S>(&mut self, io: &mut S) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; 4096];
        let mut probe = tokio::time::interval(READY_PROBE);
        probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut order_tick = tokio::time::interval(self.setup.profile.order_poll);
        // Ticks missed while the line was busy must not come in a burst.
        order_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let broadcast = self.setup.broadcast();
        for held in self.setup.take_held(None) {
            self.queue(held);
        }
        let mut beat = tokio::time::interval(BEAT_EVERY);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.cx.heartbeat.beat();
            if let Err(e) = self.perform(io).await {
                return End::Io(e);
            }
            let phase = self.link.phase();
            if phase != self.last_phase {
                if phase == LinkPhase::Neutral {
                    self.transfer_complete();
                }
                self.last_phase = phase;
            }
            let deadline = self.link.poll_timeout();
            let idle = self.link.phase() == LinkPhase::Neutral
                && self.link.queued() == 0
                && self.commits.is_empty();
            let may_broadcast = broadcast
                && idle
                && !self.broadcasting
                && self.in_flight.is_empty()
                && self.marking == 0;
            tokio::select! {
                _ = self.cx.shutdown.cancelled() => return End::Shutdown,
                _ = beat.tick() => {}
                Some(result) = self.commits.next(), if !self.commits.is_empty() => {
                    self.committed(result);
                }
                read = io.read(&mut buf) => match read {
                    Ok(0) => return End::Closed,
                    Ok(n) => {
                        self.setup.trace(Direction::In, &buf[..n]);
                        self.link.handle_input(Instant::now(), &buf[..n]);
                    }
                    Err(e) => return End::Io(e),
                },
                _ = sleep_until(deadline) => self.link.handle_timeout(Instant::now()),
                Some(done) = self.background.join_next(), if !self.background.is_empty() => {
                    self.settled(done);
                }
                _ = probe.tick(), if !self.ready && idle => {
                    if let Ok(true) = self.cx.journal.accepts_messages().await {
                        tracing::info!(endpoint = self.name, "journal takes messages again; accepting ASTM sessions");
                        self.ready = true;
                        self.link.set_ready(true);
                    }
                }
                _ = order_tick.tick(), if may_broadcast => self.fetch_broadcast(),
            }
        }
    }

    /// Settles everything the line delivered; see the module notes.
    async fn finish<S>(&mut self, io: &mut S, cause: CloseCause)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // On shutdown the line is still there: the analyzer hears the
        // outcome of its message. After a failed write (or EOF) the events
        // the link produced still count, the bytes cannot be sent.
        let mut line_open = cause == CloseCause::Shutdown;
        loop {
            if line_open && self.perform(io).await.is_err() {
                line_open = false;
            }
            if !line_open {
                self.discard_writes_and_handle_events();
            }
            match self.commits.next().await {
                Some(result) => self.committed(result),
                None => break,
            }
        }
        self.finishing = true;
        self.link.close(cause);
        self.discard_writes_and_handle_events();
        while let Some(done) = self.background.join_next().await {
            self.settled(done);
            self.discard_writes_and_handle_events();
        }
    }

    /// Writes what the link asked for and handles its events, in order.
    async fn perform<S>(&mut self, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while let Some(out) = self.link.poll_output() {
            match out {
                Output::Write(bytes) => {
                    self.setup.trace(Direction::Out, &bytes);
                    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                        io.write_all(&bytes).await?;
                        io.flush().await
                    })
                    .await;
                    match written {
                        Ok(result) => result?,
                        Err(_) => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "write to the line timed out",
                            ))
                        }
                    }
                }
                Output::Event(event) => self.event(event),
            }
        }
        Ok(())
    }

    fn transfer_complete(&self) {
        if let Some(pace) = &self.pace {
            pace.completed();
        }
    }

    /// After the line is gone: events still matter, bytes cannot be sent.
    fn discard_writes_and_handle_events(&mut self) {
        while let Some(out) = self.link.poll_output() {
            if let Output::Event(event) = out {
                self.event(event);
            }
        }
    }

    fn event(&mut self, event: Event) {
        let name = self.name;
        match event {
            Event::MessageComplete { records } => {
                self.transfer_complete();
                self.message(records)
            }
            Event::Incomplete(inc) => {
                self.transfer_complete();
                let reason = format!("{:?}", inc.reason);
                tracing::warn!(
                    endpoint = name,
                    reason = %reason,
                    records = inc.records.len(),
                    partial_bytes = inc.partial.len(),
                    "ASTM transmission ended before its L record; kept for inspection, not a result"
                );
                self.keep_incomplete(reason, inc.records, inc.partial);
            }
            Event::Sent { id } => {
                if let Some(sent) = self.in_flight.remove(&id) {
                    self.broadcasting &= sent.purpose != Purpose::Broadcast;
                    tracing::info!(
                        endpoint = name,
                        orders = sent.orders.len(),
                        "ASTM analyzer acknowledged the orders"
                    );
                    if sent.orders.is_empty() {
                        return;
                    }
                    // Claimed until the mark lands: no broadcast reads them
                    // as pending meanwhile.
                    self.marking += 1;
                    let journal = self.cx.journal.clone();
                    let endpoint = name.to_string();
                    self.background.spawn(async move {
                        if let Err(e) = journal.mark_orders_sent(sent.orders.clone()).await {
                            tracing::warn!(endpoint, error = %e, "cannot mark orders sent; they will be sent again");
                        }
                        Settled::Marked(sent.orders)
                    });
                }
            }
            Event::SendFailed { id, reason, .. } => {
                if let Some(failed) = self.in_flight.remove(&id) {
                    self.send_failed(failed, reason);
                }
            }
            Event::Deferred { reason, .. } => {
                tracing::debug!(endpoint = name, ?reason, "ASTM send deferred");
            }
            Event::FrameRejected(e) => {
                tracing::debug!(endpoint = name, error = %e, "ASTM frame rejected (NAK)");
            }
            Event::RefusedBusy => {
                // The analyzer keeps what it wanted to send: a refusal the
                // metrics count, though no message was read.
                self.cx.counters.refused.inc();
                tracing::debug!(
                    endpoint = name,
                    "ASTM session refused while the journal cannot take messages"
                );
            }
            Event::ReceiveTimedOut => {
                tracing::info!(
                    endpoint = name,
                    "ASTM session ended by the receive timer (no frame, no EOT)"
                );
            }
            other => tracing::trace!(endpoint = name, event = ?other, "ASTM link event"),
        }
    }

    /// A complete H..L message: a host query is answered, anything else is
    /// stored before its last frame is acknowledged.
    fn message(&mut self, records: Vec<Vec<u8>>) {
        let name = self.name;
        if let Some(sender) = answer::sender_name(&records) {
            if self.sender.as_deref() != Some(sender.as_str()) {
                tracing::info!(endpoint = name, sender = %sender, "ASTM analyzer identified");
                self.sender = Some(sender);
                for held in self.setup.take_held(self.sender.as_deref()) {
                    self.queue(held);
                }
            }
        }
        let strict = ParseOptions {
            check_sequence: self.setup.profile.check_sequence,
        };
        let parsed = Message::parse(&records, &strict);
        let query = match &parsed {
            Ok(m) if answer::is_query(m) => Some(Ok(m.clone())),
            Ok(_) => None,
            Err(_) if answer::looks_like_query(&records) => {
                let lenient = ParseOptions {
                    check_sequence: false,
                };
                Some(Message::parse(&records, &lenient).map_err(|e| (parsed_error(&parsed), e)))
            }
            Err(_) => None,
        };
        match query {
            Some(query) => {
                // Answered from the local copy of the orders; nothing to keep
                // safe before the ACK.
                self.link.commit_done(Instant::now(), true);
                match query {
                    Ok(m) => {
                        if let Err(e) = &parsed {
                            tracing::warn!(endpoint = name, error = %e, "ASTM host query breaks LIS02-A2 numbering; answered all the same");
                        }
                        self.answer_query(records, m);
                    }
                    Err((strict_error, e)) => {
                        tracing::warn!(endpoint = name, error = %e, strict = %strict_error, "ASTM host query cannot be read; answered with a query error (L|1|Q) and kept for inspection");
                        self.keep_incomplete("UnreadableQuery".into(), records, Vec::new());
                        let header = self.header();
                        self.queue(Outgoing {
                            purpose: Purpose::Answer,
                            records: answer::query_error_records(&header),
                            orders: Vec::new(),
                            sender: self.sender.clone(),
                            failures: 0,
                        });
                    }
                }
            }
            None => {
                if let Err(e) = &parsed {
                    tracing::warn!(endpoint = name, error = %e, "ASTM message does not parse; stored as received");
                }
                let message = answer::new_message(
                    name,
                    answer::RESULT_TYPE,
                    self.setup.profile.test_id_component,
                    &records,
                    parsed.as_ref().ok(),
                );
                self.cx.counters.received.inc();
                let commit = ingest(self.cx, message, self.sender.clone());
                self.commits.push_back(commit);
            }
        }
    }

    fn committed(&mut self, result: Result<Receipt, IngestError>) {
        let now = Instant::now();
        let name = self.name;
        match result {
            Ok(receipt) => {
                self.cx.counters.acknowledged.inc();
                tracing::debug!(
                    endpoint = name,
                    message_id = receipt.message_id,
                    duplicate = receipt.duplicate,
                    "ASTM message journalled"
                );
                self.link.commit_done(now, true);
                if !self.ready {
                    self.ready = true;
                    self.link.set_ready(true);
                }
            }
            Err(e) => {
                self.cx.counters.refused.inc();
                tracing::warn!(endpoint = name, error = %e, "ASTM message not journalled; NAK, the analyzer keeps it");
                self.link.commit_done(now, false);
                if e.is_temporary() && self.ready {
                    self.ready = false;
                    self.link.set_ready(false);
                }
            }
        }
    }

    fn settled(&mut self, done: Result<Settled, tokio::task::JoinError>) {
        let settled = match done {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(endpoint = self.name, error = %e, "an ASTM journal task failed");
                return;
            }
        };
        match settled {
            Settled::Answer(out) => self.queue(out),
            Settled::Broadcast(orders) => self.broadcast(orders),
            Settled::Marked(ids) => {
                self.marking = self.marking.saturating_sub(1);
                self.setup.release(&ids);
            }
            Settled::Kept => {}
        }
    }

    /// Hands a message to the link, or, once the line is gone, keeps an
    /// answer for the next line.
    fn queue(&mut self, out: Outgoing) {
        if self.finishing {
            self.setup.release(&out.orders);
            match out.purpose {
                Purpose::Answer => self.hold(out),
                Purpose::Broadcast => self.broadcasting = false,
            }
            return;
        }
        self.setup.claim(&out.orders);
        let id = self.link.queue_message(Instant::now(), out.records.clone());
        self.in_flight.insert(id, out);
    }

    fn send_failed(&mut self, mut failed: Outgoing, reason: SendFailure) {
        let name = self.name;
        failed.failures += 1;
        match failed.purpose {
            Purpose::Broadcast => {
                self.broadcasting = false;
                self.setup.release(&failed.orders);
                tracing::warn!(
                    endpoint = name,
                    ?reason,
                    orders = failed.orders.len(),
                    "ASTM analyzer did not take the order download; orders stay pending"
                );
            }
            Purpose::Answer if failed.failures >= ANSWER_ATTEMPTS => {
                self.setup.release(&failed.orders);
                tracing::error!(
                    endpoint = name,
                    ?reason,
                    attempts = failed.failures,
                    orders = failed.orders.len(),
                    "ASTM analyzer never took the answer to its host query; given up"
                );
            }
            Purpose::Answer if reason == SendFailure::LineClosed => {
                self.setup.release(&failed.orders);
                self.hold(failed);
            }
            Purpose::Answer => {
                tracing::warn!(
                    endpoint = name,
                    ?reason,
                    attempts = failed.failures,
                    "ASTM analyzer did not take the answer to its host query; trying again"
                );
                // The link waits its busy delay before the next ENQ.
                let id = self
                    .link
                    .queue_message(Instant::now(), failed.records.clone());
                self.in_flight.insert(id, failed);
            }
        }
    }

    fn hold(&mut self, answer: Outgoing) {
        tracing::warn!(
            endpoint = self.name,
            sender = answer.sender.as_deref().unwrap_or(""),
            "ASTM line closed before the answer to a host query was taken; kept for the next line"
        );
        self.setup.hold(answer);
    }

    fn header(&self) -> ecko_protocol::astm::message::HeaderSpec {
        answer::header(
            self.setup.profile.sender_components(),
            &self.cx.time_zone.get(),
        )
    }

    fn answer_query(&mut self, records: Vec<Vec<u8>>, message: Message) {
        let asks: Vec<answer::Ask> = message.queries.iter().flat_map(answer::asks).collect();
        let kept = answer::new_message(
            self.name,
            answer::QUERY_TYPE,
            self.setup.profile.test_id_component,
            &records,
            Some(&message),
        );
        let cx = self.cx.clone();
        let name = self.name.to_string();
        let sender = self.sender.clone();
        let header = self.header();
        let tz = self.cx.time_zone.get();
        self.background.spawn(async move {
            let mut answered = Vec::with_capacity(asks.len());
            for ask in asks {
                let found = match cx
                    .journal
                    .orders_for(&name, sender.as_deref(), ask.selection.clone())
                    .await
                {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(endpoint = %name, error = %e, "cannot read orders for a host query");
                        Vec::new()
                    }
                };
                answered.push((ask, found));
            }
            let (records, orders) = answer::answer_records(&answered, &header, &tz);
            tracing::info!(endpoint = %name, asked = answered.len(), orders = orders.len(), "answering ASTM host query");
            Settled::Answer(Outgoing {
                purpose: Purpose::Answer,
                records,
                orders,
                sender,
                failures: 0,
            })
        });
        // Kept as well when a route wants queries; answering never waits
        // for it and does not depend on it.
        let commit = ingest(self.cx, kept, self.sender.clone());
        let name = self.name.to_string();
        self.background.spawn(async move {
            match commit.await {
                Ok(_) | Err(IngestError::NoRoute { .. }) => {}
                Err(e) => {
                    tracing::debug!(endpoint = %name, error = %e, "host query not journalled")
                }
            }
            Settled::Kept
        });
    }

    fn fetch_broadcast(&mut self) {
        self.broadcasting = true;
        let journal = self.cx.journal.clone();
        let name = self.name.to_string();
        let sender = self.sender.clone();
        self.background.spawn(async move {
            match journal.pending_orders(&name, sender.as_deref()).await {
                Ok(orders) => Settled::Broadcast(orders),
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "cannot read pending orders");
                    Settled::Broadcast(Vec::new())
                }
            }
        });
    }

    fn broadcast(&mut self, orders: Vec<StoredOrder>) {
        let mut orders = self.setup.unclaimed(orders);
        orders.truncate(BROADCAST_BATCH);
        if orders.is_empty() || self.finishing {
            self.broadcasting = false;
            return;
        }
        tracing::info!(
            endpoint = self.name,
            orders = orders.len(),
            "downloading pending orders"
        );
        let header = self.header();
        self.queue(Outgoing {
            purpose: Purpose::Broadcast,
            records: answer::order_records(&orders, &header, &self.cx.time_zone.get()),
            orders: orders.iter().map(|o| o.id).collect(),
            sender: self.sender.clone(),
            failures: 0,
        });
    }

    fn keep_incomplete(&mut self, reason: String, records: Vec<Vec<u8>>, partial: Vec<u8>) {
        let journal = self.cx.journal.clone();
        let endpoint = self.name.to_string();
        self.background.spawn(async move {
            if let Err(e) = journal
                .record_incomplete(&endpoint, &reason, &records, partial)
                .await
            {
                tracing::warn!(endpoint, error = %e, "cannot keep an incomplete ASTM transmission");
            }
            Settled::Kept
        });
    }
}

fn parsed_error(parsed: &Result<Message, ecko_protocol::astm::message::MessageError>) -> String {
    parsed
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Routes and stores an ASTM message with the analyzer's sender name.
/// Resolves after the commit.
fn ingest(cx: &SourceContext, message: Envelope, sender: Option<String>) -> Commit {
    let (message, destinations) = match cx.route(message) {
        Ok(routed) => routed,
        Err(e) => return Box::pin(std::future::ready(Err(e))),
    };
    let journal = cx.journal.clone();
    Box::pin(async move { journal.ingest_astm(message, destinations, sender).await })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
