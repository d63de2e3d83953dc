//! `--boot uboot` and `--boot rauc` against fakes of `fw_printenv`,
//! `fw_setenv` and `rauc`: shell scripts in a temp dir that keep their
//! state in a file there and log each call. The test plays the bootloader
//! by editing that state as U-Boot's boot script (or RAUC's bootloader)
//! would.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Device {
    _dir: tempfile::TempDir,
    d: PathBuf,
    boot: &'static str,
}

fn script(path: &Path, body: &str) {
    std::fs::write(
        path,
        format!(
            "#!/bin/sh\nD='{}'\n{body}",
            path.parent().unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const FW_PRINTENV: &str = r#"echo "fw_printenv $*" >> "$D/calls"
[ -e "$D/fail" ] && { echo "Cannot read environment, using default" >&2; exit 1; }
cat "$D/env"
"#;

const FW_SETENV: &str = r#"echo "fw_setenv $*" >> "$D/calls"
[ -e "$D/fail" ] && { echo "Error: can't write fw_env to flash" >&2; exit 1; }
name=$1; shift
grep -v "^$name=" "$D/env" > "$D/env.tmp"
echo "$name=$*" >> "$D/env.tmp"
mv "$D/env.tmp" "$D/env"
"#;

const RAUC: &str = r#"echo "rauc $*" >> "$D/calls"
[ -e "$D/fail" ] && { echo "rauc: error: The name de.pengutronix.rauc was not provided by any .service files" >&2; exit 1; }
. "$D/rauc-state"
pick() { if [ "$1" = other ]; then if [ "$booted" = A ]; then echo B; else echo A; fi; else echo "$booted"; fi; }
name() { if [ "$1" = A ]; then echo rootfs.0; else echo rootfs.1; fi; }
save() { printf 'booted=%s\nprimary=%s\nA=%s\nB=%s\n' "$booted" "$primary" "$A" "$B" > "$D/rauc-state"; }
case "$1 $2" in
"status --output-format=json")
  printf '{"compatible":"box-v2","variant":"","booted":"%s","boot_primary":"%s","slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/mmcblk0p2","bootname":"A","state":"x","boot_status":"%s"}},{"rootfs.1":{"class":"rootfs","device":"/dev/mmcblk0p3","bootname":"B","state":"x","boot_status":"%s"}}]}\n' "$booted" "$(name "$primary")" "$A" "$B" ;;
"status mark-good") s=$(pick "${3:-booted}"); eval "$s=good"; save ;;
"status mark-bad") s=$(pick "${3:-booted}"); eval "$s=bad"; save ;;
"status mark-active") s=$(pick "${3:-booted}"); eval "$s=good"; primary=$s; save ;;
*) echo "rauc: unknown command $*" >&2; exit 1 ;;
esac
"#;

