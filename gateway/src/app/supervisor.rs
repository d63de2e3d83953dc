//! The running endpoints, and how a new configuration replaces them without
//! a restart.
//!
//! Every enabled endpoint runs as one unit with its own stop token: a source
//! task (listener, drop folder, analyzer line) or a delivery worker. Applying
//! a configuration compares each endpoint's settings with the running ones
//! and touches only what differs:
//!
//! 1. A new or changed listener on a port below 1024 that this process may
//!    not bind (no `CAP_NET_BIND_SERVICE`, `net::low_port`) is refused,
//!    naming the fix; sinks of new or changed destinations are built
//!    (certificates read, HTTP clients made): a mistake there changes
//!    nothing at all.
//! 2. Units whose endpoint is gone, disabled or changed are stopped the way
//!    shutdown stops them: a source stops accepting and finishes the commits
//!    it started (its senders get their ACKs); a worker stops leasing and
//!    lets its batches in flight settle. Queued messages stay queued.
//! 3. The routes, the site time zone and the journal's limits are swapped in.
//! 4. New and changed units start. If one cannot (a port in use), the units
//!    started so far are stopped again, the previous routes come back and
//!    the stopped units are restarted with their previous settings.
//!
//! Units whose endpoint did not change are never touched: an open MLLP
//! connection to an unchanged listener stays open through any edit.
//!
//! Shutdown keeps the gateway's order: every source stops and finishes its
//! commits first, and only then are the delivery workers told to stop.

use super::{purge_on_schedule, RunError, StartOptions};
use crate::config::{Config, Endpoint, EndpointKind};
use crate::endpoints::{runs, PreparedWorker, Role, SourceStart, WorkerStart};
use crate::journal::Journal;
use crate::net::low_port::{port_of, BindPrivilege};
use crate::router::Router;
use crate::service::progress::DEADLINE;
use crate::sources::{astm, SiteTimeZone, SourceContext};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a configuration could not be applied; the running gateway is left as
/// it was.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Start(#[from] RunError),
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

pub use crate::control::ApplyReport;

/// Is this endpoint a delivery worker (a destination) or a source?
fn is_worker(endpoint: &Endpoint) -> bool {
    crate::endpoints::of(&endpoint.kind).role(&endpoint.kind) == Role::Destination
}

/// The address of a listener on a port this process may not bind, and why.
fn unbindable<'a>(endpoint: &'a Endpoint, privilege: &BindPrivilege) -> Option<(&'a str, String)> {
    let address = crate::endpoints::of(&endpoint.kind).listen_address(&endpoint.kind)?;
    let why = privilege.missing_for(port_of(address)?)?;
    Some((address, why))
}

/// The same settings, wherever in the file they are written.
fn same_settings(a: &Endpoint, b: &Endpoint) -> bool {
    Endpoint {
        line: 0,
        ..a.clone()
    } == Endpoint {
        line: 0,
        ..b.clone()
    }
}

struct Unit {
    endpoint: Endpoint,
    worker: bool,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// False once the task has ended.
    alive: Arc<AtomicBool>,
}

impl Unit {
    /// Watches `task`, the running endpoint; one that panics is reported
    /// to `progress`, which then stops the watchdog's keepalives.
    fn new(
        endpoint: &Endpoint,
        worker: bool,
        stop: CancellationToken,
        task: JoinHandle<()>,
        progress: &crate::service::Progress,
    ) -> Unit {
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let (progress, name) = (progress.clone(), endpoint.name.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = task.await {
                if e.is_panic() {
                    tracing::error!(endpoint = %name, "the endpoint's task panicked");
                    progress.panicked(&name);
                }
            }
            flag.store(false, Ordering::Relaxed);
        });
        Unit {
            endpoint: endpoint.clone(),
            worker,
            stop,
            task,
            alive,
        }
    }
}

impl Unit {
    async fn stop(self) -> Endpoint {
        self.stop.cancel();
        let _ = self.task.await;
        self.endpoint
    }
}

