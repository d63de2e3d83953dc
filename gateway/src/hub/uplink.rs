//! The uplink's one task: everything it publishes is submitted here, in
//! order, so `inflight` can tell which packet carried which event.
//!
//! Events are read from the journal's hub outbox a window at a time and
//! published with QoS 1; their rows are deleted only after the PUBACK of
//! their own packet (see `inflight` for the rule). Status is retained QoS 1;
//! telemetry is QoS 0 and made fresh each time it is due, so nothing of it
//! queues while the broker is away.
//!
//! Commands (`cmd/+`, QoS 1) are handed to one worker (`dispatch`) that
//! answers them in order; the uplink publishes each reply on `reply/{id}`
//! and only then acknowledges the command, so a command cut off by a crash
//! or a lost connection comes again (and is refused as replayed, its first
//! reply being the outcome). A command answered after its connection was
//! lost is not acknowledged: its packet id belongs to that connection.
//!
//! Orders (`orders`, QoS 1) go the same way to their own worker
//! (`order_intake`), acknowledged once journalled.

use super::connect::options;
use super::dispatch::{self, Answered, Dispatcher, Received};
use super::inflight::{Carried, Inflight};
use super::link::{self, LinkEvent};
use super::mqtt::{Client, Delivery, Happened, Protocol, Qos};
use super::order_intake::{self, Delivered, Handled, Intake};
use super::topics::Topics;
use super::{backoff::Backoff, events, status, telemetry};
use crate::config::{HubConfig, MqttProtocol};
use crate::control::Gateway;
use crate::journal::{Journal, JournalError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Events published and not yet acknowledged, at most.
pub const EVENT_WINDOW: usize = 64;

/// How often the hub outbox is looked at when nothing wakes the uplink.
const FEED_EVERY: Duration = Duration::from_millis(250);

/// Commands received and not yet answered, at most; more are left
/// unacknowledged for the broker to send again.
const COMMAND_QUEUE: usize = 32;

/// How long a stopping gateway waits for its offline status to leave.
const STOP_GRACE: Duration = Duration::from_secs(3);

pub struct Uplink {
    config: HubConfig,
    topics: Topics,
    gateway: Arc<dyn Gateway>,
    journal: Journal,
    /// The client of the connection up, with its protocol; `None` before
    /// the first.
    client: Option<(Client, Protocol)>,
    inflight: Inflight,
    connected: bool,
    /// The highest event id submitted; the next read starts after it.
    cursor: i64,
    epoch: String,
    started_at: i64,
    /// Acknowledged events whose rows are not deleted yet.
    acked: Vec<i64>,
    releases: JoinSet<Result<(), JournalError>>,
    telemetry: telemetry::Telemetry,
    /// To the command worker.
    commands: mpsc::Sender<Received>,
    /// To the order worker.
    orders: mpsc::Sender<Delivered>,
    /// The last failure to connect logged, so a broker that keeps refusing
    /// is reported once per reason rather than never or every attempt.
    last_failure: Option<String>,
    /// Counts connections, so an answer knows whether its command's packet
    /// id is still valid.
    connection: u64,
}

impl Uplink {
    /// Runs the uplink of `gateway` until `stop`.
    pub async fn run(
        config: HubConfig,
        gateway: Arc<dyn Gateway>,
        journalled: Arc<Notify>,
        stop: CancellationToken,
    ) -> Result<(), super::HubError> {
        let topics = Topics::new(config.topic_prefix());
        let (first, fallback) = match config.protocol {
            MqttProtocol::Auto => (
                options(&config, &topics, Protocol::V5)?,
                Some(options(&config, &topics, Protocol::V311)?),
            ),
            MqttProtocol::V5 => (options(&config, &topics, Protocol::V5)?, None),
            MqttProtocol::V311 => (options(&config, &topics, Protocol::V311)?, None),
        };
        let (to_uplink, mut from_link) = mpsc::channel(256);
        let backoff = Backoff::new(config.reconnect_min.0, config.reconnect_max.0);
        let link = tokio::spawn(link::run(first, fallback, backoff, to_uplink));
        let journal = gateway.journal().clone();
        let epoch = journal.hub_epoch().await?;
        let started_at = journal.now_ms();
        let (commands, to_worker) = mpsc::channel(COMMAND_QUEUE);
        let (answers, mut answered) = mpsc::channel(COMMAND_QUEUE);
        let worker = tokio::spawn(dispatch::serve(
            Dispatcher::new(&config, gateway.clone()),
            to_worker,
            answers,
        ));
        let (orders, to_intake) = mpsc::channel(COMMAND_QUEUE);
        let (handled_tx, mut handled) = mpsc::channel(COMMAND_QUEUE);
        let intake = tokio::spawn(order_intake::serve(
            Intake::new(&config, gateway.clone()),
            to_intake,
            handled_tx,
        ));
        let mut uplink = Uplink {
            commands,
            orders,
            connection: 0,
            last_failure: None,
            telemetry: telemetry::Telemetry::new(&config),
            topics,
            journal,
            client: None,
            inflight: Inflight::default(),
            connected: false,
            cursor: 0,
            epoch,
            started_at,
            acked: Vec::new(),
            releases: JoinSet::new(),
            gateway,
            config,
        };
        tracing::info!(url = %uplink.config.url, prefix = %uplink.config.topic_prefix(), protocol = ?uplink.config.protocol, "hub uplink starting");
        let mut feed = tokio::time::interval(FEED_EVERY);
        let mut telemetry_tick = tokio::time::interval(telemetry::LOOK_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = from_link.recv() => match event {
                    Some(e) => uplink.on_link(e),
                    None => break,
                },
                _ = journalled.notified() => {}
                _ = feed.tick() => {}
                _ = telemetry_tick.tick() => uplink.telemetry_due().await,
                Some(a) = answered.recv() => uplink.on_answer(a),
                Some(h) = handled.recv() => uplink.on_order_handled(h),
            }
            uplink.feed().await;
            uplink.release();
        }
        uplink.stop(&mut from_link).await;
        // A command half done (a configuration being applied) is let
        // finish for a moment rather than cut off mid-way; no new one comes.
        drop(uplink);
        let mut worker = worker;
        if tokio::time::timeout(STOP_GRACE, &mut worker).await.is_err() {
            worker.abort();
        }
        // An order being journalled is let commit; it is acknowledged on
        // the next connection's redelivery, as a duplicate.
        let mut intake = intake;
        if tokio::time::timeout(STOP_GRACE, &mut intake).await.is_err() {
            intake.abort();
        }
        link.abort();
        Ok(())
    }

    fn submit(
        &mut self,
        topic: String,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        carried: Carried,
    ) -> bool {
        let Some((client, _)) = &self.client else {
            return false;
        };
        match client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                self.inflight.submitted(carried);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "a hub publication was not queued");
                false
            }
        }
    }

    fn on_link(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected {
                session_present,
                protocol,
                client,
            } => {
                tracing::info!(
                    session_present,
                    mqtt = protocol.as_str(),
                    "hub uplink connected"
                );
                self.connected = true;
                self.last_failure = None;
                self.connection += 1;
                // The persistent session keeps the subscription; made again
                // on every connection in case the broker lost the session.
                for (filter, what) in [
                    (self.topics.commands(), "commands"),
                    (self.topics.orders(), "orders"),
                ] {
                    if let Err(error) = client.try_subscribe(filter) {
                        tracing::warn!(error, "cannot subscribe to the hub's {what}");
                    }
                }
                self.client = Some((client, protocol));
                let now = self.journal.now_ms();
                let online = status::online(self.config.format, now, self.started_at, protocol);
                self.submit(
                    self.topics.status(),
                    Qos::AtLeastOnce,
                    true,
                    online,
                    Carried::Other,
                );
                self.telemetry.connected(protocol);
            }
            LinkEvent::Mqtt(Happened::Sent(pkid)) => self.inflight.sent(pkid),
            LinkEvent::Mqtt(Happened::HeldBack(pkid)) => self.inflight.waits_for(pkid),
            LinkEvent::Mqtt(Happened::Acked {
                pkid,
                accepted: true,
            }) => {
                if let Some(id) = self.inflight.acked(pkid) {
                    self.acked.push(id);
                }
            }
            LinkEvent::Mqtt(Happened::Acked {
                pkid,
                accepted: false,
            }) => {
                if let Some(id) = self.inflight.refused(pkid) {
                    tracing::warn!(
                        event = id,
                        "the hub broker refused an event; it is published again on the next connection"
                    );
                }
            }
            LinkEvent::Mqtt(Happened::Delivered(d)) if d.topic == self.topics.orders() => {
                let delivered = Delivered {
                    publish: d,
                    connection: self.connection,
                };
                if self.orders.try_send(delivered).is_err() {
                    tracing::warn!("hub orders are arriving faster than they are journalled; one is left for the broker to send again");
                }
            }
            LinkEvent::Mqtt(Happened::Delivered(d)) => match self.topics.command_id(&d.topic) {
                Some(id) => {
                    let received = Received {
                        id: id.to_string(),
                        publish: d,
                        connection: self.connection,
                    };
                    if self.commands.try_send(received).is_err() {
                        tracing::warn!("hub commands are arriving faster than they are answered; one is left for the broker to send again");
                    }
                }
                // Not a topic of ours: acknowledged so the broker drops it.
                None => self.ack(&d),
            },
            LinkEvent::Mqtt(_) => {}
            LinkEvent::Lost { error, forgotten } => {
                if self.connected {
                    tracing::warn!(error, "hub uplink lost its connection; reconnecting");
                } else if self.last_failure.as_ref() != Some(&error) {
                    // A refused certificate, a wrong CA, a bad password:
                    // the reason is what the operator needs to see.
                    tracing::warn!(error, "hub broker not reachable; trying again");
                    self.last_failure = Some(error);
                } else {
                    tracing::debug!(error, "hub broker not reachable");
                }
                self.connected = false;
                if let Some(first) = self.inflight.lost().first() {
                    self.cursor = self.cursor.min(first - 1);
                }
                let _ = forgotten.send(());
            }
        }
    }

    /// Acknowledges a delivery of the connection up.
    fn ack(&self, delivery: &Delivery) {
        if let Some((client, _)) = &self.client {
            if let Err(error) = client.try_ack(delivery) {
                tracing::debug!(error, "a hub delivery was not acknowledged");
            }
        }
    }

    /// Publishes a command's reply, then acknowledges the command if it came
    /// on this connection.
    fn on_answer(&mut self, answered: Answered) {
        let Answered { received, reply } = answered;
        if !self.connected {
            tracing::warn!(command = %received.id, "the reply to a hub command is lost with the connection");
            return;
        }
        self.submit(
            self.topics.reply(&received.id),
            Qos::AtLeastOnce,
            false,
            reply,
            Carried::Other,
        );
        if received.connection == self.connection {
            self.ack(&received.publish);
        }
    }

    /// Acknowledges an order once journalled, if it came on this
    /// connection (otherwise the broker sends it again, and it is taken as
    /// a duplicate).
    fn on_order_handled(&mut self, handled: Handled) {
        let Handled { delivered, ack } = handled;
        if ack && self.connected && delivered.connection == self.connection {
            self.ack(&delivered.publish);
        }
    }

    /// Publishes journalled events while the window has room.
    async fn feed(&mut self) {
        if !self.connected {
            return;
        }
        let room = EVENT_WINDOW.saturating_sub(self.inflight.events_in_flight());
        if room < EVENT_WINDOW / 2 {
            return;
        }
        let batch = match self.journal.hub_events_after(self.cursor, room).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the hub's events");
                return;
            }
        };
        for event in batch {
            let payload = events::payload(self.config.format, &self.epoch, &event);
            if !self.submit(
                self.topics.events(),
                Qos::AtLeastOnce,
                false,
                payload,
                Carried::Event(event.id),
            ) {
                return;
            }
            self.cursor = event.id;
        }
    }

    /// Deletes the rows of acknowledged events, without waiting for it.
    fn release(&mut self) {
        while let Some(done) = self.releases.try_join_next() {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "acknowledged hub events could not be released; they will be published again");
            }
        }
        if !self.acked.is_empty() {
            let ids = std::mem::take(&mut self.acked);
            let journal = self.journal.clone();
            self.releases
                .spawn(async move { journal.release_hub_events(ids).await });
        }
    }

    async fn telemetry_due(&mut self) {
        if !self.connected {
            return;
        }
        let now = self.journal.now_ms();
        for (which, payload) in self
            .telemetry
            .due(self.gateway.as_ref(), now, self.started_at)
            .await
        {
            let topic = match which {
                telemetry::Which::Health => self.topics.health(),
                telemetry::Which::Stats => self.topics.stats(),
            };
            self.submit(topic, Qos::AtMostOnce, false, payload, Carried::Other);
        }
    }

    /// Says offline (retained) and disconnects, then lets the releases of
    /// events acknowledged meanwhile finish.
    async fn stop(&mut self, from_link: &mut mpsc::Receiver<LinkEvent>) {
        if self.connected {
            let offline = status::offline(self.config.format, "stopped");
            self.submit(
                self.topics.status(),
                Qos::AtLeastOnce,
                true,
                offline,
                Carried::Other,
            );
            if let Some((client, _)) = &self.client {
                let _ = client.try_disconnect();
            }
            let _ = tokio::time::timeout(STOP_GRACE, async {
                while let Some(event) = from_link.recv().await {
                    match event {
                        LinkEvent::Mqtt(Happened::Disconnected) => break,
                        LinkEvent::Lost { .. } => break,
                        other => self.on_link(other),
                    }
                }
            })
            .await;
        }
        self.release();
        while self.releases.join_next().await.is_some() {}
        tracing::info!("hub uplink stopped");
    }
}
