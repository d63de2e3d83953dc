//! The machine's network links: whether each interface is up and has a
//! carrier (a cable plugged in, an access point associated), from
//! `<root>/sys/class/net/<name>/operstate` and `carrier`.
//!
//! `carrier` cannot be read while an interface is administratively down
//! (the kernel answers `EINVAL`); that reads as no carrier.

use crate::sysfs::Sysfs;
use std::sync::{Arc, Mutex, PoisonError};

/// One interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetLink {
    pub name: String,
    /// `up`, `down`, `dormant`, `unknown` (loopback, many virtual links)…
    pub operstate: String,
    pub carrier: bool,
}

impl NetLink {
    /// Up with a carrier; `unknown` counts as up for links that do not
    /// track their state (loopback), when they have a carrier.
    pub fn is_up(&self) -> bool {
        self.carrier && matches!(self.operstate.as_str(), "up" | "unknown")
    }
}

/// The network interfaces of the machine.
pub trait NetLinks: Send + Sync + 'static {
    /// Every interface but loopback, sorted by name.
    fn links(&self) -> Vec<NetLink>;
}

/// The kernel's view under a sysfs root.
#[derive(Debug, Clone, Default)]
pub struct LinuxNetLinks {
    sysfs: Sysfs,
}

impl LinuxNetLinks {
    pub fn new(sysfs: Sysfs) -> Self {
        Self { sysfs }
    }
}

impl NetLinks for LinuxNetLinks {
    fn links(&self) -> Vec<NetLink> {
        self.sysfs
            .entries("sys/class/net")
            .into_iter()
            .filter(|name| name != "lo")
            .map(|name| {
                let dir = format!("sys/class/net/{name}");
                let operstate = self
                    .sysfs
                    .read(format!("{dir}/operstate"))
                    .unwrap_or_else(|_| "unknown".into());
                let carrier = self
                    .sysfs
                    .read(format!("{dir}/carrier"))
                    .is_ok_and(|c| c == "1");
                NetLink {
                    name,
                    operstate,
                    carrier,
                }
            })
            .collect()
    }
}

/// Links the test sets.
#[derive(Debug, Clone, Default)]
pub struct SimNetLinks {
    links: Arc<Mutex<Vec<NetLink>>>,
}

impl SimNetLinks {
    pub fn set(&self, links: Vec<NetLink>) {
        *self.links.lock().unwrap_or_else(PoisonError::into_inner) = links;
    }
}

impl NetLinks for SimNetLinks {
    fn links(&self) -> Vec<NetLink> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(root: &std::path::Path, name: &str, operstate: &str, carrier: Option<&str>) {
        let dir = root.join("sys/class/net").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("operstate"), format!("{operstate}\n")).unwrap();
        if let Some(c) = carrier {
            std::fs::write(dir.join("carrier"), format!("{c}\n")).unwrap();
        }
    }

    #[test]
    fn links_are_read_from_operstate_and_carrier_without_loopback() {
        let root = tempfile::tempdir().unwrap();
        interface(root.path(), "lo", "unknown", Some("1"));
        interface(root.path(), "eth0", "up", Some("1"));
        interface(root.path(), "eth1", "down", Some("0"));
        // Administratively down: no readable carrier.
        interface(root.path(), "wlan0", "down", None);
        let links = LinuxNetLinks::new(Sysfs::new(root.path())).links();
        let seen: Vec<(&str, bool)> = links.iter().map(|l| (l.name.as_str(), l.is_up())).collect();
        assert_eq!(seen, [("eth0", true), ("eth1", false), ("wlan0", false)]);
        assert_eq!(links[1].operstate, "down");
    }

    #[test]
    fn a_machine_without_a_net_class_has_no_links() {
        let root = tempfile::tempdir().unwrap();
        assert!(LinuxNetLinks::new(Sysfs::new(root.path()))
            .links()
            .is_empty());
    }

    #[test]
    fn the_simulated_links_are_what_the_test_set() {
        let sim = SimNetLinks::default();
        sim.set(vec![NetLink {
            name: "eth0".into(),
            operstate: "up".into(),
            carrier: true,
        }]);
        assert!(sim.links()[0].is_up());
    }
}
