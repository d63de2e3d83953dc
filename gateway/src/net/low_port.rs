//! Ports below 1024, which Linux lets a process bind only with
//! `CAP_NET_BIND_SERVICE` in its effective set, or when
//! `net.ipv4.ip_unprivileged_port_start` is lowered to the port or below.
//!
//! The service runs as `ecko` with no capability at all unless a port below
//! 1024 is configured: then the unit's generator (`ecko-gateway-generator`,
//! which runs `ecko-gateway low-ports`) adds a drop-in granting this one.
//! The generator runs at boot and at `systemctl daemon-reload`, never at a
//! plain restart, so a low port configured since then is refused at bind
//! time; the error says so and names the fix ([`explain`]), and a live
//! apply checks before it stops anything ([`BindPrivilege::missing_for`]).

use std::io;

/// What the kernel uses when `ip_unprivileged_port_start` cannot be read.
pub const DEFAULT_UNPRIVILEGED_START: u16 = 1024;

/// The commands that grant the capability: the generator runs again on the
/// configuration file, then the service starts with its drop-in.
pub const FIX: &str = "systemctl daemon-reload && systemctl restart ecko-gateway";

/// `CAP_NET_BIND_SERVICE`'s bit in the capability sets of `/proc/*/status`.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// The port of `host:port` or `[v6]:port`.
pub fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.trim().parse().ok()
}

/// Whether this process may bind low ports, as the kernel would judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindPrivilege {
    /// `net.ipv4.ip_unprivileged_port_start`: ports from here on need no
    /// capability.
    pub unprivileged_start: u16,
    /// Whether `CAP_NET_BIND_SERVICE` is in the effective set; `None` when
    /// that could not be read.
    pub has_capability: Option<bool>,
}

impl BindPrivilege {
    /// Read from `/proc` for the calling process.
    pub fn of_this_process() -> Self {
        let unprivileged_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(DEFAULT_UNPRIVILEGED_START);
        let has_capability = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| effective_has_net_bind_service(&s));
        Self {
            unprivileged_start,
            has_capability,
        }
    }

    /// Why binding `port` would be refused, or `None` when it would not (or
    /// cannot be told: the bind itself will say).
    pub fn missing_for(&self, port: u16) -> Option<String> {
        if port == 0 || port >= self.unprivileged_start || self.has_capability != Some(false) {
            return None;
        }
        Some(missing_capability(port, self.unprivileged_start))
    }
}

/// Whether the `CapEff:` line of a `/proc/*/status` text holds
/// `CAP_NET_BIND_SERVICE`; `None` without a readable line.
pub fn effective_has_net_bind_service(status: &str) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let set = u64::from_str_radix(hex, 16).ok()?;
    Some(set & (1 << CAP_NET_BIND_SERVICE) != 0)
}

fn missing_capability(port: u16, unprivileged_start: u16) -> String {
    format!(
        "port {port} is below {unprivileged_start} and the process lacks CAP_NET_BIND_SERVICE; \
         run `{FIX}` so that the unit grants it for the ports the configuration names"
    )
}

/// A bind error on `address` with what to do about it when the kernel
/// refused a low port: the same kind, the OS's words, then the capability
/// and the fix. Any other error is returned as it is.
pub fn explain(address: &str, error: io::Error) -> io::Error {
    if error.kind() != io::ErrorKind::PermissionDenied {
        return error;
    }
    let Some(port) = port_of(address).filter(|p| *p != 0) else {
        return error;
    };
    let start = BindPrivilege::of_this_process().unprivileged_start;
    if port >= start {
        return error;
    }
    io::Error::new(
        error.kind(),
        format!("{error}: {}", missing_capability(port, start)),
    )
}

/// [`tokio::net::TcpListener::bind`] with a refused low port explained.
pub async fn bind(address: &str) -> io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| explain(address, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
    const NOBODY: &str = "Name:\tx\nCapEff:\t0000000000000000\n";

    #[test]
    fn the_effective_set_is_read_from_the_capeff_line() {
        assert_eq!(effective_has_net_bind_service(ROOT), Some(true));
        assert_eq!(effective_has_net_bind_service(NOBODY), Some(false));
        assert_eq!(
            effective_has_net_bind_service("CapEff:\t0000000000000400\n"),
            Some(true)
        );
        assert_eq!(effective_has_net_bind_service("Name:\tx\n"), None);
        assert_eq!(effective_has_net_bind_service("CapEff:\tzz\n"), None);
    }

    #[test]
    fn ports_are_read_from_host_port_and_bracketed_v6_addresses() {
        assert_eq!(port_of("0.0.0.0:104"), Some(104));
        assert_eq!(port_of("[::]:443"), Some(443));
        assert_eq!(port_of("analyzer.lan:5100"), Some(5100));
        assert_eq!(port_of("nowhere"), None);
        assert_eq!(port_of("host:99999"), None);
    }

    #[test]
    fn only_a_low_port_without_the_capability_is_refused_beforehand() {
        let lacking = BindPrivilege {
            unprivileged_start: 1024,
            has_capability: Some(false),
        };
        let why = lacking.missing_for(104).unwrap();
        assert!(why.contains("CAP_NET_BIND_SERVICE"), "{why}");
        assert!(why.contains(FIX), "{why}");
        assert_eq!(lacking.missing_for(1024), None);
        assert_eq!(lacking.missing_for(0), None, "port 0 is any free port");
        let lowered = BindPrivilege {
            unprivileged_start: 80,
            ..lacking
        };
        assert_eq!(lowered.missing_for(104), None);
        let holding = BindPrivilege {
            has_capability: Some(true),
            ..lacking
        };
        assert_eq!(holding.missing_for(104), None);
        let unknown = BindPrivilege {
            has_capability: None,
            ..lacking
        };
        assert_eq!(unknown.missing_for(104), None);
    }

    #[test]
    fn a_refused_low_port_is_explained_and_other_errors_are_left_alone() {
        let denied = || io::Error::from_raw_os_error(nix::libc::EACCES);
        let e = explain("0.0.0.0:104", denied());
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
        assert!(e.to_string().contains("os error 13"), "{e}");
        let high = explain("0.0.0.0:2575", denied());
        assert!(!high.to_string().contains("CAP_NET_BIND_SERVICE"), "{high}");
        let in_use = explain(
            "0.0.0.0:104",
            io::Error::from_raw_os_error(nix::libc::EADDRINUSE),
        );
        assert!(!in_use.to_string().contains("CAP_NET_BIND_SERVICE"));
    }
}
