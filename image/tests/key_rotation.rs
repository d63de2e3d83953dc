//! Key rotation through the command line: a bundle announcing the next key
//! (`build --next-key`), installed against a trusted keys directory, makes
//! that key trusted; a key neither trusted nor announced stays refused.

mod common;

use common::Scratch;
use std::process::Output;

struct Device(Scratch);

impl std::ops::Deref for Device {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl Device {
    /// Keys `old`, `new` and `third`; only `old` in the trusted keys directory.
    fn new() -> Device {
        let dev = Device(Scratch::new(&["slots", "keys"]));
        for k in ["old", "new", "third"] {
            dev.ok(&["keygen", &dev.p(k)]);
        }
        std::fs::copy(dev.d.join("old.pub"), dev.d.join("keys/old.pub")).unwrap();
        dev
    }
    /// A bundle `name` of version `version` signed by `key`, announcing
    /// `next` when given.
    fn build(&self, name: &str, version: &str, key: &str, next: Option<&str>) {
        let payload = self.d.join(format!("{name}.payload"));
        std::fs::write(&payload, version.repeat(50_000)).unwrap();
        let (payload, key, out) = (payload.to_str().unwrap(), self.p(key), self.p(name));
        let mut a = vec![
            "build",
            "--payload",
            payload,
            "--hardware",
            "box-v2",
            "--version",
            version,
            "--security-version",
            "1",
            "--key",
            &key,
            "-o",
            &out,
        ];
        let next = next.map(|n| self.p(&format!("{n}.pub")));
        if let Some(n) = &next {
            a.extend(["--next-key", n]);
        }
        let o = self.run(&a);
        assert!(o.status.success(), "{o:?}");
    }
    fn install(&self, bundle: &str, trust: &str) -> Output {
        let (b, t, s) = (self.p(bundle), self.p(trust), self.p("slots"));
        self.run(&[
            "install",
            &b,
            "--trust",
            &t,
            "--hardware",
            "box-v2",
            "--slots",
            &s,
            "--json",
        ])
    }
    /// Power on the new slot and keep it, as the gateway does once ready.
    fn boot_and_keep(&self) {
        let s = self.p("slots");
        assert!(self.run(&["boot", "--slots", &s]).status.success());
        let o = self.run(&["mark-good", "--slots", &s]);
        assert!(o.status.success(), "{o:?}");
    }
    fn fingerprint(&self, key: &str) -> String {
        let text = std::fs::read_to_string(self.d.join(format!("{key}.pub"))).unwrap();
        text.split_whitespace().last().unwrap()[..16].to_owned()
    }
}

#[test]
fn a_bundle_announcing_the_next_key_makes_it_trusted_and_a_third_key_stays_refused() {
    let dev = Device::new();
    dev.build("by-new-early", "0.5", "new", None);
    assert_eq!(
        dev.install("by-new-early", "keys").status.code(),
        Some(15),
        "the new key is not trusted before a bundle announces it"
    );

    dev.build("rotate", "1.0", "old", Some("new"));
    let o = dev.install("rotate", "keys");
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fingerprint = dev.fingerprint("new");
    assert_eq!(v["trusted_key"]["fingerprint"], fingerprint.as_str());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("key rotation") && stderr.contains(&fingerprint),
        "{stderr}"
    );
    let added = dev.d.join(format!("keys/next-{fingerprint}.pub"));
    assert_eq!(
        std::fs::read(&added).unwrap(),
        std::fs::read(dev.d.join("new.pub")).unwrap()
    );
    let status = dev.run(&["status", "--slots", &dev.p("slots"), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["last_result"]
            .as_str()
            .unwrap()
            .contains(&format!("key {fingerprint} trusted from now on")),
        "{status}"
    );
    dev.boot_and_keep();

    dev.build("by-new", "2.0", "new", None);
    let o = dev.install("by-new", "keys");
    assert!(o.status.success(), "{o:?}");
    dev.boot_and_keep();

    dev.build("by-third", "3.0", "third", None);
    let before = dev.slots_snapshot();
    let o = dev.install("by-third", "keys");
    assert_eq!(o.status.code(), Some(15), "{o:?}");
    assert_eq!(
        dev.slots_snapshot(),
        before,
        "a refused bundle touches no slot"
    );
}

#[test]
fn a_bundle_announcing_a_key_against_a_single_trusted_key_file_is_27_and_touches_no_slot() {
    let dev = Device::new();
    dev.build("rotate", "1.0", "old", Some("new"));
    let before = dev.slots_snapshot();
    let o = dev.install("rotate", "keys/old.pub");
    assert_eq!(o.status.code(), Some(27), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("trusted keys directory"));
    assert_eq!(dev.slots_snapshot(), before);
}

#[test]
fn info_shows_the_announced_key() {
    let dev = Device::new();
    dev.build("rotate", "1.0", "old", Some("new"));
    let o = dev.run(&["info", &dev.p("rotate"), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["next_key"]["public"]
        .as_str()
        .unwrap()
        .starts_with(&dev.fingerprint("new")));
    assert_eq!(v["next_key"]["development"], true);
}
