//! Which connections a listener serves: an optional allowlist of sender
//! addresses or networks, a cap per source address and a total cap. An
//! admitted connection holds a [`Permit`]; dropping it frees the slot.
//!
//! # When the total cap is reached
//!
//! A flood from one address must not lock out a real sender from another,
//! so a full listener does not simply refuse. A new connection from address
//! `A` takes the slot of the *oldest* connection of the address `M` holding
//! the most, when `M` holds at least two more than `A` does now
//! (`count(M) >= count(A) + 2`); otherwise it is refused. Each displacement
//! therefore brings the two addresses closer to an equal share and never
//! swaps connections between equals, so the listener settles at a fair
//! share per address instead of churning. 64 idle sockets from one address
//! leave room for everyone else; 64 addresses with one socket each can
//! still fill the listener, which is what the allowlist (`allow`) and the
//! pacing of [`super::pace`] are for.
//!
//! Addresses are compared as IPv4 when they are IPv4-mapped IPv6
//! (`::ffff:10.1.2.3`), so a dual-stack listener counts and allows a sender
//! the same on either family.

use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

use super::Reason;

/// Sender addresses and networks a listener serves; empty: every address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<IpNet>);

impl Allowlist {
    /// Reads `"10.1.2.3"`, `"10.1.0.0/16"`, `"fd00::/8"`; the entry that
    /// does not parse is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Allowlist, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = entry.as_ref().trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => canonical_net(net),
                Err(_) => match text.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => return Err(text.to_string()),
                },
            };
            nets.push(net);
        }
        Ok(Allowlist(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4)
            }
            _ => net,
        },
        v4 => v4,
    }
}

/// A listener's admission settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRules {
    pub allow: Allowlist,
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// The connections a listener holds now; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    rules: Arc<AdmissionRules>,
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    total: usize,
    /// Per address, its connections oldest first.
    by_address: HashMap<IpAddr, VecDeque<Slot>>,
}

struct Slot {
    id: u64,
    displaced: CancellationToken,
}

/// One admitted connection's slot, freed on drop.
pub struct Permit {
    id: u64,
    addr: IpAddr,
    displaced: CancellationToken,
    table: Arc<Mutex<Table>>,
}

/// What [`Admission::admit`] did.
pub struct Admitted {
    pub permit: Permit,
    /// The address whose oldest connection was closed to make room.
    pub displaced: Option<IpAddr>,
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Admission {
    pub fn new(rules: AdmissionRules) -> Self {
        Admission {
            rules: Arc::new(rules),
            table: Arc::default(),
        }
    }

    pub fn rules(&self) -> &AdmissionRules {
        &self.rules
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        lock(&self.table).total
    }

    /// Admits a connection from `peer`, or says why not.
    pub fn admit(&self, peer: IpAddr) -> Result<Admitted, Reason> {
        let addr = peer.to_canonical();
        if !self.rules.allow.allows(addr) {
            return Err(Reason::NotAllowed);
        }
        let mut table = lock(&self.table);
        let held = table.by_address.get(&addr).map_or(0, VecDeque::len);
        if held >= self.rules.max_per_address.max(1) {
            return Err(Reason::PerAddressCap);
        }
        let mut displaced = None;
        if table.total >= self.rules.max_connections.max(1) {
            let most = table
                .by_address
                .iter()
                .filter(|(_, slots)| !slots.is_empty())
                .max_by(|a, b| {
                    // The most connections; of equals, the oldest connection.
                    a.1.len()
                        .cmp(&b.1.len())
                        .then_with(|| b.1[0].id.cmp(&a.1[0].id))
                })
                .map(|(ip, slots)| (*ip, slots.len()));
            match most {
                Some((victim, count)) if count >= held + 2 => {
                    if let Some(slot) = table
                        .by_address
                        .get_mut(&victim)
                        .and_then(VecDeque::pop_front)
                    {
                        slot.displaced.cancel();
                        table.total -= 1;
                    }
                    if table
                        .by_address
                        .get(&victim)
                        .is_some_and(VecDeque::is_empty)
                    {
                        table.by_address.remove(&victim);
                    }
                    displaced = Some(victim);
                }
                _ => return Err(Reason::TotalCap),
            }
        }
        table.next_id += 1;
        let id = table.next_id;
        let token = CancellationToken::new();
        table.by_address.entry(addr).or_default().push_back(Slot {
            id,
            displaced: token.clone(),
        });
        table.total += 1;
        Ok(Admitted {
            permit: Permit {
                id,
                addr,
                displaced: token,
                table: self.table.clone(),
            },
            displaced,
        })
    }
}

impl Permit {
    /// Resolves when this connection was displaced by a newer one: its
    /// task should close it then (its slot is already given away).
    pub async fn displaced(&self) {
        self.displaced.cancelled().await
    }

