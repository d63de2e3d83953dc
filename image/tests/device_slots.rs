//! Slots on partitions (`slots.toml`), against real block devices: loop
//! devices over scratch files. The payload lands at the start of the
//! partition and nothing after it changes; a partition that is too small,
//! not a block device, mounted or held is refused before anything — the
//! device or the boot state — is written.

mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

use common::loop_device::LoopDevice;
use common::Scratch;

/// A scratch device whose slot b is `device`.
fn with_slot_b(device: &str) -> Scratch {
    let s = Scratch::new(&["slots"]);
    std::fs::write(
        s.d.join("slots/slots.toml"),
        format!("# slot a stays the file slot-a\n[b]\ndevice = \"{device}\"\n"),
    )
    .unwrap();
    s.ok(&["keygen", &s.p("key")]);
    s
}

fn install(s: &Scratch, bundle: &str) -> std::process::Output {
    s.run(&[
        "install",
        bundle,
        "--trust",
        &s.p("key.pub"),
        "--hardware",
        "box-v2",
        "--slots",
        &s.p("slots"),
        "--json",
    ])
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 239) as u8 ^ 0x3c).collect()
}

#[test]
fn a_bundle_installs_into_a_device_slot_from_its_start_and_leaves_the_rest_of_the_partition_as_it_was(
) {
    let s = Scratch::new(&[]);
    let dev = LoopDevice::new(&s.d, "b.img", 64 << 20);
    let s = with_slot_b(dev.p());
    // Not a multiple of any block size: the read-back must stop exactly there.
    let data = payload((5 << 20) + 4097);
    let b = s.build("v1", "1.0", &data);
    let o = install(&s, &b);
    assert!(o.status.success(), "{o:?}");
    let done: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(done["slot"], "b", "{done}");

    let st: serde_json::Value =
        serde_json::from_slice(&s.ok(&["status", "--slots", &s.p("slots"), "--json"]).stdout)
            .unwrap();
    assert_eq!(st["b"]["state"], "pending", "{st}");
    assert_eq!(st["b"]["version"], "1.0", "{st}");
    assert_eq!(st["next"], "b", "{st}");
    assert_eq!(st["images"]["b"]["kind"], "device", "{st}");
    assert_eq!(st["images"]["b"]["path"], dev.p(), "{st}");
    assert_eq!(st["images"]["a"]["kind"], "file", "{st}");
    let text = s.ok(&["status", "--slots", &s.p("slots")]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("on {}", dev.p())),
        "{text:?}"
    );

    let on_dev = dev.bytes();
    assert_eq!(on_dev.len() as u64, dev.len);
    assert!(
        on_dev[..data.len()] == data[..],
        "the payload is the partition's first bytes"
    );
    assert!(
        LoopDevice::untouched_from(&on_dev, data.len()),
        "what follows the payload is left as it was"
    );
    assert!(
        !s.d.join("slots/slot-b").exists(),
        "no file stands in for the device"
    );
}

#[test]
fn a_payload_larger_than_the_partition_is_refused_before_the_device_or_the_state_is_written() {
    let s = Scratch::new(&[]);
    let dev = LoopDevice::new(&s.d, "b.img", 4 << 20);
    let s = with_slot_b(dev.p());
    let b = s.build("big", "1.0", &payload((4 << 20) + 1));
    let before = dev.bytes();
    let state_before = s.slots_snapshot();
    let o = install(&s, &b);
    assert_eq!(o.status.code(), Some(29), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not fit") && err.contains(dev.p()),
        "{err}"
    );
    assert!(dev.bytes() == before, "the device is unchanged");
    assert_eq!(
        s.slots_snapshot(),
        state_before,
        "the boot state is unchanged"
    );
}

#[test]
fn a_regular_file_or_a_missing_path_named_as_the_slot_device_is_refused_and_never_created() {
    let s = Scratch::new(&[]);
    let fake = s.d.join("mmcblk0p3");
    std::fs::write(&fake, b"not a partition").unwrap();
    for (device, what) in [
        (fake.clone(), "is a regular file"),
        (s.d.join("mmcblk0p9"), "does not exist"),
    ] {
        let s = with_slot_b(device.to_str().unwrap());
        let b = s.build("v1", "1.0", &payload(1000));
        let state_before = s.slots_snapshot();
        let o = install(&s, &b);
        assert_eq!(o.status.code(), Some(30), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(what), "{err}");
        assert_eq!(
            s.slots_snapshot(),
            state_before,
            "the boot state is unchanged"
        );
    }
    assert_eq!(std::fs::read(&fake).unwrap(), b"not a partition");
    assert!(!s.d.join("mmcblk0p9").exists());
}

/// `dir` with a file system mounted on it, unmounted on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs `{cmd}`: {e}"));
    assert!(o.status.success(), "`{cmd} {args:?}` failed: {o:?}");
}

#[test]
fn a_mounted_partition_is_refused_and_its_file_system_left_intact() {
    let s = Scratch::new(&["mnt"]);
    let dev = LoopDevice::new(&s.d, "b.img", 16 << 20);
    run("mkfs.ext4", &["-q", "-F", dev.p()]);
    run("mount", &[dev.p(), &s.p("mnt")]);
    let mounted = Mount(s.d.join("mnt"));
    std::fs::write(s.d.join("mnt/keep"), b"on the mounted file system").unwrap();

    let t = with_slot_b(dev.p());
    let b = t.build("v1", "1.0", &payload(1 << 20));
    let state_before = t.slots_snapshot();
    let o = install(&t, &b);
    assert_eq!(o.status.code(), Some(31), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("mounted at {}", s.p("mnt"))), "{err}");
    assert_eq!(
        t.slots_snapshot(),
        state_before,
        "the boot state is unchanged"
    );

    drop(mounted);
    run("mount", &[dev.p(), &s.p("mnt")]);
    let _mounted = Mount(s.d.join("mnt"));
    assert_eq!(
        std::fs::read(s.d.join("mnt/keep")).unwrap(),
        b"on the mounted file system"
    );
}

#[test]
fn a_partition_another_process_holds_exclusively_is_refused_without_a_write() {
    let s = Scratch::new(&[]);
    let dev = LoopDevice::new(&s.d, "b.img", 4 << 20);
    // What a device mapper, a RAID member or a second install does.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_EXCL.bits())
        .open(&dev.path)
        .unwrap();
    let s = with_slot_b(dev.p());
    let b = s.build("v1", "1.0", &payload(1 << 20));
    let before = dev.bytes();
    let o = install(&s, &b);
    assert_eq!(o.status.code(), Some(31), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use"),
        "{o:?}"
    );
    drop(held);
    assert!(dev.bytes() == before, "the device is unchanged");
}
