//! Power loss during an install, as a real process kill: `ecko-image
//! install` is SIGKILLed again and again, at spread-out delays and once
//! the inactive slot holds N bytes, and after each kill `ecko-image status`
//! must show a consistent device: the running good slot unchanged (state,
//! version, image) and still booting next unless the new slot was fully
//! written; the inactive slot either not pending, or pending with exactly
//! the bundle's payload. A last install, not killed, succeeds. The same
//! holds with the inactive slot on a partition (a loop device).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::loop_device::LoopDevice;
use common::Scratch;
use sha2::{Digest, Sha256};

const KILLS: usize = 20;
const PAYLOAD_LEN: usize = 8 << 20;

/// A scratch device; slot a on a partition when `part` is given.
struct Device(Scratch, Option<LoopDevice>);

impl std::ops::Deref for Device {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Device {
    fn with_slot_a_on_a_partition() -> Device {
        let s = Scratch::new(&["slots"]);
        let part = LoopDevice::new(&s.d, "a.img", 2 * PAYLOAD_LEN as u64);
        std::fs::write(
            s.d.join("slots/slots.toml"),
            format!("[a]\ndevice = \"{}\"\n", part.p()),
        )
        .unwrap();
        Device(s, Some(part))
    }
}

impl Device {
    fn install_args(&self, bundle: &str) -> Vec<String> {
        [
            "install",
            &self.p(bundle),
            "--trust",
            &self.p("key.pub"),
            "--hardware",
            "box-v2",
            "--slots",
            &self.p("slots"),
        ]
        .map(str::to_owned)
        .to_vec()
    }
    fn install(&self, bundle: &str) {
        let args = self.install_args(bundle);
        self.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    /// `bundle` installed, booted and marked good.
    fn install_good(&self, bundle: &str) {
        self.install(bundle);
        self.ok(&["boot", "--slots", &self.p("slots")]);
        self.ok(&["mark-good", "--slots", &self.p("slots")]);
    }
    /// How long one uninterrupted install of `bundle` takes here, to spread
    /// the kills over it.
    fn timed_install(&self, bundle: &str) -> Duration {
        let started = Instant::now();
        self.install(bundle);
        started.elapsed()
    }
    fn spawn_install(&self, bundle: &str) -> Child {
        Command::new(env!("CARGO_BIN_EXE_ecko-image"))
            .args(self.install_args(bundle))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
    fn status(&self) -> serde_json::Value {
        let o = self.ok(&["status", "--slots", &self.p("slots"), "--json"]);
        serde_json::from_slice(&o.stdout).unwrap()
    }
    /// The slot's image: the file, or the partition's first payload-length
    /// bytes.
    fn slot_bytes(&self, slot: &str) -> Option<Vec<u8>> {
        match &self.1 {
            Some(part) if slot == "a" => Some(part.bytes()[..PAYLOAD_LEN].to_vec()),
            _ => std::fs::read(self.d.join("slots").join(format!("slot-{slot}"))).ok(),
        }
    }
    fn slot_sha(&self, slot: &str) -> Option<[u8; 32]> {
        self.slot_bytes(slot).map(|b| Sha256::digest(&b).into())
    }
    fn slot_len(&self, slot: &str) -> u64 {
        std::fs::metadata(self.d.join("slots").join(format!("slot-{slot}"))).map_or(0, |m| m.len())
    }
}

/// What a kill left, once checked consistent.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// The new slot is not pending (marked bad or never touched).
    NotPending,
    /// The new slot is fully written, pending and boots next.
    Pending,
}

fn check(dev: &Device, old: &[u8; 32], new: &[u8; 32], when: &str) -> Left {
    check_any(dev, old, &[("2.0", *new)], when)
}

/// As [`check`], where the new slot may be pending with any of `news`
/// (version, payload hash).
fn check_any(dev: &Device, old: &[u8; 32], news: &[(&str, [u8; 32])], when: &str) -> Left {
    let s = dev.status();
    assert_eq!(s["active"], "b", "{when}: {s}");
    assert_eq!(
        s["b"]["state"], "good",
        "{when}: the running slot stays good: {s}"
    );
    assert_eq!(s["b"]["version"], "1.0", "{when}: {s}");
    assert_eq!(
        dev.slot_sha("b").as_ref(),
        Some(old),
        "{when}: the running slot's image is unchanged"
    );
    match s["a"]["state"].as_str() {
        Some("pending") => {
            let Some((_, new)) = news.iter().find(|(v, _)| s["a"]["version"] == *v) else {
                panic!("{when}: slot a is pending with a version never installed: {s}");
            };
            assert_eq!(
                dev.slot_sha("a").as_ref(),
                Some(new),
                "{when}: a pending slot holds exactly the payload: {s}"
            );
            assert_eq!(s["next"], "a", "{when}: {s}");
            Left::Pending
        }
        Some("bad") | Some("empty") => {
            assert_eq!(s["next"], "b", "{when}: the good slot boots next: {s}");
            Left::NotPending
        }
        other => panic!("{when}: slot a is {other:?}: {s}"),
    }
}

/// A small deterministic generator: the kill points are the same on every run.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigkill_at_twenty_points_of_an_install_always_leaves_a_consistent_bootable_device() {
    let dev = Device(Scratch::new(&["slots"]), None);
    dev.ok(&["keygen", &dev.p("key")]);
    let old: Vec<u8> = (0..PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
    let new: Vec<u8> = (0..PAYLOAD_LEN).map(|i| (i % 241) as u8 ^ 0x5a).collect();
    dev.build("v1", "1.0", &old);
    dev.build("v2", "2.0", &new);
    let (old_sha, new_sha): ([u8; 32], [u8; 32]) =
        (Sha256::digest(&old).into(), Sha256::digest(&new).into());
    dev.install_good("v1");

    // The pending slot it leaves is overwritten below.
    let full = dev.timed_install("v2");
    assert_eq!(
        check(&dev, &old_sha, &new_sha, "uninterrupted"),
        Left::Pending
    );

    let mut rng = Lcg(17);
    let mut outcomes = Vec::new();
    let mut cut_mid_write = 0;
    for i in 0..KILLS {
        let child = dev.spawn_install("v2");
        let when = if i % 2 == 0 {
            let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 16 / 10));
            std::thread::sleep(delay);
            format!("kill {i} after {delay:?}")
        } else {
            // Once the slot holds N bytes of the new payload (the file is
            // truncated when the write starts).
            let n = rng.below(PAYLOAD_LEN as u64);
            let deadline = Instant::now() + full * 4;
            let mut shrunk = false;
            while Instant::now() < deadline {
                let len = dev.slot_len("a");
                shrunk |= len < PAYLOAD_LEN as u64;
                if shrunk && len >= n {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            format!("kill {i} at {n} bytes written")
        };
        kill(child);
        let len = dev.slot_len("a");
        let left = check(&dev, &old_sha, &new_sha, &when);
        if left == Left::NotPending && len > 0 && len < PAYLOAD_LEN as u64 {
            cut_mid_write += 1;
        }
        outcomes.push(left);
    }
    let pending = outcomes.iter().filter(|l| **l == Left::Pending).count();
    eprintln!(
        "{KILLS} kills: {} left the new slot not pending ({cut_mid_write} of them half written), \
         {pending} after it was fully written and pending",
        KILLS - pending
    );
    assert!(
        cut_mid_write >= 3,
        "at least a few kills must land while the slot is half written: {outcomes:?}"
    );

    dev.install("v2");
    assert_eq!(
        check(&dev, &old_sha, &new_sha, "final install"),
        Left::Pending
    );
    dev.ok(&["boot", "--slots", &dev.p("slots")]);
    dev.ok(&["mark-good", "--slots", &dev.p("slots")]);
    let s = dev.status();
    assert_eq!(
        (&s["active"], &s["a"]["state"]),
        (&"a".into(), &"good".into()),
        "{s}"
    );
}

#[test]
fn sigkill_during_installs_to_a_partition_always_leaves_a_consistent_bootable_device() {
    let dev = Device::with_slot_a_on_a_partition();
    dev.ok(&["keygen", &dev.p("key")]);
    let old: Vec<u8> = (0..PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
    // Two new payloads installed in turn, so that a partition cut off
    // mid-write holds the start of one and the rest of the other.
    let news: [Vec<u8>; 2] = [
        (0..PAYLOAD_LEN).map(|i| (i % 241) as u8 ^ 0x5a).collect(),
        (0..PAYLOAD_LEN).map(|i| (i % 233) as u8 ^ 0xc3).collect(),
    ];
    dev.build("v1", "1.0", &old);
    dev.build("v2", "2.0", &news[0]);
    dev.build("v3", "3.0", &news[1]);
    let old_sha: [u8; 32] = Sha256::digest(&old).into();
    let hashes = [
        ("2.0", Sha256::digest(&news[0]).into()),
        ("3.0", Sha256::digest(&news[1]).into()),
    ];
    dev.install_good("v1");

    let full = dev.timed_install("v2");
    assert_eq!(
        check_any(&dev, &old_sha, &hashes, "uninterrupted"),
        Left::Pending
    );

    let mut rng = Lcg(29);
    let mut cut_mid_write = 0;
    let part = dev.1.as_ref().unwrap();
    for i in 0..KILLS / 2 {
        let when = if i % 2 == 0 {
            let bundle = ["v3", "v2"][i % 4 / 2];
            let child = dev.spawn_install(bundle);
            let delay = Duration::from_micros(rng.below(full.as_micros() as u64 * 14 / 10));
            std::thread::sleep(delay);
            kill(child);
            format!("kill {i} of an install of {bundle} after {delay:?}")
        } else {
            // Once the write reaches offset n: the bundle installed is the
            // one whose bytes there the partition does not hold yet.
            let n = rng.below((PAYLOAD_LEN - 64) as u64);
            let window = n as usize..n as usize + 64;
            let now = part.read_at(n, 64);
            let k = usize::from(news[0][window.clone()] == now[..]);
            let bundle = ["v2", "v3"][k];
            let child = dev.spawn_install(bundle);
            let deadline = Instant::now() + full * 4;
            while Instant::now() < deadline && part.read_at(n, 64) != news[k][window.clone()] {
                std::thread::sleep(Duration::from_micros(200));
            }
            kill(child);
            format!("kill {i} of an install of {bundle} at {n} bytes written")
        };
        let left = check_any(&dev, &old_sha, &hashes, &when);
        let image = dev.slot_bytes("a").unwrap();
        if left == Left::NotPending && news.iter().all(|n| *n != image) {
            cut_mid_write += 1;
        }
    }
    eprintln!(
        "{} kills, {cut_mid_write} with the partition half written",
        KILLS / 2
    );
    assert!(
        cut_mid_write >= 3,
        "at least a few kills must land while the partition is half written"
    );

    dev.install("v3");
    assert_eq!(
        check_any(&dev, &old_sha, &hashes, "final install"),
        Left::Pending
    );
    dev.ok(&["boot", "--slots", &dev.p("slots")]);
    dev.ok(&["mark-good", "--slots", &dev.p("slots")]);
    let s = dev.status();
    assert_eq!(
        (&s["active"], &s["a"]["state"], &s["a"]["version"]),
        (&"a".into(), &"good".into(), &"3.0".into()),
        "{s}"
    );
}
