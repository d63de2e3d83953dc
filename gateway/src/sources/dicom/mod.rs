//! The DICOM store SCP: C-ECHO and C-STORE from modalities, each object
//! on disk and in the journal before its success status is sent.
//!
//! # Store, then acknowledge
//!
//! A C-STORE's data set is streamed to a file as its PDVs arrive
//! ([`store`]: temporary name, fsync, rename, directory fsync), its header
//! read back for the identifying attributes, and its record (file, size,
//! SHA-256, UIDs, patient, accession, modality) committed to the journal
//! as a message of type `DICOM`; only then is the response sent:
//!
//! - `0000` success once the commit resolved; a resend of the same object
//!   (same SOP instance UID, same bytes) finds the stored copy, is answered
//!   success and queued nowhere again.
//! - `B007` (warning, stored) when the same SOP instance UID arrived before
//!   with other content: both are kept and both forwarded, and the log
//!   says so; nothing is silently replaced.
//! - `A700` out of resources when the object cannot be written (disk
//!   full), is over `max_object_size`, or the journal refuses it for now
//!   (over its cap, disk reserve, endpoint disabled); the modality keeps
//!   its copy and sends again.
//! - `C000` cannot understand when the data set does not read, lacks its
//!   UIDs, or is not the SOP instance the request named; `0110` when no
//!   route takes DICOM from this endpoint.
//!
//! # Studies
//!
//! Each stored object also updates its study in the journal, in the same
//! transaction; with `study_idle` set, [`study`] journals one ImagingStudy
//! per study once it has been idle that long (its note has the rules).
//!
//! # MPPS
//!
//! With `mpps = true` the endpoint also accepts Modality Performed
//! Procedure Step and journals each N-CREATE and N-SET before answering
//! ([`mpps`] has the statuses).
//!
//! # Associations
//!
//! Negotiation is [`ecko_protocol::dicom::negotiate`]'s. Associations are
//! admitted through [`crate::net`] (`allow`, `max_associations` in all and
//! `max_associations_per_address`) and read through its pacing with one
//! PDU as the unit: a PDU must be complete within `dimse_timeout`, at
//! `min_data_rate` once started, and an association on which no PDU
//! completes for `idle_timeout` is aborted. The association request must
//! come within `association_timeout` (ARTIM). Memory per association is
//! bounded by `max_pdu`: at most one PDU is buffered (about 2 × `max_pdu`
//! with its decoded copy) and the command set is capped at 64 KiB; the
//! object itself goes straight to its file. On shutdown an association
//! finishes the object in hand and is then aborted.
//!
//! # Worklist
//!
//! With `worklist` naming a `worklist` endpoint, the SCP also serves
//! Modality Worklist C-FIND (only Explicit and Implicit VR Little Endian
//! are accepted for it, since the identifier is read and written here).
//! The identifier (capped like a command set) is matched against that
//! worklist's offered steps ([`ecko_protocol::dicom::worklist`]); each
//! match is a pending response (FF00, or FF01 when some keys asked for are
//! not kept) and the last a success. More than `max_worklist_matches`
//! matches: that many are sent, soonest first, then `A700` saying the query
//! should be narrowed. Between matches the SCP looks for a C-CANCEL of the
//! query and, when one came, ends with `FE00` (cancelled). The log carries
//! the calling AE title and the match count; the query's keys (patient
//! names) only at debug level.

mod association;
mod mpps;
pub mod store;
mod study;

use super::SourceContext;
use crate::config::{DicomConfig, Endpoint};
use crate::net::{Admission, PaceLimits, Paced, Reason};
use crate::service::progress::BEAT_EVERY;
use ecko_protocol::dicom::AcceptPolicy;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::ObjectStore;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("endpoint `{endpoint}`: cannot listen on {addr}: {source}")]
    Bind {
        endpoint: String,
        addr: String,
        source: std::io::Error,
    },
    #[error("endpoint `{endpoint}`: cannot open the object store {path}: {source}")]
    Store {
        endpoint: String,
        path: String,
        source: std::io::Error,
    },
}

/// What every association of one endpoint shares.
struct Shared {
    endpoint: String,
    cx: SourceContext,
    policy: AcceptPolicy,
    store: ObjectStore,
    association_timeout: Duration,
    write_timeout: Duration,
    max_object_size: u64,
    /// The `worklist` endpoint C-FIND is answered from.
    worklist: Option<String>,
    max_worklist_matches: usize,
    /// The ImagingStudy announcements ([`study`]): the idle time, the
    /// Endpoint reference, and whether a round is running.
    study_idle: Option<Duration>,
    study_endpoint: Option<String>,
    announcing: std::sync::atomic::AtomicBool,
}

pub struct Listener {
    tcp: TcpListener,
    shared: Arc<Shared>,
    admission: Admission,
    pace: PaceLimits,
}

