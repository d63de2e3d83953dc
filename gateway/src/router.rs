//! Which message goes to which destination, through which transform, and
//! whether each destination can take it.
//!
//! The routes can be replaced while sources run (an edit on the admin page):
//! each message is routed with one consistent table, the one current when
//! it arrived.
//!
//! A source acknowledges only what every destination can take
//! ([`Router::check`]): before the commit, each route's transform runs on
//! the message (with a FHIR destination's rules when it is one) and a
//! worklist reads its orders, the same pure functions delivery runs later.
//! A message that fails is refused to its sender with the reason, who keeps
//! it, instead of being acknowledged and then dead-lettered. What can still
//! fail after the commit is what the message cannot decide: the network,
//! the peer's answer, a configuration changed since.

use crate::config::{Config, EndpointKind, PartitionBy};
use crate::journal::{Destination, IngestError};
use ecko_fhir::shape::FhirDestination;
use ecko_fhir::template::Templates;
use ecko_fhir::worklist::WorklistDefaults;
use ecko_fhir::TransformContext;
use ecko_message::{Envelope, StoredMessage};
use jiff::tz::TimeZone;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, RwLock};

/// The routes of the running configuration, ready to answer per message.
pub struct Router {
    table: RwLock<Arc<RouteTable>>,
    /// Custom templates, compiled once for the check and every delivery
    /// worker.
    templates: Arc<Templates>,
}

/// What a destination does with a message that the message itself can make
/// fail.
#[derive(Debug, Clone, PartialEq)]
enum Reads {
    /// The transform's bytes, as they come.
    Bytes,
    /// A transaction Bundle: what the transform makes must be one.
    Fhir,
    /// Orders, read into Modality Worklist entries.
    Worklist(WorklistDefaults),
}

/// The routes of one configuration.
#[derive(Debug)]
struct RouteTable {
    routes: Vec<crate::config::Route>,
    /// Per destination endpoint: what splits its queue into lanes.
    partitions: Vec<(String, Option<PartitionBy>)>,
    disabled: Vec<String>,
    /// Per destination endpoint, unless it takes bytes as they come.
    reads: Vec<(String, Reads)>,
}

impl RouteTable {
    fn new(config: &Config) -> Self {
        Self {
            routes: config.routes.clone(),
            partitions: config
                .endpoints
                .iter()
                .map(|e| (e.name.clone(), e.partition_by))
                .collect(),
            disabled: config
                .endpoints
                .iter()
                .filter(|e| !e.enabled)
                .map(|e| e.name.clone())
                .collect(),
            reads: config
                .endpoints
                .iter()
                .filter_map(|e| {
                    let reads = match &e.kind {
                        EndpointKind::Fhir(_) => Reads::Fhir,
                        EndpointKind::Worklist(w) => Reads::Worklist(w.defaults(&e.name)),
                        _ => return None,
                    };
                    Some((e.name.clone(), reads))
                })
                .collect(),
        }
    }

    fn reads(&self, destination: &str) -> &Reads {
        self.reads
            .iter()
            .find(|(name, _)| name == destination)
            .map_or(&Reads::Bytes, |(_, r)| r)
    }
}

impl Router {
    pub fn new(config: &Config) -> Self {
        Self {
            table: RwLock::new(Arc::new(RouteTable::new(config))),
            templates: Arc::default(),
        }
    }

    /// The compiled custom templates, for the delivery workers.
    pub fn templates(&self) -> Arc<Templates> {
        self.templates.clone()
    }

    /// Swaps in the routes of `config`; messages already being routed finish
    /// with the table they started with.
    pub fn replace(&self, config: &Config) {
        let table = Arc::new(RouteTable::new(config));
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = table;
    }

    fn current(&self) -> Arc<RouteTable> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The destinations of `message`, one per (route, to) pair, without
    /// duplicates; empty when no route accepts it. Disabled destinations
    /// still get their row: the message waits for them to be enabled. A
    /// route's `application_ack` endpoint rides along as `reply_to`; whether
    /// the message asked for one (MSH-16) is decided when the row settles.
    pub fn destinations(&self, message: &Envelope) -> Vec<Destination> {
        let table = self.current();
        let mut out: Vec<Destination> = Vec::new();
        for route in &table.routes {
            if !route.from.iter().any(|f| f == &message.source) {
                continue;
            }
            if !route
                .message_types
                .iter()
                .any(|p| p.matches(&message.message_type))
            {
                continue;
            }
            for to in &route.to {
                if let Some(same) = out
                    .iter_mut()
                    .find(|d| &d.endpoint == to && d.transform == route.transform)
                {
                    if same.reply_to.is_none() {
                        same.reply_to = route.application_ack.clone();
                    }
                    continue;
                }
                out.push(Destination {
                    endpoint: to.clone(),
                    transform: route.transform.clone(),
                    lane: table.lane(to, message),
                    reply_to: route.application_ack.clone(),
                });
            }
        }
        out
    }

