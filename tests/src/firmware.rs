//! Firmware bundles and A/B slots for the gateway's update tests, through
//! the real `ecko-image` binary and its file backend (`DIR/slot-a`,
//! `DIR/slot-b`, `DIR/boot-state.json`); `ecko-image boot` plays the
//! bootloader.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The hardware string the test bundles are built for.
pub const HARDWARE: &str = "ecko-test-board";

/// `ecko-image`, built beside the gateway (`cargo build --workspace --bins`).
pub fn image_binary() -> PathBuf {
    let bin = crate::gateway_binary().with_file_name("ecko-image");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p ecko-image --bins`",
        bin.display()
    );
    bin
}

/// Runs `ecko-image` with `args`; its output, whatever the exit code.
pub fn image(args: &[&str]) -> Output {
    Command::new(image_binary())
        .args(args)
        .output()
        .expect("run ecko-image")
}

/// Runs `ecko-image` with `args` and fails the test unless it succeeds;
/// its stdout.
pub fn image_ok(args: &[&str]) -> String {
    let out = image(args);
    assert!(
        out.status.success(),
        "ecko-image {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A development key pair in `dir` (`dir/key`, `dir/key.pub`) and a slots
/// directory `dir/slots`.
pub struct Firmware {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub trust: PathBuf,
    pub slots: PathBuf,
}

impl Firmware {
    pub fn new(dir: &Path) -> Firmware {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("key");
        image_ok(&["keygen", &s(&key)]);
        let slots = dir.join("slots");
        std::fs::create_dir_all(&slots).unwrap();
        Firmware {
            dir: dir.to_path_buf(),
            trust: dir.join("key.pub"),
            key,
            slots,
        }
    }

    /// A signed bundle of `version` (security version `sv`) for `hardware`.
    pub fn bundle_for(&self, version: &str, sv: u64, hardware: &str) -> PathBuf {
        let payload = self.dir.join(format!("rootfs-{version}.img"));
        std::fs::write(
            &payload,
            format!("root filesystem {version}\n").repeat(4096),
        )
        .unwrap();
        let out = self.dir.join(format!("ecko-{version}-{hardware}.bundle"));
        image_ok(&[
            "build",
            "--payload",
            &s(&payload),
            "--hardware",
            hardware,
            "--version",
            version,
            "--security-version",
            &sv.to_string(),
            "--key",
            &s(&self.key),
            "-o",
            &s(&out),
        ]);
        out
    }

    pub fn bundle(&self, version: &str, sv: u64) -> PathBuf {
        self.bundle_for(version, sv, HARDWARE)
    }

    /// `ecko-image install` to the inactive slot.
    pub fn install(&self, bundle: &Path) {
        image_ok(&[
            "install",
            &s(bundle),
            "--trust",
            &s(&self.trust),
            "--hardware",
            HARDWARE,
            "--slots",
            &s(&self.slots),
            "--allow-dev-keys",
        ]);
    }

    /// One power-on: `ecko-image boot --json`.
    pub fn boot(&self) -> serde_json::Value {
        serde_json::from_str(&image_ok(&["boot", "--slots", &s(&self.slots), "--json"])).unwrap()
    }

    pub fn mark_good(&self) {
        image_ok(&["mark-good", "--slots", &s(&self.slots)]);
    }

    /// `ecko-image status --json`: the boot state.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&image_ok(&["status", "--slots", &s(&self.slots), "--json"])).unwrap()
    }

    /// The state of `slot` (`"a"`, `"b"`) now.
    pub fn slot_state(&self, slot: &str) -> String {
        self.status()[slot]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Version 1.0 installed, booted and marked good: the box as shipped.
    pub fn shipped(&self) -> &Self {
        self.install(&self.bundle("1.0", 1));
        self.boot();
        self.mark_good();
        self
    }

    /// The `[update]` section over these slots and keys.
    pub fn section(&self, grace: &str) -> String {
        format!(
            "[update]\nslots = \"{}\"\nboot = \"file\"\ntrust = \"{}\"\nhardware = \"{HARDWARE}\"\ngrace = \"{grace}\"\nallow_dev_keys = true\n",
            self.slots.display(),
            self.trust.display()
        )
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}
