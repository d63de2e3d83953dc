//! Install to the inactive slot of the file backend, with a fault after
//! each write step.

use std::io;

use ecko_image::install::{self, Source, ALL_STEPS};
use ecko_image::keys::{self, KeyKind};
use ecko_image::manifest::{Manifest, PayloadKind};
use ecko_image::slots::{self, BootControl, FileBoot, Slot, SlotState};
use ecko_image::verify;

fn bundle(d: &std::path::Path, name: &str, version: &str, byte: u8) -> std::path::PathBuf {
    let payload = d.join(format!("{name}.payload"));
    std::fs::write(&payload, vec![byte; 600_000]).unwrap();
    let m = Manifest {
        hardware: "box-v2".into(),
        version: version.into(),
        security_version: 4,
        payload_kind: PayloadKind::Rootfs,
        payload_len: 0,
        payload_sha256: [0; 32],
        build_time: 0,
        next_key: None,
    };
    let key = keys::read_secret(&d.join("key")).unwrap();
    let out = d.join(name);
    verify::build(&payload, m, Some(&key), &out).unwrap();
    out
}

#[test]
fn a_fault_after_each_install_step_leaves_the_old_good_slot_bootable_and_a_rerun_succeeds() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys::keygen(&d.join("key"), KeyKind::Development).unwrap();
    let trust = keys::read_trust(&d.join("key.pub")).unwrap();
    let slots_dir = d.join("slots");
    std::fs::create_dir(&slots_dir).unwrap();
    std::fs::write(slots_dir.join("journal"), b"journal records").unwrap();
    let b = FileBoot::new(&slots_dir);
    let first = bundle(d, "first", "1.0", 1);
    let s1 = Source {
        bundle: &first,
        trust: &trust,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    assert_eq!(install::install(&b, &s1).unwrap().slot, Slot::B);
    assert_eq!(slots::boot(&b).unwrap(), Slot::B);
    assert_eq!(slots::mark_good(&b).unwrap(), Slot::B);
    assert_eq!(b.load().unwrap().b.state, SlotState::Good);

    let second = bundle(d, "second", "2.0", 2);
    let s2 = Source {
        bundle: &second,
        trust: &trust,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    for step in ALL_STEPS {
        let before = b.load().unwrap();
        let e = install::install_with_hook(&b, &s2, &mut |s| {
            if s == step {
                Err(io::Error::other("power loss"))
            } else {
                Ok(())
            }
        });
        assert!(e.is_err(), "{step:?}");
        let (_, booted) = slots::next_boot(&b.load().unwrap()).unwrap();
        let expect = if step == install::Step::Activated {
            Slot::A
        } else {
            Slot::B
        };
        assert_eq!(booted, expect, "{step:?}");
        assert_eq!(b.load().unwrap().b, before.b, "{step:?}");
        assert_eq!(install::install(&b, &s2).unwrap().slot, Slot::A, "{step:?}");
        // Back to the old slot running for the next step.
        let mut s = b.load().unwrap();
        s.next = Slot::B;
        b.store(&s).unwrap();
    }
    assert_eq!(
        std::fs::read(slots_dir.join("journal")).unwrap(),
        b"journal records"
    );
}

#[test]
fn a_tampered_payload_and_a_wrong_key_are_refused_with_slots_and_state_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys::keygen(&d.join("key"), KeyKind::Development).unwrap();
    keys::keygen(&d.join("other"), KeyKind::Development).unwrap();
    let trust = keys::read_trust(&d.join("key.pub")).unwrap();
    let wrong = keys::read_trust(&d.join("other.pub")).unwrap();
    let slots_dir = d.join("slots");
    std::fs::create_dir(&slots_dir).unwrap();
    let b = FileBoot::new(&slots_dir);
    let good = bundle(d, "good", "1.0", 1);
    let s = Source {
        bundle: &good,
        trust: &trust,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    install::install(&b, &s).unwrap();
    slots::boot(&b).unwrap();
    slots::mark_good(&b).unwrap();
    let snapshot = || {
        ["slot-a", "slot-b", "boot-state.json"]
            .map(|f| std::fs::read(slots_dir.join(f)).unwrap_or_default())
    };
    let before = snapshot();
    let tampered = d.join("tampered");
    let mut bytes = std::fs::read(&good).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let s = Source {
        bundle: &tampered,
        trust: &trust,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    assert_eq!(install::install(&b, &s).unwrap_err().exit_code(), 21);
    assert_eq!(snapshot(), before);
    let s = Source {
        bundle: &good,
        trust: &wrong,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    assert_eq!(install::install(&b, &s).unwrap_err().exit_code(), 15);
    assert_eq!(snapshot(), before);
}

#[derive(Default)]
struct Recorded {
    phases: Vec<(install::Phase, u64, u64)>,
    finished: usize,
}

impl install::Progress for Recorded {
    fn start(&mut self, phase: install::Phase, total: u64) {
        self.phases.push((phase, total, 0));
    }
    fn advance(&mut self, bytes: u64) {
        self.phases.last_mut().unwrap().2 += bytes;
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
}

#[test]
fn progress_is_told_each_pass_over_the_payload_in_order_and_every_byte_of_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keys::keygen(&d.join("key"), KeyKind::Development).unwrap();
    let trust = keys::read_trust(&d.join("key.pub")).unwrap();
    let b = FileBoot::new(d);
    let first = bundle(d, "first", "1.0", 1);
    let s = Source {
        bundle: &first,
        trust: &trust,
        allow_dev_keys: true,
        hardware: "box-v2",
        allow_same_security_downgrade: false,
        trust_dir: None,
    };
    let mut p = Recorded::default();
    install::install_with_progress(&b, &s, &mut p).unwrap();
    use install::Phase::*;
    assert_eq!(
        p.phases,
        [
            (Verify, 600_000, 600_000),
            (Write, 600_000, 600_000),
            (ReadBack, 600_000, 600_000)
        ]
    );
    assert_eq!(p.finished, 3);
}

#[test]
fn an_install_announcing_the_next_key_adds_it_to_the_trust_directory_and_reports_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let keys_dir = d.join("keys");
    let slots_dir = d.join("slots");
    std::fs::create_dir(&keys_dir).unwrap();
    std::fs::create_dir(&slots_dir).unwrap();
    keys::keygen(&keys_dir.join("key"), KeyKind::Development).unwrap();
    std::fs::rename(keys_dir.join("key"), d.join("key")).unwrap();
    let next = keys::keygen(&d.join("next"), KeyKind::Release).unwrap();
    let payload = d.join("payload");
    std::fs::write(&payload, b"rootfs").unwrap();
    let m = Manifest {
        hardware: "box-v2".into(),
        version: "1.0".into(),
        security_version: 1,
        payload_kind: PayloadKind::Rootfs,
        payload_len: 0,
        payload_sha256: [0; 32],
        build_time: 0,
        next_key: Some(next.as_next()),
    };
    let bundle = d.join("rotate");
    let signer = keys::read_secret(&d.join("key")).unwrap();
    verify::build(&payload, m, Some(&signer), &bundle).unwrap();
    let trust = keys::read_trust(&keys_dir).unwrap();
    assert_eq!(trust.len(), 1);
    let done = install::install(
        &FileBoot::new(&slots_dir),
        &Source {
            bundle: &bundle,
            trust: &trust,
            allow_dev_keys: true,
            hardware: "box-v2",
            allow_same_security_downgrade: false,
            trust_dir: Some(&keys_dir),
        },
    )
    .unwrap();
    let added = done.trusted_key.expect("the announced key is reported");
    assert_eq!(added.fingerprint, next.fingerprint());
    assert!(!added.development);
    let trust = keys::read_trust(&keys_dir).unwrap();
    assert_eq!(trust.len(), 2);
    assert!(trust
        .iter()
        .any(|k| k.key == next.key && k.kind == KeyKind::Release));
}