    pub fn is_displaced(&self) -> bool {
        self.displaced.is_cancelled()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        let Some(slots) = table.by_address.get_mut(&self.addr) else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| s.id != self.id);
        let removed = before - slots.len();
        if slots.is_empty() {
            table.by_address.remove(&self.addr);
        }
        table.total -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rules(allow: &[&str], total: usize, per_address: usize) -> Admission {
        Admission::new(AdmissionRules {
            allow: Allowlist::parse(allow).unwrap(),
            max_connections: total,
            max_per_address: per_address,
        })
    }

    #[test]
    fn an_allowlist_takes_addresses_and_networks_and_treats_mapped_ipv6_as_ipv4() {
        let list = Allowlist::parse(&["10.1.2.3", "10.2.0.0/16", "fd00::/8"]).unwrap();
        assert!(list.allows(ip("10.1.2.3")));
        assert!(!list.allows(ip("10.1.2.4")));
        assert!(list.allows(ip("10.2.200.1")));
        assert!(list.allows(ip("::ffff:10.2.0.9")));
        assert!(!list.allows(ip("::ffff:10.3.0.9")));
        assert!(list.allows(ip("fd00::1")));
        let mapped = Allowlist::parse(&["::ffff:10.9.0.0/112"]).unwrap();
        assert!(mapped.allows(ip("10.9.1.2")));
        assert_eq!(Allowlist::parse(&["10.1.2"]), Err("10.1.2".to_string()));
        assert!(Allowlist::default().allows(ip("192.0.2.1")));
    }

    #[test]
    fn an_address_outside_the_allowlist_is_refused() {
        let a = rules(&["10.0.0.0/8"], 4, 4);
        assert!(a.admit(ip("10.0.0.1")).is_ok());
        assert_eq!(a.admit(ip("192.0.2.1")).err(), Some(Reason::NotAllowed));
    }

    #[test]
    fn one_address_cannot_hold_more_than_its_cap_and_a_freed_slot_is_reused() {
        let a = rules(&[], 64, 2);
        let first = a.admit(ip("10.0.0.1")).unwrap();
        let _second = a.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Reason::PerAddressCap));
        assert!(a.admit(ip("10.0.0.2")).is_ok());
        drop(first);
        assert!(a.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_new_address_at_the_total_cap_displaces_the_oldest_connection_of_the_biggest_holder() {
        let a = rules(&[], 4, 4);
        let flood: Vec<_> = (0..4).map(|_| a.admit(ip("10.0.0.66")).unwrap()).collect();
        let real = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(real.displaced, Some(ip("10.0.0.66")));
        assert!(flood[0].permit.is_displaced());
        assert!(flood[1..].iter().all(|f| !f.permit.is_displaced()));
        assert_eq!(a.open(), 4);
        // The displaced permit's drop frees nothing twice.
        drop(flood);
        assert_eq!(a.open(), 1);
    }

    #[test]
    fn equal_holders_are_not_swapped_and_the_newcomer_is_refused() {
        let a = rules(&[], 2, 4);
        let _x = a.admit(ip("10.0.0.1")).unwrap();
        let _y = a.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(a.admit(ip("10.0.0.3")).err(), Some(Reason::TotalCap));
        // One more than the other is not enough either: it would swap.
        let b = rules(&[], 3, 4);
        let _p = b.admit(ip("10.0.0.1")).unwrap();
        let _q = b.admit(ip("10.0.0.1")).unwrap();
        let _r = b.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(b.admit(ip("10.0.0.2")).err(), Some(Reason::TotalCap));
        assert!(b.admit(ip("10.0.0.3")).unwrap().displaced == Some(ip("10.0.0.1")));
    }

    #[tokio::test]
    async fn a_displaced_permit_wakes_its_connection() {
        let a = rules(&[], 2, 2);
        let old = a.admit(ip("10.0.0.9")).unwrap().permit;
        let _also = a.admit(ip("10.0.0.9")).unwrap();
        let _new = a.admit(ip("10.0.0.1")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), old.displaced())
            .await
            .expect("the oldest connection is told to close");
    }
}