impl Device {
    fn new(boot: &'static str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::create_dir(d.join("slots")).unwrap();
        script(&d.join("fw_printenv"), FW_PRINTENV);
        script(&d.join("fw_setenv"), FW_SETENV);
        script(&d.join("rauc"), RAUC);
        // As the factory leaves a board: slot A runs, both slots may boot.
        std::fs::write(
            d.join("env"),
            "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n",
        )
        .unwrap();
        std::fs::write(d.join("cmdline"), "console=ttyS0 rauc.slot=A rootwait\n").unwrap();
        std::fs::write(
            d.join("rauc-state"),
            "booted=A\nprimary=A\nA=good\nB=good\n",
        )
        .unwrap();
        let dev = Device { _dir: dir, d, boot };
        assert!(dev.run(&["keygen", &dev.p("key")]).status.success());
        for (name, version, byte) in [("v1", "1.0", 1u8), ("v2", "2.0", 2)] {
            std::fs::write(dev.d.join("payload"), vec![byte; 200_000]).unwrap();
            let out = dev.run(&[
                "build",
                "--payload",
                &dev.p("payload"),
                "--hardware",
                "box-v2",
                "--version",
                version,
                "--security-version",
                "1",
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
        Command::new(env!("CARGO_BIN_EXE_ecko-image"))
            .args(args)
            .output()
            .unwrap()
    }
    /// `cmd` with the backend and the fakes' paths.
    fn slot_cmd(&self, cmd: &[&str]) -> Output {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        for (k, v) in [
            ("--slots", self.p("slots")),
            ("--boot", self.boot.into()),
            ("--fw-printenv", self.p("fw_printenv")),
            ("--fw-setenv", self.p("fw_setenv")),
            ("--cmdline", self.p("cmdline")),
            ("--rauc", self.p("rauc")),
        ] {
            a.push(k.into());
            a.push(v);
        }
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.run(&a)
    }
    fn code(&self, cmd: &[&str]) -> i32 {
        self.slot_cmd(cmd).status.code().unwrap()
    }
    fn install(&self, bundle: &str) -> Output {
        let (b, t) = (self.p(bundle), self.p("key.pub"));
        self.slot_cmd(&["install", &b, "--trust", &t, "--hardware", "box-v2"])
    }
    fn status(&self) -> serde_json::Value {
        let out = self.slot_cmd(&["status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
    fn env(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.d.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }
    /// Calls logged since the last look, then forgotten.
    fn calls(&self) -> Vec<String> {
        let p = self.d.join("calls");
        let c = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        c.lines().map(str::to_owned).collect()
    }
    /// U-Boot's boot script: the first slot of BOOT_ORDER with tries left
    /// uses one up and boots (named on the kernel command line).
    fn uboot_power_on(&self) -> &'static str {
        let mut env = self.env();
        let order = env["BOOT_ORDER"].clone();
        for slot in order.split_whitespace() {
            let key = format!("BOOT_{slot}_LEFT");
            let left: u8 = env[&key].parse().unwrap();
            if left > 0 {
                env.insert(key, (left - 1).to_string());
                let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                std::fs::write(self.d.join("env"), text).unwrap();
                std::fs::write(self.d.join("cmdline"), format!("rauc.slot={slot}\n")).unwrap();
                return if slot == "A" { "a" } else { "b" };
            }
        }
        panic!("nothing to boot in {env:?}")
    }
    /// RAUC's bootloader: `booted` becomes `primary`, or the other slot
    /// when the primary is `give_up` (out of tries: marked bad).
    fn rauc_power_on(&self, give_up: bool) {
        let text = std::fs::read_to_string(self.d.join("rauc-state")).unwrap();
        let mut v: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let primary = v["primary"].clone();
        if give_up {
            let other = if primary == "A" { "B" } else { "A" };
            v.insert(primary, "bad".into());
            v.insert("primary".into(), other.into());
            v.insert("booted".into(), other.into());
        } else {
            v.insert("booted".into(), primary);
        }
        let text = format!(
            "booted={}\nprimary={}\nA={}\nB={}\n",
            v["booted"], v["primary"], v["A"], v["B"]
        );
        std::fs::write(self.d.join("rauc-state"), text).unwrap();
    }
}

#[test]
fn uboot_install_makes_the_other_slot_first_in_boot_order_with_three_tries() {
    let dev = Device::new("uboot");
    let out = dev.install("v1");
    assert!(out.status.success(), "{out:?}");
    let env = dev.env();
    assert_eq!(env["BOOT_ORDER"], "B A");
    assert_eq!(env["BOOT_B_LEFT"], "3");
    assert_eq!(
        env["BOOT_A_LEFT"], "3",
        "the running slot stays the fallback"
    );
    // Slot b was taken out of the boot order before it was written.
    let calls = dev.calls();
    let bad = calls.iter().position(|c| c == "fw_setenv BOOT_B_LEFT 0");
    let tries = calls.iter().position(|c| c == "fw_setenv BOOT_B_LEFT 3");
    assert!(bad.is_some() && bad < tries, "{calls:?}");
    assert_eq!(calls.last().unwrap(), "fw_setenv BOOT_ORDER B A");
    let s = dev.status();
    assert_eq!(s["next"], "b");
    assert_eq!(s["b"]["state"], "pending");
    assert_eq!(s["b"]["tries_left"], 3);
    assert_eq!(
        std::fs::read(dev.d.join("slots/slot-b")).unwrap(),
        vec![1u8; 200_000]
    );
}

#[test]
fn uboot_counts_tries_down_mark_good_refills_them_and_rollback_puts_the_good_slot_first() {
    let dev = Device::new("uboot");
    assert!(dev.install("v1").status.success());
    assert_eq!(dev.uboot_power_on(), "b");
    let s = dev.status();
    assert_eq!(s["active"], "b");
    assert_eq!(s["b"]["tries_left"], 2);
    assert_eq!(dev.code(&["mark-good"]), 0);
    assert_eq!(dev.env()["BOOT_B_LEFT"], "3");
    assert_eq!(dev.status()["b"]["state"], "good");

    assert!(dev.install("v2").status.success());
    assert_eq!(dev.env()["BOOT_ORDER"], "A B");
    assert_eq!(dev.uboot_power_on(), "a");
    assert_eq!(dev.code(&["rollback"]), 0);
    let env = dev.env();
    assert_eq!(env["BOOT_ORDER"], "B A");
    assert_eq!(env["BOOT_A_LEFT"], "0", "the given-up slot never boots");
    assert_eq!(env["BOOT_B_LEFT"], "3");
    assert_eq!(dev.status()["a"]["state"], "bad");
    assert_eq!(dev.uboot_power_on(), "b");
}

#[test]
fn uboot_falling_back_after_three_failed_boots_shows_as_the_failed_update() {
    let dev = Device::new("uboot");
    assert!(dev.install("v1").status.success());
    assert_eq!(dev.uboot_power_on(), "b");
    assert_eq!(dev.code(&["mark-good"]), 0);
    assert!(dev.install("v2").status.success());
    for _ in 0..3 {
        assert_eq!(dev.uboot_power_on(), "a");
    }
    assert_eq!(dev.uboot_power_on(), "b");
    let s = dev.status();
    assert_eq!(s["active"], "b");
    assert_eq!(s["next"], "b");
    assert_eq!(s["a"]["state"], "bad");
    assert_eq!(
        s["last_result"],
        "update to 2.0 in slot a failed: not marked good after 3 boots"
    );
    // The old slot marks itself good again, as every boot.
    assert_eq!(dev.code(&["mark-good"]), 0);
}

#[test]
fn rauc_install_marks_the_other_slot_bad_while_writing_then_active_and_it_boots_pending() {
    let dev = Device::new("rauc");
    let out = dev.install("v1");
    assert!(out.status.success(), "{out:?}");
    let calls = dev.calls();
    let told: Vec<&String> = calls.iter().filter(|c| !c.contains("json")).collect();
    assert_eq!(
        told,
        [
            "rauc status mark-bad other",
            "rauc status mark-active other"
        ],
        "{calls:?}"
    );
    let s = dev.status();
    assert_eq!(s["next"], "b");
    assert_eq!(s["b"]["state"], "pending");
    assert_eq!(s["b"]["tries_left"], 3);

    dev.rauc_power_on(false);
    assert_eq!(dev.status()["active"], "b");
    dev.calls();
    assert_eq!(dev.code(&["mark-good"]), 0);
    assert!(dev
        .calls()
        .contains(&"rauc status mark-good booted".to_owned()));
    assert_eq!(dev.status()["b"]["state"], "good");
}

#[test]
fn rauc_rollback_gives_up_on_the_booted_slot_and_makes_the_other_active() {
    let dev = Device::new("rauc");
    assert!(dev.install("v1").status.success());
    dev.rauc_power_on(false);
    assert_eq!(dev.code(&["mark-good"]), 0);
    assert!(dev.install("v2").status.success());
    dev.rauc_power_on(false);
    assert_eq!(dev.status()["active"], "a");
    dev.calls();
    assert_eq!(dev.code(&["rollback"]), 0);
    let told: Vec<String> = dev
        .calls()
        .into_iter()
        .filter(|c| !c.contains("json"))
        .collect();
    assert_eq!(
        told,
        [
            "rauc status mark-bad booted",
            "rauc status mark-active other"
        ]
    );
    let s = dev.status();
    assert_eq!(s["next"], "b");
    assert_eq!(s["a"]["state"], "bad");
}

#[test]
fn rauc_reporting_the_new_slot_bad_after_a_fallback_shows_as_the_failed_update() {
    let dev = Device::new("rauc");
    assert!(dev.install("v1").status.success());
    dev.rauc_power_on(false);
    assert_eq!(dev.code(&["mark-good"]), 0);
    assert!(dev.install("v2").status.success());
    dev.rauc_power_on(true);
    let s = dev.status();
    assert_eq!(s["active"], "b");
    assert_eq!(s["a"]["state"], "bad");
    assert_eq!(
        s["last_result"],
        "update to 2.0 in slot a failed: RAUC reports it bad"
    );
}

#[test]
fn a_failing_or_missing_boot_control_command_is_exit_25_with_its_message_never_a_panic() {
    for (boot, message) in [
        ("uboot", "Cannot read environment"),
        ("rauc", "de.pengutronix.rauc was not provided"),
    ] {
        let dev = Device::new(boot);
        std::fs::write(dev.d.join("fail"), "").unwrap();
        for cmd in [&["status", "--json"][..], &["mark-good"], &["rollback"]] {
            let out = dev.slot_cmd(cmd);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(25), "{boot} {cmd:?}: {err}");
            assert!(err.contains(message), "{boot} {cmd:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        let out = dev.install("v1");
        assert_eq!(out.status.code(), Some(25), "{boot} install");
        assert!(
            !dev.d.join("slots/slot-b").exists(),
            "{boot}: nothing written"
        );
    }
    let dev = Device::new("uboot");
    let out = dev.run(&[
        "status",
        "--slots",
        &dev.p("slots"),
        "--boot",
        "uboot",
        "--fw-printenv",
        &dev.p("no-such-fw_printenv"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(25), "{err}");
    assert!(err.contains("could not run"), "{err}");
}

#[test]
fn a_fw_setenv_that_fails_during_install_is_25_and_the_old_slot_still_boots_first() {
    let dev = Device::new("uboot");
    std::fs::write(
        dev.d.join("fw_setenv"),
        "#!/bin/sh\necho 'Error: flash is read-only' >&2\nexit 1\n",
    )
    .unwrap();
    let out = dev.install("v1");
    assert_eq!(out.status.code(), Some(25));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flash is read-only"));
    assert_eq!(dev.env()["BOOT_ORDER"], "A B");
    assert_eq!(dev.status()["next"], "a");
}