impl Listener {
    pub async fn bind(
        endpoint: &Endpoint,
        config: &DicomConfig,
        cx: SourceContext,
    ) -> Result<Listener, ListenError> {
        let addr = config.listen.clone().unwrap_or_default();
        let root = config.store_dir(&endpoint.name, cx.journal.path());
        let store = ObjectStore::open(root.clone()).map_err(|source| ListenError::Store {
            endpoint: endpoint.name.clone(),
            path: root.display().to_string(),
            source,
        })?;
        let tcp = match crate::net::low_port::bind(&addr).await {
            Ok(t) => t,
            Err(source) => {
                cx.health.down(
                    &endpoint.name,
                    cx.journal.now_ms(),
                    format!(
                        "{}{addr}: {source}",
                        crate::service::readiness::LISTEN_FAILED
                    ),
                );
                return Err(ListenError::Bind {
                    endpoint: endpoint.name.clone(),
                    addr,
                    source,
                });
            }
        };
        let bound = tcp.local_addr().map_or(addr.clone(), |a| a.to_string());
        cx.health.up(
            &endpoint.name,
            cx.journal.now_ms(),
            format!("listening on {bound} as {}", config.ae_title),
        );
        Ok(Listener {
            tcp,
            admission: Admission::new(config.admission()),
            pace: config.pace(),
            shared: Arc::new(Shared {
                endpoint: endpoint.name.clone(),
                policy: AcceptPolicy {
                    ae_title: config.ae_title.clone(),
                    any_called_ae: config.accept_any_called_ae,
                    allowed_calling: config.allowed_calling_ae.clone(),
                    extra_sop_classes: config.extra_sop_classes.clone(),
                    max_pdu: config.max_pdu_bytes(),
                    worklist: config.worklist.is_some(),
                    mpps: config.mpps,
                },
                worklist: config.worklist.clone(),
                max_worklist_matches: config.max_worklist_matches,
                store,
                association_timeout: config.association_timeout.0,
                write_timeout: config.dimse_timeout.0,
                max_object_size: config.max_object_size.0,
                study_idle: config.study_idle(),
                study_endpoint: config.study_endpoint.clone(),
                announcing: Default::default(),
                cx,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts associations until shutdown, then waits for open ones to
    /// finish the object they are receiving.
    pub async fn serve(self) {
        let mut associations = tokio::task::JoinSet::new();
        let shutdown = self.shared.cx.shutdown.clone();
        let addr = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(endpoint = %self.shared.endpoint, %addr, ae_title = %self.shared.policy.ae_title, store = %self.shared.store.root().display(), "DICOM store SCP ready");
        let heartbeat = self.shared.cx.heartbeat.clone();
        let mut beat = tokio::time::interval(BEAT_EVERY);
        let mut sweep =
            tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_FIRST, SWEEP_EVERY);
        let study_idle = self.shared.study_idle;
        let mut studies = tokio::time::interval(study_idle.map_or(SWEEP_EVERY, study::check_every));
        studies.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            heartbeat.beat();
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    let shared = self.shared.clone();
                    associations.spawn(async move { shared.sweep().await; });
                    continue;
                }
                _ = studies.tick(), if study_idle.is_some() => {
                    let shared = self.shared.clone();
                    let idle = study_idle.unwrap_or_default();
                    associations.spawn(async move { shared.announce_idle_studies(idle).await; });
                    continue;
                }
                Some(_) = associations.join_next(), if !associations.is_empty() => continue,
                _ = beat.tick() => continue,
                a = self.tcp.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(endpoint = %self.shared.endpoint, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admitted = match self.admission.admit(peer.ip()) {
                Ok(a) => a,
                Err(reason) => {
                    self.shared.refused(peer, reason);
                    drop(stream);
                    continue;
                }
            };
            let permit = admitted.permit;
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let stream = Paced::new(stream, self.pace);
            let pace = stream.handle();
            associations.spawn(async move {
                let served = shared.serve_association(stream, &pace, peer);
                tokio::pin!(served);
                let cut = tokio::select! {
                    cut = &mut served => cut,
                    _ = permit.displaced() => {
                        pace.cut(Reason::Displaced);
                        served.await
                    }
                };
                if let Some(reason) = cut {
                    shared.refused(peer, reason);
                }
                drop(permit);
            });
        }
        drop(self.tcp);
        let cx = &self.shared.cx;
        cx.health
            .down(&self.shared.endpoint, cx.journal.now_ms(), "stopped");
        while associations.join_next().await.is_some() {}
        tracing::info!(endpoint = %self.shared.endpoint, "DICOM store SCP stopped");
    }
}

/// A stream whose reads can ask the kernel to acknowledge at once.
///
/// A sender with Nagle's algorithm on (dcmtk's default) holds a data PDU
/// until its command PDU is acknowledged, and Linux delays that
/// acknowledgement by up to 40 ms: every object would wait for it. Quick
/// acknowledgement falls back to delayed mode by itself, so it is asked for
/// before every read.
pub(super) trait AckNow {
    fn ack_now(&self);
}

impl AckNow for Paced<tokio::net::TcpStream> {
    fn ack_now(&self) {
        let _ = socket2::SockRef::from(self.get_ref()).set_tcp_quickack(true);
    }
}

/// Files are looked at an hour after they were written, and the store swept
/// hourly, first a minute after start.
const SWEEP_GRACE: Duration = Duration::from_secs(3600);
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
const SWEEP_FIRST: Duration = Duration::from_secs(60);

impl Shared {
    async fn sweep(&self) {
        match self
            .store
            .sweep(&self.cx.journal, &self.endpoint, SWEEP_GRACE)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(endpoint = %self.endpoint, deleted = n, "stored objects whose messages retention purged are deleted")
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.endpoint, error = %e, "the object store sweep could not read the journal")
            }
        }
    }

    fn refused(&self, peer: SocketAddr, reason: Reason) {
        self.cx
            .counters
            .connections
            .refused(&self.endpoint, peer, reason);
    }
}
