//! The command line's install, status, mark-good and rollback over the file
//! backend, with the exit codes of what they refuse; `boot` plays the
//! bootloader between them.

use std::path::PathBuf;
use std::process::{Command, Output};

use ecko_image::slots::Slot;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ecko-image"))
}

struct Device {
    _dir: tempfile::TempDir,
    d: PathBuf,
}

impl Device {
    /// A key, and bundles v1 (security version 4), v2 (4) and old (3).
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::create_dir(d.join("slots")).unwrap();
        let dev = Device { _dir: dir, d };
        assert!(dev.run(&["keygen", &dev.p("key")]).status.success());
        for (name, version, sv, byte) in [
            ("v1", "1.0", "4", 1u8),
            ("v2", "2.0", "4", 2),
            ("old", "0.9", "3", 3),
        ] {
            std::fs::write(dev.d.join(format!("{name}.payload")), vec![byte; 400_000]).unwrap();
            let out = dev.run(&[
                "build",
                "--payload",
                &dev.p(&format!("{name}.payload")),
                "--hardware",
                "box-v2",
                "--version",
                version,
                "--security-version",
                sv,
                "--key",
                &dev.p("key"),
                "-o",
                &dev.p(name),
            ]);
            assert!(out.status.success(), "{out:?}");
        }
        dev
    }
    fn p(&self, name: &str) -> String {
        self.d.join(name).to_str().unwrap().to_owned()
    }
    fn run(&self, args: &[&str]) -> Output {
        bin().args(args).output().unwrap()
    }
    fn code(&self, args: &[&str]) -> i32 {
        self.run(args).status.code().unwrap()
    }
    fn install(&self, bundle: &str, hardware: &str) -> i32 {
        self.install_with(bundle, hardware, &[])
            .status
            .code()
            .unwrap()
    }
    fn install_with(&self, bundle: &str, hardware: &str, extra: &[&str]) -> Output {
        let (b, t, s) = (self.p(bundle), self.p("key.pub"), self.p("slots"));
        let mut a = vec![
            "install",
            &b,
            "--trust",
            &t,
            "--hardware",
            hardware,
            "--slots",
            &s,
        ];
        a.extend(extra);
        self.run(&a)
    }
    fn slot_cmd(&self, cmd: &str) -> i32 {
        self.code(&[cmd, "--slots", &self.p("slots")])
    }
    fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--slots", &self.p("slots"), "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
    /// What the bootloader does at power-on: `ecko-image boot --json`.
    fn power_on(&self) -> Slot {
        let v = self.boot();
        match v["slot"].as_str() {
            Some("a") => Slot::A,
            Some("b") => Slot::B,
            other => panic!("boot printed slot {other:?}"),
        }
    }
    fn boot(&self) -> serde_json::Value {
        let out = self.run(&["boot", "--slots", &self.p("slots"), "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
    /// Slot images and the state file, byte for byte.
    fn snapshot(&self) -> [Vec<u8>; 3] {
        ["slot-a", "slot-b", "boot-state.json"]
            .map(|f| std::fs::read(self.d.join("slots").join(f)).unwrap_or_default())
    }
}

#[test]
fn install_writes_the_inactive_slot_and_status_json_shows_it_pending_with_three_tries() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    let s = dev.status();
    assert_eq!(s["active"], "a");
    assert_eq!(s["next"], "b");
    assert_eq!(s["b"]["state"], "pending");
    assert_eq!(s["b"]["version"], "1.0");
    assert_eq!(s["b"]["security_version"], 4);
    assert_eq!(s["b"]["tries_left"], 3);
    assert_eq!(s["a"]["state"], "empty");
    assert_eq!(s["last_result"], "installed 1.0 in slot b, pending");
    assert_eq!(
        std::fs::read(dev.d.join("slots/slot-b")).unwrap(),
        std::fs::read(dev.d.join("v1.payload")).unwrap()
    );
}

#[test]
fn status_without_json_names_both_slots_and_the_last_result() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    let out = dev.run(&["status", "--slots", &dev.p("slots")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("slot a: Empty"), "{text}");
    assert!(
        text.contains("slot b: Pending version 1.0 security version 4 tries left 3, boots next"),
        "{text}"
    );
    assert!(
        text.contains("last result: installed 1.0 in slot b, pending"),
        "{text}"
    );
}

#[test]
fn mark_good_keeps_the_booted_slot_and_is_refused_with_24_before_it_has_booted() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    let before = dev.snapshot();
    // Slot a (empty) is still the one running.
    assert_eq!(dev.slot_cmd("mark-good"), 24);
    assert_eq!(dev.snapshot(), before);

    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.status()["b"]["tries_left"], 2);
    assert_eq!(dev.slot_cmd("mark-good"), 0);
    let s = dev.status();
    assert_eq!(s["b"]["state"], "good");
    assert_eq!(s["b"]["tries_left"], 0);
    assert_eq!(s["next"], "b");
    assert_eq!(s["last_result"], "updated to 1.0 in slot b");
    // A good slot marked good again is not an error.
    assert_eq!(dev.slot_cmd("mark-good"), 0);
}