    /// Whether every one of `destinations` can take `message`, read as the
    /// site's zone `site` says where the message names none. The first
    /// that cannot is the refusal, with its reason.
    pub fn check(
        &self,
        message: &StoredMessage,
        destinations: &[Destination],
        site: &TimeZone,
    ) -> Result<(), IngestError> {
        let table = self.current();
        let mut checked: Vec<(&str, &Reads)> = Vec::with_capacity(destinations.len());
        for d in destinations {
            let reads = table.reads(&d.endpoint);
            if checked.iter().any(|&(t, r)| t == d.transform && r == reads) {
                continue;
            }
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                self.takes(message, &d.transform, reads, site)
            }))
            .unwrap_or_else(|_| {
                tracing::error!(destination = %d.endpoint, transform = %d.transform, "transform panicked while checking a message");
                Err("it failed unexpectedly (internal error)".into())
            });
            if let Err(reason) = outcome {
                return Err(IngestError::Unmappable {
                    destination: d.endpoint.clone(),
                    reason,
                });
            }
            checked.push((&d.transform, reads));
        }
        Ok(())
    }

    fn takes(
        &self,
        message: &StoredMessage,
        transform: &str,
        reads: &Reads,
        site: &TimeZone,
    ) -> Result<(), String> {
        if transform == "none" && !matches!(reads, Reads::Fhir) {
            // The bytes as received, which a worklist still has to read.
            return match reads {
                Reads::Worklist(defaults) => worklist_reads(message, defaults, site),
                _ => Ok(()),
            };
        }
        let for_fhir = matches!(reads, Reads::Fhir);
        let cx = TransformContext {
            site_time_zone: site.clone(),
            templates: self.templates.clone(),
            fhir: for_fhir.then(|| Arc::new(FhirDestination::default())),
        };
        ecko_fhir::check(transform, message, &cx, for_fhir)
            .map_err(|e| format!("transform `{transform}` failed: {e}"))?;
        // A worklist reads the message itself, whatever the transform made.
        match reads {
            Reads::Worklist(defaults) => worklist_reads(message, defaults, site),
            _ => Ok(()),
        }
    }

    /// Whether the endpoint may take messages now.
    pub fn is_enabled(&self, endpoint: &str) -> bool {
        !self.current().disabled.iter().any(|d| d == endpoint)
    }
}

/// Whether a worklist finds orders in `message`, as its sink reads them.
fn worklist_reads(
    message: &StoredMessage,
    defaults: &WorklistDefaults,
    site: &TimeZone,
) -> Result<(), String> {
    let tz = message
        .hints
        .time_zone
        .as_deref()
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or_else(|| site.clone());
    ecko_fhir::worklist::changes(message, None, defaults, &tz)
        .map(drop)
        .map_err(|e| format!("not an order the worklist can keep: {e}"))
}

impl RouteTable {
    fn lane(&self, destination: &str, message: &Envelope) -> String {
        let by = self
            .partitions
            .iter()
            .find(|(name, _)| name == destination)
            .and_then(|(_, p)| *p);
        match by {
            None => String::new(),
            Some(PartitionBy::Patient) => message.patient_id.clone().unwrap_or_default(),
            Some(PartitionBy::Source) => message.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
            [journal]
            path = "j.db"
            [[endpoint]]
            name = "in"
            type = "file-drop"
            path = "in"
            [[endpoint]]
            name = "a"
            type = "file"
            path = "a"
            partition_by = "patient"
            [[endpoint]]
            name = "b"
            type = "file"
            path = "b"
            [[route]]
            name = "results"
            from = ["in"]
            message_types = ["ORU^*"]
            to = ["a", "b"]
            [[route]]
            name = "everything"
            from = ["in"]
            to = ["b"]
            "#,
            "t.toml",
            |_| None,
        )
        .unwrap()
    }

