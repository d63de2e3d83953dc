//! Firmware updates with the real binaries: bundles installed by
//! `ecko-image` to its file backend, `ecko-image boot` as the bootloader,
//! the gateway marking the new slot good only once its own readiness
//! check passes; a gateway that never gets ready leaves the slot to fall
//! back, and the next start reports the failed update on the dashboard and
//! to the hub (mosquitto, paho-mqtt as the hub) with the journal intact.
//! An install the gateway makes goes where `slots.toml` says, a partition
//! (a loop device) included.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::decode;
use ecko_gateway::journal::JournalReader;
use ecko_tests::admin_http::{csrf_of, get, login, user_add};
use ecko_tests::firmware::Firmware;
use ecko_tests::mqtt::{Broker, HubListener};
use ecko_tests::{eventually, free_port, hl7_sample, mllp_ack, Gateway};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

// The image crate's loop device guard, shared rather than copied; this
// file uses part of it.
#[allow(dead_code)]
#[path = "../../image/tests/common/loop_device.rs"]
mod loop_device;

const PREFIX: &str = "ecko/north/lab-1/";

/// An MLLP listener on `mllp` routed to a file destination `d/out`, the
/// admin page on `admin` (plain HTTP), and `extra`.
fn config(d: &Path, mllp: u16, admin: u16, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(d.join("out")).unwrap();
    let text = format!(
        r#"[journal]
path = "{d}/journal.db"

[admin]
listen = "127.0.0.1:{admin}"
tls = false

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"

[[route]]
name = "all"
from = ["lab"]
to = ["archive"]

{extra}
"#,
        d = d.display()
    );
    let path = d.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn hub_section(broker: &Broker) -> String {
    format!(
        "[hub]\nurl = \"mqtt://127.0.0.1:{}\"\nsite = \"north\"\ndevice = \"lab-1\"\nformat = \"json\"\nhealth_interval = \"2s\"\nreconnect_min = \"1s\"\nreconnect_max = \"2s\"\n",
        broker.port
    )
}

/// An HL7 result with its own control id.
fn result(n: usize) -> Vec<u8> {
    String::from_utf8(hl7_sample("oru_r01_v251.hl7"))
        .unwrap()
        .replacen("XN20260314093015001", &format!("UPD{n:06}"), 1)
        .into_bytes()
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn payloads(l: &HubListener, topic: &str) -> Vec<Value> {
    l.on(&format!("{PREFIX}{topic}"))
        .into_iter()
        .map(|r| decode(PayloadFormat::Json, &r.payload).unwrap())
        .collect()
}

#[test]
fn a_pending_slot_is_marked_good_only_once_a_message_was_delivered_after_the_boot() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    fw.install(&fw.bundle("1.1", 1));
    let booted = fw.boot();
    assert_eq!(booted["slot"], "a", "{booted}");
    assert_eq!(fw.slot_state("a"), "pending");

    let mllp = free_port();
    // A grace time longer than the test: only the delivery can make it ready.
    let cfg = config(d, mllp, free_port(), &fw.section("10m"));
    let log = d.join("gateway.log");
    let gw = Gateway::start(&cfg, &log, &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fw.slot_state("a"),
        "pending",
        "marked good before any upstream contact"
    );
    let ack = mllp_ack(mllp, &result(1));
    assert!(ack.contains("MSA|AA"), "{ack}");
    assert!(
        eventually(Duration::from_secs(20), || fw.slot_state("a") == "good"),
        "not marked good after a delivery: {}\n{}",
        fw.status(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(files(&d.join("out")), 1);
    let status = fw.status();
    assert_eq!(status["next"], "a");
    assert!(
        status["last_result"]
            .as_str()
            .unwrap()
            .contains("updated to 1.1"),
        "{status}"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("firmware update: ready, slot marked good"));
    // Marked good, it keeps booting.
    assert_eq!(fw.boot()["slot"], "a");
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn a_gateway_whose_listener_cannot_bind_never_marks_its_slot_good_and_the_slot_falls_back_with_the_journal_intact(
) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let broker = Broker::start(&d.join("broker"));
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    let (mllp, admin) = (free_port(), free_port());
    let cfg = config(
        d,
        mllp,
        admin,
        &format!("{}\n{}", fw.section("0s"), hub_section(&broker)),
    );
    let log = d.join("gateway.log");

    // Version 1.0 runs and takes a message.
    let gw = Gateway::start(&cfg, &log, &[]);
    assert!(mllp_ack(mllp, &result(1)).contains("MSA|AA"));
    assert!(eventually(Duration::from_secs(20), || files(
        &d.join("out")
    ) == 1));
    assert_eq!(gw.terminate(), Some(0));

    // 2.0 is installed; on each of its boots something else holds the
    // listener's port, so the gateway never gets ready.
    fw.install(&fw.bundle("2.0", 1));
    let squatter = std::net::TcpListener::bind(("127.0.0.1", mllp)).unwrap();
    for left in [2, 1, 0] {
        let b = fw.boot();
        assert_eq!(
            (b["slot"].as_str(), b["tries_left"].as_u64()),
            (Some("a"), Some(left)),
            "{b}"
        );
        let code = Gateway::spawn(&cfg, &log, &[]).wait_for_exit();
        assert_ne!(code, Some(0), "the gateway started without its listener");
        assert_eq!(fw.slot_state("a"), "pending", "{}", fw.status());
    }
    // The fourth power-on: the bootloader gives up on 2.0.
    let b = fw.boot();
    assert_eq!(b["slot"], "b", "{b}");
    assert_eq!(b["fell_back"], true);
    assert!(b["last_result"].as_str().unwrap().contains("2.0"), "{b}");
    drop(squatter);

    // The journal is as 1.0 left it.
    let counts = JournalReader::open(&d.join("journal.db"))
        .unwrap()
        .counts()
        .unwrap();
    assert_eq!(
        counts.iter().map(|c| c.delivered).sum::<u64>(),
        1,
        "{counts:?}"
    );

    // 1.0 again: the hub hears of the failed update and sees both slots.
    let hub = HubListener::start(
        &broker,
        "hub",
        &[&format!("{PREFIX}events"), &format!("{PREFIX}health")],
        &d.join("hub.jsonl"),
    );
    let gw = Gateway::start(&cfg, &log, &[]);
    let rolled_back = || {
        payloads(&hub, "events")
            .into_iter()
            .filter(|e| e["kind"] == "update.rolled_back")
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(20), || !rolled_back().is_empty()),
        "no update.rolled_back event: {:?}",
        payloads(&hub, "events")
    );
    let event = &rolled_back()[0];
    assert_eq!(event["subject"], "2.0", "{event}");
    assert_eq!(event["detail"]["slot"], "a");
    assert!(
        eventually(Duration::from_secs(10), || payloads(&hub, "health")
            .iter()
            .any(|h| h["update"]["failed"]["version"] == "2.0")),
        "{:?}",
        payloads(&hub, "health").last()
    );
    let health = payloads(&hub, "health").pop().unwrap();
    let slots = &health["update"]["slots"];
    assert_eq!(slots[0]["slot"], "a");
    assert_eq!(slots[0]["state"], "bad");
    assert_eq!(slots[0]["version"], "2.0");
    assert_eq!(slots[1]["state"], "good");
    assert_eq!(slots[1]["version"], "1.0");
    assert_eq!(slots[1]["active"], true);

    // The dashboard says which version failed and when.
    user_add(&cfg, "ann", "a long admin secret");
    let cookie = login(admin, "ann", "a long admin secret");
    let (status, page) = get(admin, "/", &cookie);
    assert_eq!(status, 200);
    assert!(
        page.contains("firmware update to 2.0 failed (seen "),
        "{page}"
    );
    assert!(page.contains("id=\"firmware\""), "{page}");
    // And the gateway still moves messages.
    assert!(mllp_ack(mllp, &result(2)).contains("MSA|AA"));
    assert!(eventually(Duration::from_secs(20), || files(
        &d.join("out")
    ) == 2));
    assert_eq!(gw.terminate(), Some(0));

    // Another start does not report the same failure again.
    let gw = Gateway::start(&cfg, &log, &[]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gw.terminate(), Some(0));
    // At least once on the wire; the hub deduplicates by id.
    let ids: std::collections::BTreeSet<String> = rolled_back()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{:?}", rolled_back());
}

fn post_form(port: u16, path: &str, cookie: &str, body: &str) -> (u16, String) {
    let (status, head, _) = ecko_tests::admin_http::post_form(port, path, cookie, body);
    (status, head)
}

fn location(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .expect("a Location")
}

#[test]
fn a_bundle_on_the_usb_stick_is_offered_on_the_dashboard_and_installed_only_after_an_admin_confirms_it(
) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    let stick = d.join("media-usb");
    std::fs::create_dir_all(&stick).unwrap();
    std::fs::copy(fw.bundle("1.1", 1), stick.join("ecko-1.1.bundle")).unwrap();
    std::fs::write(stick.join("notes.txt"), b"not a bundle").unwrap();
    let admin = free_port();
    let cfg = config(
        d,
        free_port(),
        admin,
        &format!("{}usb_path = \"{}\"\n", fw.section("5m"), stick.display()),
    );
    let gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    user_add(&cfg, "ann", "a long admin secret");
    let cookie = login(admin, "ann", "a long admin secret");
    let (_, dashboard) = get(admin, "/", &cookie);
    assert!(dashboard.contains("id=\"firmware-usb\""), "{dashboard}");
    assert!(dashboard.contains("ecko-1.1.bundle"));
    assert!(!dashboard.contains("notes.txt"));
    let before = fw.status();

    // Offered is not installed; verified is not installed either.
    let (_, page) = get(admin, "/update", &cookie);
    assert!(
        page.contains("class=\"usb-bundle\">ecko-1.1.bundle<"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let (status, head) = post_form(
        admin,
        "/update/usb",
        &cookie,
        &format!("csrf={csrf}&name=..%2Ffw%2Fkey"),
    );
    assert_eq!(status, 303);
    let (_, page) = get(admin, &location(&head), &cookie);
    assert!(page.contains("no such bundle on the USB stick"), "{page}");
    choose_usb_bundle(admin, &cookie, &csrf, "ecko-1.1.bundle");
    let (_, page) = get(admin, "/update", &cookie);
    assert!(page.contains("id=\"manifest-version\">1.1<"), "{page}");
    assert_eq!(fw.status(), before);

    // The admin confirms with the password: installed, the stick untouched.
    confirm_install(admin, &cookie, &csrf);
    assert!(
        eventually(Duration::from_secs(20), || fw.slot_state("a") == "pending"),
        "{}",
        fw.status()
    );
    assert_eq!(fw.status()["a"]["version"], "1.1");
    assert!(stick.join("ecko-1.1.bundle").exists());
    assert_eq!(gw.terminate(), Some(0));
}

/// The USB stick's bundle `name` chosen on the Update page: verified and
/// shown, not installed.
fn choose_usb_bundle(admin: u16, cookie: &str, csrf: &str, name: &str) {
    let (status, _) = post_form(
        admin,
        "/update/usb",
        cookie,
        &format!("csrf={csrf}&name={name}"),
    );
    assert_eq!(status, 303);
}

/// The chosen bundle's install confirmed with the password of `ann`.
fn confirm_install(admin: u16, cookie: &str, csrf: &str) {
    let (status, _) = post_form(
        admin,
        "/update/install",
        cookie,
        &format!("csrf={csrf}&password=a+long+admin+secret"),
    );
    assert_eq!(status, 303);
}

#[test]
fn an_install_the_gateway_makes_writes_the_partition_slots_toml_names_and_nothing_past_the_payload()
{
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = Firmware::new(&d.join("fw"));
    fw.shipped();
    // Shipped into slot b (a file); slot a, the next target, is a partition.
    let part = loop_device::LoopDevice::new(d, "a.img", 8 << 20);
    std::fs::write(
        fw.slots.join("slots.toml"),
        format!("[a]\ndevice = \"{}\"\n", part.p()),
    )
    .unwrap();
    let stick = d.join("media-usb");
    std::fs::create_dir_all(&stick).unwrap();
    std::fs::copy(fw.bundle("1.1", 1), stick.join("ecko-1.1.bundle")).unwrap();
    let admin = free_port();
    let cfg = config(
        d,
        free_port(),
        admin,
        &format!("{}usb_path = \"{}\"\n", fw.section("5m"), stick.display()),
    );
    let gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    user_add(&cfg, "ann", "a long admin secret");
    let cookie = login(admin, "ann", "a long admin secret");
    let csrf = csrf_of(&get(admin, "/update", &cookie).1);
    choose_usb_bundle(admin, &cookie, &csrf, "ecko-1.1.bundle");
    confirm_install(admin, &cookie, &csrf);
    assert!(
        eventually(Duration::from_secs(20), || fw.slot_state("a") == "pending"),
        "{}",
        fw.status()
    );
    let st = fw.status();
    assert_eq!(st["a"]["version"], "1.1", "{st}");
    assert_eq!(st["images"]["a"]["path"], part.p(), "{st}");

    let payload = std::fs::read(d.join("fw/rootfs-1.1.img")).unwrap();
    let on_part = part.bytes();
    assert!(
        on_part[..payload.len()] == payload[..],
        "the payload is the partition's first bytes"
    );
    assert!(
        loop_device::LoopDevice::untouched_from(&on_part, payload.len()),
        "what follows the payload is left as it was"
    );
    assert!(!fw.slots.join("slot-a").exists());
    assert_eq!(gw.terminate(), Some(0));
}