#[test]
fn install_while_the_running_slot_is_still_pending_is_refused_with_24_and_nothing_written() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    let before = dev.snapshot();
    assert_eq!(dev.install("v2", "box-v2"), 24);
    assert_eq!(dev.snapshot(), before);
}

#[test]
fn rollback_gives_up_on_the_new_slot_and_is_refused_with_24_when_nothing_good_is_left() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    // Slot a was never good: nothing to go back to.
    let before = dev.snapshot();
    assert_eq!(dev.slot_cmd("rollback"), 24);
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.slot_cmd("mark-good"), 0);

    assert_eq!(dev.install("v2", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::A);
    assert_eq!(dev.slot_cmd("rollback"), 0);
    let s = dev.status();
    assert_eq!(s["a"]["state"], "bad");
    assert_eq!(s["next"], "b");
    assert_eq!(s["last_result"], "rolled back from slot a to slot b");
    assert_eq!(dev.power_on(), Slot::B);
    // Slot a is bad now: from b there is nothing good to go back to.
    assert_eq!(dev.slot_cmd("rollback"), 24);
}

#[test]
fn install_refuses_a_downgrade_with_20_and_wrong_hardware_with_19_before_any_slot_is_written() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.slot_cmd("mark-good"), 0);
    let before = dev.snapshot();
    assert_eq!(
        dev.install("old", "box-v2"),
        20,
        "security version 3 below 4"
    );
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.install("v2", "box-v3"), 19);
    assert_eq!(dev.snapshot(), before);
    let out = dev.run(&[
        "install",
        &dev.p("old"),
        "--trust",
        &dev.p("key.pub"),
        "--hardware",
        "box-v2",
        "--slots",
        &dev.p("slots"),
    ]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("security version 3 is below the installed 4"),
        "{err}"
    );
}

#[test]
fn a_boot_state_that_does_not_parse_or_is_newer_is_23_for_every_slot_command() {
    let dev = Device::new();
    let state = dev.d.join("slots/boot-state.json");
    for bad in [&b"{ not json"[..], br#"{"format": 2}"#] {
        std::fs::write(&state, bad).unwrap();
        assert_eq!(
            dev.code(&["status", "--slots", &dev.p("slots"), "--json"]),
            23
        );
        assert_eq!(dev.slot_cmd("mark-good"), 23);
        assert_eq!(dev.slot_cmd("rollback"), 23);
        assert_eq!(dev.install("v1", "box-v2"), 23);
        assert_eq!(std::fs::read(&state).unwrap(), bad);
        assert!(!dev.d.join("slots/slot-b").exists());
    }
}

#[test]
fn install_with_a_trust_file_that_is_missing_is_1_and_a_missing_argument_is_2() {
    let dev = Device::new();
    let (b, s) = (dev.p("v1"), dev.p("slots"));
    let missing = dev.p("nope.pub");
    assert_eq!(
        dev.code(&[
            "install",
            &b,
            "--trust",
            &missing,
            "--hardware",
            "box-v2",
            "--slots",
            &s
        ]),
        1
    );
    assert_eq!(dev.code(&["install", &b, "--hardware", "box-v2"]), 2);
    assert!(!dev.d.join("slots/boot-state.json").exists());
}

#[test]
fn a_new_slot_that_never_passes_readiness_boots_three_times_then_the_old_slot_boots_with_the_journal_intact(
) {
    let dev = Device::new();
    // The data partition beside the slots: never written by an update.
    let data = dev.d.join("data");
    std::fs::create_dir(&data).unwrap();
    let journal: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(data.join("journal.sqlite"), &journal).unwrap();

    assert_eq!(dev.install("v1", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.slot_cmd("mark-good"), 0);
    assert_eq!(dev.power_on(), Slot::B, "a good slot keeps booting");

    assert_eq!(dev.install("v2", "box-v2"), 0);
    for left in [2, 1, 0] {
        let b = dev.boot();
        assert_eq!(b["slot"], "a");
        assert_eq!(b["state"], "pending");
        assert_eq!(b["version"], "2.0");
        assert_eq!(b["tries_left"], left);
        assert_eq!(b["fell_back"], false);
        // The readiness check fails: no mark-good.
    }
    let b = dev.boot();
    assert_eq!(b["slot"], "b", "the fourth boot is the old slot");
    assert_eq!(b["version"], "1.0");
    assert_eq!(b["fell_back"], true);

    let failed = "update to 2.0 in slot a failed: not marked good after 3 boots";
    let s = dev.status();
    assert_eq!(s["last_result"], failed);
    assert_eq!(s["active"], "b");
    assert_eq!(s["next"], "b");
    assert_eq!(s["a"]["state"], "bad");
    assert_eq!(s["b"]["state"], "good");
    assert_eq!(s["b"]["version"], "1.0");
    let out = dev.run(&["status", "--slots", &dev.p("slots")]);
    assert!(String::from_utf8(out.stdout).unwrap().contains(failed));
    assert_eq!(std::fs::read(data.join("journal.sqlite")).unwrap(), journal);
    assert_eq!(
        std::fs::read(dev.d.join("slots/slot-b")).unwrap(),
        std::fs::read(dev.d.join("v1.payload")).unwrap(),
        "the old slot's image is untouched"
    );

    // The old slot carries on: it boots again and can take the next update.
    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.install("v2", "box-v2"), 0);
    assert_eq!(dev.status()["a"]["state"], "pending");
}

