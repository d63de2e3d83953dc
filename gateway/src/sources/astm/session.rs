//! One connected line (a TCP stream or an open serial device) driven by one
//! [`Link`] until it ends.

use super::{answer, Setup};
use crate::journal::{IngestError, Receipt, StoredOrder};
use crate::protocol::astm::link::{Event, Link, OutboundId, Output};
use crate::protocol::astm::message::{Message, ParseOptions};
use crate::protocol::astm::trace::Direction;
use crate::sources::SourceContext;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest a write to the line may take (a line held by flow control must
/// not hang the session).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a line that had to refuse messages asks the journal again.
const READY_PROBE: Duration = Duration::from_secs(1);
/// Most orders downloaded in one message.
const BROADCAST_BATCH: usize = 50;

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed the line (or the device disappeared: EOF).
    Closed,
    Shutdown,
    Io(std::io::Error),
}

/// An outbound message built off the loop, with the orders it carries.
struct Outgoing {
    records: Vec<Vec<u8>>,
    orders: Vec<i64>,
    /// Broadcast downloads: the next fetch waits for this one to settle.
    broadcast: bool,
}

type Commit = Pin<Box<dyn Future<Output = Result<Receipt, IngestError>> + Send>>;

/// Drives `io` until the peer closes it, it fails, or shutdown.
pub async fn drive<S>(mut io: S, setup: &Setup, cx: &SourceContext) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = setup.name.as_str();
    let mut link = Link::new(setup.link.clone());
    let mut buf = vec![0u8; 4096];
    // Raw framing can complete several messages in one read; they are
    // committed (and answered) one after the other, in order.
    let mut commits: VecDeque<Commit> = VecDeque::new();
    let mut ready = true;
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let mut in_flight: HashMap<OutboundId, Outgoing> = HashMap::new();
    let mut broadcasting = false;
    let mut probe = tokio::time::interval(READY_PROBE);
    let mut order_tick = tokio::time::interval(setup.profile.order_poll);
    let broadcast = setup.broadcast();

    loop {
        // Perform everything the link asked for, in order.
        while let Some(out) = link.poll_output() {
            match out {
                Output::Write(bytes) => {
                    setup.trace(Direction::Out, &bytes);
                    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                        io.write_all(&bytes).await?;
                        io.flush().await
                    })
                    .await;
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Io(e),
                        Err(_) => {
                            return End::Io(std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "write to the line timed out",
                            ))
                        }
                    }
                }
                Output::Event(event) => match event {
                    Event::MessageComplete { records } => {
                        let parsed = Message::parse(
                            &records,
                            &ParseOptions {
                                check_sequence: setup.profile.check_sequence,
                            },
                        );
                        match &parsed {
                            Ok(m) if answer::is_query(m) => {
                                // Answered from the local copy of the orders;
                                // nothing to keep safe before the ACK.
                                link.commit_done(Instant::now(), true);
                                spawn_query_answer(cx, name, records, m, &out_tx);
                            }
                            _ => {
                                if let Err(e) = &parsed {
                                    tracing::warn!(endpoint = name, error = %e, "ASTM message does not parse; stored as received");
                                }
                                let message = answer::new_message(
                                    name,
                                    answer::RESULT_TYPE,
                                    &records,
                                    parsed.as_ref().ok(),
                                );
                                let cx = cx.clone();
                                commits
                                    .push_back(Box::pin(async move { cx.ingest(message).await }));
                            }
                        }
                    }
                    Event::Incomplete(inc) => {
                        let reason = format!("{:?}", inc.reason);
                        tracing::warn!(
                            endpoint = name,
                            reason = %reason,
                            records = inc.records.len(),
                            partial_bytes = inc.partial.len(),
                            "ASTM transmission ended before its L record; kept for inspection, not a result"
                        );
                        let journal = cx.journal.clone();
                        let endpoint = name.to_string();
                        tokio::spawn(async move {
                            if let Err(e) = journal
                                .record_incomplete(&endpoint, &reason, &inc.records, inc.partial)
                                .await
                            {
                                tracing::warn!(endpoint, error = %e, "cannot keep an incomplete ASTM transmission");
                            }
                        });
                    }
                    Event::Sent { id } => {
                        if let Some(sent) = in_flight.remove(&id) {
                            broadcasting &= !sent.broadcast;
                            tracing::info!(
                                endpoint = name,
                                orders = sent.orders.len(),
                                "ASTM analyzer acknowledged the orders"
                            );
                            if !sent.orders.is_empty() {
                                let journal = cx.journal.clone();
                                let endpoint = name.to_string();
                                tokio::spawn(async move {
                                    if let Err(e) = journal.mark_orders_sent(sent.orders).await {
                                        tracing::warn!(endpoint, error = %e, "cannot mark orders sent; they will be sent again");
                                    }
                                });
                            }
                        }
                    }
                    Event::SendFailed { id, .. } => {
                        if let Some(failed) = in_flight.remove(&id) {
                            broadcasting &= !failed.broadcast;
                            tracing::warn!(
                                endpoint = name,
                                orders = failed.orders.len(),
                                "ASTM analyzer did not take the message; orders stay pending"
                            );
                        }
                    }
                    Event::Deferred { reason, .. } => {
                        tracing::debug!(endpoint = name, ?reason, "ASTM send deferred");
                    }
                    Event::FrameRejected(e) => {
                        tracing::debug!(endpoint = name, error = %e, "ASTM frame rejected (NAK)");
                    }
                    Event::RefusedBusy => {
                        tracing::debug!(
                            endpoint = name,
                            "ASTM session refused while the journal cannot take messages"
                        );
                    }
                    other => tracing::trace!(endpoint = name, event = ?other, "ASTM link event"),
                },
            }
        }

        let deadline = link.poll_timeout();
        let idle = link.phase() == crate::protocol::astm::link::LinkPhase::Neutral
            && link.queued() == 0
            && commits.is_empty();
        tokio::select! {
            _ = cx.shutdown.cancelled(), if commits.is_empty() => return End::Shutdown,
            result = async {
                match commits.front_mut() {
                    Some(c) => c.await,
                    None => std::future::pending().await,
                }
            } => {
                commits.pop_front();
                let now = Instant::now();
                match result {
                    Ok(receipt) => {
                        tracing::debug!(endpoint = name, message_id = receipt.message_id, duplicate = receipt.duplicate, "ASTM message journalled");
                        link.commit_done(now, true);
                        if !ready {
                            ready = true;
                            link.set_ready(true);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = name, error = %e, "ASTM message not journalled; NAK, the analyzer keeps it");
                        link.commit_done(now, false);
                        if e.is_temporary() && ready {
                            ready = false;
                            link.set_ready(false);
                        }
                    }
                }
            }
            read = io.read(&mut buf) => match read {
                Ok(0) => return End::Closed,
                Ok(n) => {
                    setup.trace(Direction::In, &buf[..n]);
                    link.handle_input(Instant::now(), &buf[..n]);
                }
                Err(e) => return End::Io(e),
            },
            _ = sleep_until(deadline) => link.handle_timeout(Instant::now()),
            Some(outgoing) = out_rx.recv() => {
                if outgoing.records.is_empty() {
                    broadcasting = false;
                    continue;
                }
                let id = link.queue_message(Instant::now(), outgoing.records.clone());
                in_flight.insert(id, outgoing);
            }
            _ = probe.tick(), if !ready && idle => {
                if let Ok(true) = cx.journal.accepts_messages().await {
                    tracing::info!(endpoint = name, "journal takes messages again; accepting ASTM sessions");
                    ready = true;
                    link.set_ready(true);
                }
            }
            _ = order_tick.tick(), if broadcast && idle && !broadcasting && in_flight.is_empty() => {
                broadcasting = true;
                spawn_broadcast(cx, name, &out_tx);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn spawn_query_answer(
    cx: &SourceContext,
    name: &str,
    records: Vec<Vec<u8>>,
    message: &Message,
    out: &mpsc::UnboundedSender<Outgoing>,
) {
    let selections: Vec<_> = message.queries.iter().map(answer::selection).collect();
    let query = answer::new_message(name, answer::QUERY_TYPE, &records, Some(message));
    let cx = cx.clone();
    let name = name.to_string();
    let out = out.clone();
    tokio::spawn(async move {
        let mut orders: Vec<StoredOrder> = Vec::new();
        for selection in selections {
            match cx.journal.orders_for(&name, selection).await {
                Ok(found) => {
                    for o in found {
                        if !orders.iter().any(|x| x.id == o.id) {
                            orders.push(o);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(endpoint = %name, error = %e, "cannot read orders for a host query")
                }
            }
        }
        tracing::info!(endpoint = %name, orders = orders.len(), "answering ASTM host query");
        let _ = out.send(Outgoing {
            records: answer::order_records(&orders),
            orders: orders.iter().map(|o| o.id).collect(),
            broadcast: false,
        });
        // Kept as well when a route wants queries; answering never waits
        // for it and does not depend on it.
        match cx.ingest(query).await {
            Ok(_) => {}
            Err(IngestError::NoRoute { .. }) => {}
            Err(e) => tracing::debug!(endpoint = %name, error = %e, "host query not journalled"),
        }
    });
}

fn spawn_broadcast(cx: &SourceContext, name: &str, out: &mpsc::UnboundedSender<Outgoing>) {
    let journal = cx.journal.clone();
    let name = name.to_string();
    let out = out.clone();
    tokio::spawn(async move {
        let mut orders = match journal.pending_orders(&name).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(endpoint = %name, error = %e, "cannot read pending orders");
                Vec::new()
            }
        };
        orders.truncate(BROADCAST_BATCH);
        let records = if orders.is_empty() {
            Vec::new()
        } else {
            tracing::info!(endpoint = %name, orders = orders.len(), "downloading pending orders");
            answer::order_records(&orders)
        };
        // An empty message tells the loop that this round found nothing.
        let _ = out.send(Outgoing {
            records,
            orders: orders.iter().map(|o| o.id).collect(),
            broadcast: true,
        });
    });
}
