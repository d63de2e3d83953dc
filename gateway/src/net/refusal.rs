//! Why a connection was refused or cut, logged and counted the same way
//! for every listener: `ecko_connections_refused_total{endpoint,reason}`.

use prometheus_client::metrics::counter::Counter;
use std::net::SocketAddr;

/// Why a listener refused a connection or cut one it had served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The sender's address is not in the listener's `allow` list.
    NotAllowed,
    /// The sender's address holds `max_connections_per_address` already.
    PerAddressCap,
    /// The listener holds `max_connections`, and no address holds more
    /// than its share (see [`super::admission`]).
    TotalCap,
    /// Closed to make room for a connection from an address holding fewer.
    Displaced,
    /// A started frame (an HTTP request's headers, an ASTM transfer) did
    /// not end in time.
    FrameDeadline,
    /// A started frame arrived slower than the minimum data rate.
    TooSlow,
    /// Nothing completed for the idle timeout.
    Idle,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::NotAllowed,
        Reason::PerAddressCap,
        Reason::TotalCap,
        Reason::Displaced,
        Reason::FrameDeadline,
        Reason::TooSlow,
        Reason::Idle,
    ];

    /// Its `reason` label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotAllowed => "not_allowed",
            Reason::PerAddressCap => "per_address_cap",
            Reason::TotalCap => "total_cap",
            Reason::Displaced => "displaced",
            Reason::FrameDeadline => "frame_deadline",
            Reason::TooSlow => "too_slow",
            Reason::Idle => "idle",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One listener's counters, one per reason, resolved when it starts
/// (`Metrics::connections`): refusing a connection is an atomic add.
#[derive(Debug, Clone)]
pub struct ConnectionCounters {
    endpoint: String,
    by_reason: [Counter; 7],
}

impl Default for ConnectionCounters {
    fn default() -> Self {
        Self::new("", |_| Counter::default())
    }
}

impl ConnectionCounters {
    /// The counters of `endpoint`, each made by `counter`.
    pub fn new(endpoint: &str, mut counter: impl FnMut(Reason) -> Counter) -> Self {
        ConnectionCounters {
            endpoint: endpoint.to_string(),
            by_reason: Reason::ALL.map(&mut counter),
        }
    }

    pub fn count(&self, reason: Reason) -> u64 {
        self.by_reason[reason.index()].get()
    }

    /// A connection from `peer` was refused or cut for `reason`: one log
    /// line and one count. Refusals are warnings (a sender may be locked
    /// out), cuts of slow or silent connections are `info`.
    pub fn refused(&self, endpoint: &str, peer: SocketAddr, reason: Reason) {
        self.by_reason[reason.index()].inc();
        let endpoint = if endpoint.is_empty() {
            self.endpoint.as_str()
        } else {
            endpoint
        };
        match reason {
            Reason::NotAllowed | Reason::PerAddressCap | Reason::TotalCap | Reason::Displaced => {
                tracing::warn!(endpoint, %peer, reason = reason.as_str(), "connection refused")
            }
            Reason::FrameDeadline | Reason::TooSlow | Reason::Idle => {
                tracing::info!(endpoint, %peer, reason = reason.as_str(), "connection cut")
            }
        }
    }
}
