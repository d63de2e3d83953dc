//! Which message goes to which destination, through which transform.
//!
//! The routes can be replaced while sources run (an edit on the admin page):
//! each message is routed with one consistent table, the one current when
//! it arrived.

use crate::config::{Config, PartitionBy};
use crate::journal::Destination;
use ecko_message::Envelope;
use std::sync::{Arc, RwLock};

/// The routes of the running configuration, ready to answer per message.
#[derive(Debug)]
pub struct Router {
    table: RwLock<Arc<RouteTable>>,
}

/// The routes of one configuration.
#[derive(Debug)]
struct RouteTable {
    routes: Vec<crate::config::Route>,
    /// Per destination endpoint: what splits its queue into lanes.
    partitions: Vec<(String, Option<PartitionBy>)>,
    disabled: Vec<String>,
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
        }
    }
}

impl Router {
    pub fn new(config: &Config) -> Self {
        Self {
            table: RwLock::new(Arc::new(RouteTable::new(config))),
        }
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

    /// Whether the endpoint may take messages now.
    pub fn is_enabled(&self, endpoint: &str) -> bool {
        !self.current().disabled.iter().any(|d| d == endpoint)
    }
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
}