#[test]
fn boot_with_no_good_or_pending_slot_is_24_and_says_so() {
    let dev = Device::new();
    let out = dev.run(&["boot", "--slots", &dev.p("slots")]);
    assert_eq!(out.status.code(), Some(24));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no slot can boot"));
    assert!(!dev.d.join("slots/boot-state.json").exists());
}

#[test]
fn boot_without_json_prints_the_slot_that_boots_and_its_tries() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    let out = dev.run(&["boot", "--slots", &dev.p("slots")]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "slot b boots: Pending version 1.0, tries left 2\n"
    );
}

#[test]
fn an_older_version_of_the_same_security_version_is_refused_with_26_unless_forced() {
    let dev = Device::new();
    assert_eq!(dev.install("v2", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.slot_cmd("mark-good"), 0);
    let before = dev.snapshot();
    // 1.0 after 2.0, both security version 4.
    let out = dev.install_with("v1", "box-v2", &[]);
    assert_eq!(out.status.code(), Some(26));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("version 1.0 is older than the installed 2.0"),
        "{err}"
    );
    assert_eq!(dev.snapshot(), before, "refused before any slot is written");

    let out = dev.install_with("v1", "box-v2", &["--allow-same-security-downgrade"]);
    assert!(out.status.success(), "{out:?}");
    let s = dev.status();
    assert_eq!(s["a"]["version"], "1.0");
    assert_eq!(s["a"]["state"], "pending");
    assert_eq!(
        s["last_result"],
        "installed 1.0 in slot a, pending (forced downgrade from 2.0)"
    );
    // The same version again, or a newer one, needs nothing forced.
    assert_eq!(dev.install("v2", "box-v2"), 0);
}

#[test]
fn a_lower_security_version_is_refused_with_20_even_when_a_downgrade_is_forced() {
    let dev = Device::new();
    assert_eq!(dev.install("v1", "box-v2"), 0);
    assert_eq!(dev.power_on(), Slot::B);
    assert_eq!(dev.slot_cmd("mark-good"), 0);
    let before = dev.snapshot();
    let out = dev.install_with("old", "box-v2", &["--allow-same-security-downgrade"]);
    assert_eq!(out.status.code(), Some(20), "{out:?}");
    assert_eq!(dev.snapshot(), before);
}

#[test]
fn install_json_prints_the_result_and_no_progress_bar_reaches_a_pipe() {
    let dev = Device::new();
    let out = dev.install_with("v1", "box-v2", &["--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["slot"], "b");
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["security_version"], 4);
    assert_eq!(v["payload_len"], 400_000);
    assert_eq!(v["tries_left"], 3);
    assert_eq!(out.stderr, b"", "stderr is a pipe: no bar");
    let out = dev.install_with("v2", "box-v2", &[]);
    assert!(out.status.success());
    assert_eq!(out.stderr, b"", "not a terminal: no bar");
}

/// `script` gives the command a terminal and copies what it shows.
fn on_a_terminal(dev: &Device, extra: &str) -> String {
    let line = format!(
        "{} install {} --trust {} --hardware box-v2 --slots {} {extra}",
        env!("CARGO_BIN_EXE_ecko-image"),
        dev.p("v1"),
        dev.p("key.pub"),
        dev.p("slots"),
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("script (util-linux) runs a command on a terminal");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_on_a_terminal_shows_a_bar_for_verifying_writing_and_reading_back_but_not_with_json() {
    let dev = Device::new();
    let shown = on_a_terminal(&dev, "");
    for phase in [
        "verifying",
        "writing",
        "reading back",
        "390.62 KiB/390.62 KiB",
    ] {
        assert!(shown.contains(phase), "{phase}: {shown}");
    }
    assert!(shown.contains("installed 1.0 to slot b"), "{shown}");
    for line in shown.lines() {
        let bars = ["verifying", "writing", "reading back", "installed"]
            .iter()
            .filter(|p| line.contains(*p))
            .count();
        assert!(bars <= 1, "each bar on a line of its own: {line:?}");
    }
    let shown = on_a_terminal(&dev, "--json");
    assert!(!shown.contains("verifying"), "{shown}");
    assert!(shown.contains("\"slot\": \"b\""), "{shown}");
}