struct Purge {
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Running {
    units: BTreeMap<String, Unit>,
    purge: Option<Purge>,
    closed: bool,
}

/// The running endpoints of a gateway; shared with the admin page, which
/// applies edited configurations through it.
pub struct Supervisor {
    journal: Journal,
    start: StartOptions,
    router: Arc<Router>,
    time_zone: SiteTimeZone,
    /// Where ASTM sources publish their line traffic (`ecko-gateway trace`).
    astm_trace: astm::TraceHub,
    /// What every source and worker reports about its link.
    health: crate::health::Health,
    /// Parent of every source's stop token.
    sources_stop: CancellationToken,
    /// Parent of every worker's stop token; cancelled only after every
    /// source has finished, so ingests completing during shutdown are not
    /// left waiting on a stopped engine.
    workers_stop: CancellationToken,
    running: tokio::sync::Mutex<Running>,
    /// Which units exist and whether each still runs, readable while an
    /// apply holds `running`.
    alive: RwLock<BTreeMap<String, Arc<AtomicBool>>>,
    current: RwLock<Arc<Config>>,
    /// Held by a change of the configuration file from reading it to
    /// applying it (the admin page's edits, SIGHUP's reload), so two
    /// changes never build on the same version.
    edits: tokio::sync::Mutex<()>,
}

impl Supervisor {
    /// Starts every enabled endpoint of `config` and the retention purge.
    pub(super) async fn start(
        config: &Config,
        journal: Journal,
        start: StartOptions,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Supervisor>, RunError> {
        let time_zone = jiff::tz::TimeZone::get(&config.site.time_zone)
            .map_err(|_| RunError::TimeZone(config.site.time_zone.clone()))?;
        let supervisor = Arc::new(Supervisor {
            journal,
            start,
            router: Arc::new(Router::new(config)),
            time_zone: SiteTimeZone::new(time_zone),
            astm_trace: astm::TraceHub::default(),
            health: crate::health::Health::new(),
            sources_stop: shutdown.child_token(),
            workers_stop: CancellationToken::new(),
            running: tokio::sync::Mutex::new(Running {
                units: BTreeMap::new(),
                purge: None,
                closed: false,
            }),
            alive: RwLock::new(BTreeMap::new()),
            current: RwLock::new(Arc::new(config.clone())),
            edits: tokio::sync::Mutex::new(()),
        });
        {
            let mut running = supervisor.running.lock().await;
            for endpoint in config.endpoints.iter().filter(|e| runs(e)) {
                match supervisor.start_unit(endpoint, None).await {
                    Ok(unit) => {
                        running.units.insert(endpoint.name.clone(), unit);
                    }
                    Err(e) => {
                        drop(running);
                        supervisor.shutdown().await;
                        return Err(e);
                    }
                }
            }
            running.purge = Some(supervisor.start_purge(config));
            tokio::spawn(super::search_index::index_search_keys(
                supervisor.journal.clone(),
                supervisor.sources_stop.child_token(),
            ));
            supervisor.publish(&running);
        }
        Ok(supervisor)
    }

    /// Serialises changes of the configuration file; see the field.
    pub(crate) async fn lock_edits(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.edits.lock().await
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The site time zone sources use now.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.time_zone.get()
    }

    /// The site time zone as sources share it: follows every applied edit.
    pub fn site_time_zone(&self) -> SiteTimeZone {
        self.time_zone.clone()
    }

    /// What the running endpoints report about their links.
    pub fn health(&self) -> crate::health::Health {
        self.health.clone()
    }

    /// Metrics, progress, disk and clock of this gateway.
    pub fn service(&self) -> crate::service::Service {
        self.start.service.clone()
    }

    /// The line traffic of every ASTM endpoint this supervisor runs.
    pub fn astm_trace(&self) -> astm::TraceHub {
        self.astm_trace.clone()
    }

    /// The enabled ASTM endpoints of the configuration in force.
    pub fn astm_endpoints(&self) -> Vec<String> {
        self.config()
            .endpoints
            .iter()
            .filter(|e| e.enabled)
            .filter(|e| {
                matches!(
                    e.kind,
                    EndpointKind::AstmTcp(_) | EndpointKind::AstmSerial(_)
                )
            })
            .map(|e| e.name.clone())
            .collect()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Names of the endpoints whose unit runs now; does not wait for an
    /// apply in progress.
    pub fn running(&self) -> Vec<String> {
        self.alive
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, alive)| alive.load(Ordering::Relaxed))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn publish(&self, running: &Running) {
        let view = running
            .units
            .iter()
            .map(|(n, u)| (n.clone(), u.alive.clone()))
            .collect();
        *self
            .alive
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = view;
    }

    fn start_purge(&self, config: &Config) -> Purge {
        let stop = self.sources_stop.child_token();
        let task = tokio::spawn(purge_on_schedule(
            self.journal.clone(),
            config.journal.retention,
            config.journal.purge_interval,
            stop.clone(),
        ));
        Purge {
            retention: config.journal.retention,
            every: config.journal.purge_interval,
            stop,
            task,
        }
    }

    /// A heartbeat for the task of endpoint `name`, watched with the
    /// default deadline.
    fn heartbeat(&self, name: &str) -> crate::service::Heartbeat {
        self.start.service.progress.register(name, DEADLINE)
    }

    fn prepare_worker(&self, endpoint: &Endpoint) -> Result<PreparedWorker, RunError> {
        crate::endpoints::of(&endpoint.kind).destination(
            endpoint,
            WorkerStart {
                journal: self.journal.clone(),
                reports: crate::delivery::Reports {
                    health: self.health.clone(),
                    counters: self.start.service.metrics.destination(&endpoint.name),
                    heartbeat: self.heartbeat(&endpoint.name),
                },
                transforms: crate::delivery::Transforms {
                    time_zone: self.time_zone.clone(),
                    templates: self.router.templates(),
                    fhir: None,
                },
            },
        )
    }

    /// Starts one endpoint: its worker (from `prepared` when built already)
    /// or its source.
    async fn start_unit(
        &self,
        endpoint: &Endpoint,
        prepared: Option<PreparedWorker>,
    ) -> Result<Unit, RunError> {
        if is_worker(endpoint) {
            let spawn = match prepared {
                Some(p) => p,
                None => self.prepare_worker(endpoint)?,
            };
            let stop = self.workers_stop.child_token();
            let task = spawn(stop.clone());
            return Ok(Unit::new(
                endpoint,
                true,
                stop,
                task,
                &self.start.service.progress,
            ));
        }
        let stop = self.sources_stop.child_token();
        let cx = SourceContext {
            journal: self.journal.clone(),
            router: self.router.clone(),
            shutdown: stop.clone(),
            time_zone: self.time_zone.clone(),
            health: self.health.clone(),
            counters: self.start.service.metrics.source(&endpoint.name),
            heartbeat: self.heartbeat(&endpoint.name),
        };
        let task = crate::endpoints::of(&endpoint.kind)
            .source(
                endpoint,
                SourceStart {
                    cx,
                    astm_trace: self.astm_trace.clone(),
                    serial: self.start.serial.clone(),
                },
            )
            .await?;
        Ok(Unit::new(
            endpoint,
            false,
            stop,
            task,
            &self.start.service.progress,
        ))
    }

    /// Makes `config` the running configuration, touching only the endpoints
    /// whose settings differ. On error nothing has changed.
    pub async fn apply(&self, config: Config) -> Result<ApplyReport, ApplyError> {
        let mut running = self.running.lock().await;
        if running.closed {
            return Err(ApplyError::ShuttingDown);
        }
        let old = self.config();
        let wanted: BTreeMap<&str, &Endpoint> = config
            .endpoints
            .iter()
            .filter(|e| runs(e))
            .map(|e| (e.name.as_str(), e))
            .collect();
        let to_stop: Vec<String> = running
            .units
            .iter()
            .filter(|(name, unit)| {
                wanted
                    .get(name.as_str())
                    .is_none_or(|e| !same_settings(e, &unit.endpoint))
            })
            .map(|(name, _)| name.clone())
            .collect();
        let to_start: Vec<&Endpoint> = wanted
            .values()
            .filter(|e| !running.units.contains_key(&e.name) || to_stop.contains(&e.name))
            .copied()
            .collect();

        // 1. Refuse a listener this process may not bind, before anything
        // stops; build every new sink.
        let privilege = BindPrivilege::of_this_process();
        for e in &to_start {
            if let Some((address, why)) = unbindable(e, &privilege) {
                return Err(RunError::Endpoint {
                    name: e.name.clone(),
                    reason: format!(
                        "cannot listen on {address}: {why}; the running endpoints were left as they were"
                    ),
                }
                .into());
            }
        }
        let mut prepared = BTreeMap::new();
        for e in to_start.iter().filter(|e| is_worker(e)) {
            prepared.insert(e.name.clone(), self.prepare_worker(e)?);
        }

        // 2. Stop what goes away or changes.
        let mut stopped = Vec::new();
        for name in &to_stop {
            if let Some(unit) = running.units.remove(name) {
                tracing::info!(endpoint = %name, "stopping for the new configuration");
                stopped.push(unit.stop().await);
            }
        }

        // 3. Routes, time zone, journal limits.
        let routes_changed = !same_routes(&old, &config);
        self.router.replace(&config);
        self.set_site(&config);

        // 4. Start what is new or changed.
        let mut started = Vec::new();
        for e in &to_start {
            match self.start_unit(e, prepared.remove(&e.name)).await {
                Ok(unit) => {
                    tracing::info!(endpoint = %e.name, "started with the new configuration");
                    started.push(e.name.clone());
                    running.units.insert(e.name.clone(), unit);
                }
                Err(err) => {
                    tracing::warn!(endpoint = %e.name, error = %err, "cannot start; going back to the previous configuration");
                    for name in &started {
                        if let Some(unit) = running.units.remove(name) {
                            unit.stop().await;
                        }
                    }
                    self.router.replace(&old);
                    self.set_site(&old);
                    for endpoint in stopped {
                        match self.start_unit(&endpoint, None).await {
                            Ok(unit) => {
                                running.units.insert(endpoint.name.clone(), unit);
                            }
                            Err(again) => {
                                tracing::error!(endpoint = %endpoint.name, error = %again, "cannot restart with the previous settings either")
                            }
                        }
                    }
                    self.publish(&running);
                    return Err(err.into());
                }
            }
        }

        if running.purge.as_ref().is_none_or(|p| {
            p.retention != config.journal.retention || p.every != config.journal.purge_interval
        }) {
            if let Some(p) = running.purge.take() {
                p.stop.cancel();
                let _ = p.task.await;
            }
            running.purge = Some(self.start_purge(&config));
        }

        let mut report = ApplyReport {
            routes_changed,
            ..ApplyReport::default()
        };
        for name in to_stop {
            if started.contains(&name) {
                report.restarted.push(name);
            } else {
                report.stopped.push(name);
            }
        }
        report.started = started
            .into_iter()
            .filter(|n| !report.restarted.contains(n))
            .collect();
        if config.journal.path != old.journal.path {
            report.needs_restart.push("[journal] path".into());
        }
        if config.admin != old.admin {
            let address = config.admin.listen_address();
            let why = port_of(&address).and_then(|p| privilege.missing_for(p));
            report.needs_restart.push(match why {
                Some(why) => format!("[admin] ({why})"),
                None => "[admin]".into(),
            });
        }
        if config.hub != old.hub {
            report.needs_restart.push("[hub]".into());
        }
        if config.service != old.service {
            report.needs_restart.push("[service]".into());
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        self.publish(&running);
        Ok(report)
    }

    fn set_site(&self, config: &Config) {
        if let Ok(tz) = jiff::tz::TimeZone::get(&config.site.time_zone) {
            self.time_zone.set(tz);
        }
        self.journal
            .set_limits(config.journal.max_size, config.journal.min_free_disk);
    }

    /// Stops every source (which finish their commits), then every worker,
    /// then the purge. Later applies are refused.
    pub async fn shutdown(&self) {
        let mut running = self.running.lock().await;
        running.closed = true;
        self.sources_stop.cancel();
        let units = std::mem::take(&mut running.units);
        self.publish(&running);
        let (workers, sources): (Vec<_>, Vec<_>) = units.into_values().partition(|u| u.worker);
        for unit in sources {
            let _ = unit.task.await;
        }
        self.workers_stop.cancel();
        for unit in workers {
            let _ = unit.task.await;
        }
        if let Some(p) = running.purge.take() {
            p.stop.cancel();
            let _ = p.task.await;
        }
    }
}

fn same_routes(a: &Config, b: &Config) -> bool {
    let key = |c: &Config| {
        c.routes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.from.clone(),
                    r.message_types.clone(),
                    r.transform.clone(),
                    r.to.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    key(a) == key(b)
}