    fn message(kind: &str) -> Envelope {
        Envelope {
            source: "in".into(),
            message_type: kind.into(),
            patient_id: Some("P7".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_message_goes_to_every_matching_destination_once() {
        let d = Router::new(&config()).destinations(&message("ORU^R01"));
        let names: Vec<_> = d.iter().map(|d| d.endpoint.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn the_message_type_filter_keeps_other_types_away() {
        let d = Router::new(&config()).destinations(&message("ADT^A01"));
        let names: Vec<_> = d.iter().map(|d| d.endpoint.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn a_partitioned_destination_puts_each_patient_in_its_own_lane() {
        let d = Router::new(&config()).destinations(&message("ORU^R01"));
        assert_eq!(d[0].lane, "P7");
        assert_eq!(d[1].lane, "");
    }

    #[test]
    fn a_message_from_an_unrouted_source_has_no_destination() {
        let mut m = message("ORU^R01");
        m.source = "elsewhere".into();
        assert!(Router::new(&config()).destinations(&m).is_empty());
    }

    #[test]
    fn replaced_routes_apply_to_the_next_message() {
        let router = Router::new(&config());
        let mut next = config();
        next.routes.retain(|r| r.name == "results");
        router.replace(&next);
        let d = router.destinations(&message("ADT^A01"));
        assert!(d.is_empty(), "{d:?}");
        let d = router.destinations(&message("ORU^R01"));
        assert_eq!(d.len(), 2);
    }

    /// Three destinations of one HL7 source: the hub as FHIR, a worklist,
    /// and an archive taking the bytes as they come.
    fn checked_config() -> Config {
        Config::parse(
            r#"
            [journal]
            path = "j.db"
            [[endpoint]]
            name = "in"
            type = "file-drop"
            path = "in"
            [[endpoint]]
            name = "hub"
            type = "fhir"
            url = "https://hub.example/fhir"
            [[endpoint]]
            name = "mwl"
            type = "worklist"
            [[endpoint]]
            name = "archive"
            type = "file"
            path = "a"
            [[route]]
            name = "results"
            from = ["in"]
            message_types = ["ORU^*", "ADT^*"]
            transform = "hl7v2-fhir"
            to = ["hub"]
            [[route]]
            name = "orders"
            from = ["in"]
            message_types = ["ORM^*", "ADT^*"]
            to = ["mwl"]
            [[route]]
            name = "raw"
            from = ["in"]
            message_types = ["JSON"]
            to = ["hub", "archive"]
            [[route]]
            name = "everything"
            from = ["in"]
            to = ["archive"]
            "#,
            "t.toml",
            |_| None,
        )
        .unwrap()
    }

    fn arriving(kind: &str, payload: &str) -> StoredMessage {
        StoredMessage {
            id: 0,
            received_at: 0,
            envelope: Envelope {
                source: "in".into(),
                message_type: kind.into(),
                content_type: "x-application/hl7-v2+er7".into(),
                payload: payload.replace('\n', "\r").into_bytes(),
                ..Default::default()
            },
        }
    }

    fn check(router: &Router, m: &StoredMessage) -> Result<(), IngestError> {
        router.check(m, &router.destinations(m), &TimeZone::UTC)
    }

    /// The destination that refused `m`, and why.
    fn refusal(router: &Router, m: &StoredMessage) -> (String, String) {
        match check(router, m) {
            Err(IngestError::Unmappable {
                destination,
                reason,
            }) => (destination, reason),
            other => panic!("not refused as unmappable: {other:?}"),
        }
    }

    const ORU: &str = "MSH|^~\\&|LAB|L|HUB|H|20260101120000||ORU^R01|C1|P|2.5\n\
        PID|1||P7^^^L^MR||DOE^JANE\n\
        OBR|1||F1|GLU^Glucose\n\
        OBX|1|NM|GLU^Glucose||5.5|mmol/L|||||F\n";

    const ORM: &str = "MSH|^~\\&|HIS|H|PACS|R|20260101120000||ORM^O01|C2|P|2.5\n\
        PID|1||P7^^^H^MR||DOE^JANE\n\
        ORC|NW|A1|F1\n\
        OBR|1|A1|F1|CT^CT head|||20260102090000\n";

    #[test]
    fn a_message_every_destination_can_take_passes_the_check() {
        let router = Router::new(&checked_config());
        assert!(check(&router, &arriving("ORU^R01", ORU)).is_ok());
        assert!(check(&router, &arriving("ORM^O01", ORM)).is_ok());
    }

    #[test]
    fn a_message_its_transform_cannot_map_is_refused_naming_the_destination() {
        let router = Router::new(&checked_config());
        // An ADT without a PID holds nothing the FHIR transform can map.
        let adt = "MSH|^~\\&|HIS|H|HUB|H|20260101120000||ADT^A01|C3|P|2.5\nEVN|A01\n";
        let (destination, reason) = refusal(&router, &arriving("ADT^A01", adt));
        assert_eq!(destination, "hub");
        assert!(
            reason.starts_with("transform `hl7v2-fhir` failed: "),
            "{reason}"
        );
    }

    #[test]
    fn a_worklist_refuses_a_message_that_holds_no_order() {
        let router = Router::new(&checked_config());
        let adt = "MSH|^~\\&|HIS|H|HUB|H|20260101120000||ADT^A01|C3|P|2.5\n\
            PID|1||P7^^^H^MR||DOE^JANE\n";
        // The hub maps this ADT; the worklist finds no order in it.
        let (destination, reason) = refusal(&router, &arriving("ADT^A01", adt));
        assert_eq!(destination, "mwl");
        assert!(
            reason.starts_with("not an order the worklist can keep"),
            "{reason}"
        );
    }

    #[test]
    fn a_fhir_destination_without_a_transform_takes_only_a_transaction_bundle() {
        let router = Router::new(&checked_config());
        let mut m = arriving("JSON", r#"{"resourceType":"Patient"}"#);
        m.envelope.content_type = "application/fhir+json".into();
        assert_eq!(refusal(&router, &m).0, "hub");
        m.envelope.payload =
            br#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#.to_vec();
        assert!(check(&router, &m).is_ok());
    }

    #[test]
    fn bytes_taken_as_they_come_are_never_refused() {
        let router = Router::new(&checked_config());
        let m = arriving("XYZ", "not HL7 at all \u{0}");
        assert_eq!(router.destinations(&m).len(), 1);
        assert!(check(&router, &m).is_ok());
    }
}
