//! Factory reset through the real binary: `ecko-gateway factory-reset`
//! wipes the journal, the users, the configuration and uploaded files and
//! keeps the device's identity; a reset a power cut interrupted after its
//! marker is finished at the next start; the admin page's reset takes an
//! admin and their password again, tells the hub (mosquitto, paho-mqtt as
//! the hub) before wiping, and the gateway exits 75 to be started again as
//! on first boot, asking for a new setup code; the reset button (an input
//! event device, here a FIFO the test writes `struct input_event` records
//! into) held down does the same, a short press nothing.

use ecko_gateway::config::PayloadFormat;
use ecko_gateway::hub::payload::decode;
use ecko_tests::admin_http::{csrf_of, get, login, post_form};
use ecko_tests::mqtt::{Broker, HubListener};
use ecko_tests::{
    default_on_free_ports, free_port, gateway_binary, hl7_sample, mllp_ack, msa_code, Gateway,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const PREFIX: &str = "ecko/north/lab-1/";

/// A site's configuration in `d`, its data under `d/var` (where the
/// default configuration puts it with `ECKO_DATA_DIR=d/var`): an MLLP
/// listener on `mllp` to a file destination, the admin page on `admin`
/// (plain HTTP), and `hub` as its `[hub]` section.
fn site_config(d: &Path, mllp: u16, admin: u16, hub: &str) -> PathBuf {
    for dir in ["var/certificates", "var/config-history", "out"] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
    }
    let text = format!(
        r#"[journal]
path = "{d}/var/journal.db"
retention_days = 7

[site]
time_zone = "Europe/Berlin"

[admin]
listen = "127.0.0.1:{admin}"
tls = false

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "lab-archive"
type = "file"
path = "{d}/out"

[[route]]
name = "all"
from = ["lab"]
to = ["lab-archive"]

{hub}
[hub.commands]
max_age = "1m"
"#,
        d = d.display()
    );
    let path = d.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The hub section of a box enrolled as north/lab-1 whose identity files
/// are in `d/var/certificates`; the uplink is off.
fn enrolled_offline(d: &Path) -> String {
    std::fs::create_dir_all(d.join("var/certificates")).unwrap();
    for f in ["hub.cert.pem", "hub.key.pem"] {
        std::fs::write(d.join("var/certificates").join(f), f).unwrap();
    }
    format!(
        "[hub]\nenabled = false\nurl = \"mqtts://127.0.0.1:1\"\nsite = \"north\"\ndevice = \"lab-1\"\ncert = \"{d}/var/certificates/hub.cert.pem\"\nkey = \"{d}/var/certificates/hub.key.pem\"\n",
        d = d.display()
    )
}

fn gateway(args: &[&str], config: &Path, stdin: &str) -> Output {
    let mut child = Command::new(gateway_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    child.wait_with_output().unwrap()
}

fn user_add(config: &Path, role: &str, name: &str, password: &str) {
    let out = gateway(
        &["user", "add", "--role", role, name],
        config,
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `setup-code`: the code, or `None` (setup done).
fn setup_code(config: &Path) -> Option<String> {
    let out = gateway(&["setup-code"], config, "");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The environment the reset (default) configuration runs with here.
fn default_env(d: &Path) -> Vec<(&'static str, String)> {
    let mut env = default_on_free_ports(d);
    env.push((
        "ECKO_FHIR_URL",
        format!("http://127.0.0.1:{}/fhir/R4", free_port()),
    ));
    env
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What every reset of a [`site_config`] box leaves: the site's
/// configuration and uploads gone, the exchanged files kept, and
/// the hub's certificate and key kept when `[hub]` names them.
fn assert_reset(d: &Path, hub_names_its_files: bool) {
    for gone in ["var/config-history", "var/certificates/lab.pem"] {
        assert!(!d.join(gone).exists(), "{gone} is wiped");
    }
    assert!(d.join("out/kept.hl7").exists(), "a delivered file is kept");
    for f in [
        "var/certificates/hub.cert.pem",
        "var/certificates/hub.key.pem",
    ] {
        assert_eq!(d.join(f).exists(), hub_names_its_files, "{f}");
    }
    let text = std::fs::read_to_string(d.join("gateway.toml")).unwrap();
    assert!(
        text.contains("name = \"mllp-in\""),
        "the default endpoints:\n{text}"
    );
    assert!(!text.contains("lab-archive"), "{text}");
    assert!(!text.contains("Europe/Berlin"), "{text}");
    assert!(!text.contains("[hub.commands]"), "{text}");
    assert!(
        text.contains("device = \"lab-1\"") && text.contains("site = \"north\""),
        "{text}"
    );
    assert!(!d.join("gateway.toml.factory-reset").exists());
}

/// Files a used box has beside its journal.
fn used(d: &Path) {
    std::fs::write(d.join("var/certificates/lab.pem"), "an endpoint's upload").unwrap();
    std::fs::write(d.join("var/config-history/1-edit-ann.toml"), "old").unwrap();
    std::fs::write(d.join("out/kept.hl7"), "a delivered file").unwrap();
}

/// After a reset: the gateway starts on the default configuration with no
/// user, and the first-run setup needs the device's new code.
fn starts_as_on_first_boot(d: &Path, config: &Path) {
    let env = default_env(d);
    let log = d.join("after-reset.log");
    let mut gw = Gateway::start(config, &log, &as_refs(&env));
    gw.wait_for_log("setup_code", 0, Duration::from_secs(10));
    let code = setup_code(config).expect("a new setup code");
    assert_eq!(code.len(), 14, "{code}");
    assert_eq!(gw.terminate(), Some(0));
}

#[test]
fn the_command_line_reset_keeps_the_identity_wipes_the_rest_and_waits_for_the_gateway_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mllp, admin) = (free_port(), free_port());
    let hub = enrolled_offline(d);
    let config = site_config(d, mllp, admin, &hub);
    used(d);
    user_add(&config, "admin", "ann", "a long admin secret");
    assert_eq!(setup_code(&config), None, "set up already");

    let log = d.join("gateway.log");
    let gw = Gateway::start(&config, &log, &[]);
    assert_eq!(
        msa_code(&mllp_ack(mllp, &hl7_sample("oru_r01_v251.hl7"))),
        "AA"
    );
    let out = gateway(&["factory-reset", "--yes"], &config, "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");
    assert!(
        d.join("var/journal.db").exists(),
        "nothing wiped under a running gateway"
    );
    assert_eq!(gw.terminate(), Some(0));

    // No terminal to confirm on and no --yes: refused, nothing changed.
    let out = gateway(&["factory-reset"], &config, "reset\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --yes"), "{err}");
    assert!(d.join("var/journal.db").exists());
    assert!(d.join("var/certificates/lab.pem").exists());

    let out = gateway(&["factory-reset", "--yes"], &config, "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_reset(d, true);
    assert!(!d.join("var/journal.db").exists(), "the journal is wiped");
    starts_as_on_first_boot(d, &config);
}

#[test]
fn a_reset_interrupted_after_its_marker_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = enrolled_offline(d);
    let config = site_config(d, free_port(), free_port(), &hub);
    used(d);
    user_add(&config, "admin", "ann", "a long admin secret");
    // The power went after the marker was written, before anything was
    // wiped.
    let loaded = ecko_gateway::config::Config::load(&config).unwrap();
    let plan = ecko_gateway::factory_reset::Plan::for_config(&loaded, "ann").unwrap();
    plan.write_marker().unwrap();
    assert!(d.join("gateway.toml.factory-reset").exists());
    assert!(d.join("var/journal.db").exists());

    let env = default_env(d);
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &as_refs(&env));
    gw.wait_for_log(
        "an interrupted factory reset is finished",
        0,
        Duration::from_secs(1),
    );
    gw.wait_for_log("setup_code", 0, Duration::from_secs(10));
    assert_eq!(gw.terminate(), Some(0));
    assert_reset(d, true);
    // The journal the gateway runs on is a new one: no user, so the
    // first-run setup again.
    assert!(setup_code(&config).is_some(), "first-run setup again");
}

fn post(port: u16, path: &str, cookie: &str, body: &str) -> (u16, String) {
    let (status, _, page) = post_form(port, path, cookie, body);
    (status, page)
}

/// (session cookie, CSRF token) of `name`.
fn session(port: u16, name: &str, password: &str) -> (String, String) {
    let cookie = login(port, name, password);
    let (status, page) = get(port, "/", &cookie);
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_of(&page);
    (cookie, csrf)
}

#[test]
fn the_admin_page_resets_only_for_an_admin_who_gives_the_password_again_and_tells_the_hub_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = Broker::start(d);
    let (mllp, admin) = (free_port(), free_port());
    for f in ["hub.cert.pem", "hub.key.pem"] {
        std::fs::create_dir_all(d.join("var/certificates")).unwrap();
        std::fs::write(d.join("var/certificates").join(f), f).unwrap();
    }
    let hub = format!(
        "[hub]\nurl = \"mqtt://127.0.0.1:{}\"\nsite = \"north\"\ndevice = \"lab-1\"\nformat = \"json\"\nreconnect_min = \"1s\"\nreconnect_max = \"2s\"\n",
        broker.port
    );
    let config = site_config(d, mllp, admin, &hub);
    used(d);
    user_add(&config, "admin", "ann", "a long admin secret");
    user_add(&config, "operator", "olive", "a long operator secret");
    user_add(&config, "viewer", "vic", "a long viewer secret");
    let listener = HubListener::start(
        &broker,
        "hub",
        &[&format!("{PREFIX}events")],
        &d.join("hub.jsonl"),
    );
    let log = d.join("gateway.log");
    let gw = Gateway::start(&config, &log, &[]);
    assert_eq!(
        msa_code(&mllp_ack(mllp, &hl7_sample("oru_r01_v251.hl7"))),
        "AA"
    );

    for (name, password) in [
        ("vic", "a long viewer secret"),
        ("olive", "a long operator secret"),
    ] {
        let (cookie, csrf) = session(admin, name, password);
        assert_eq!(
            get(admin, "/settings/factory-reset", &cookie).0,
            403,
            "{name}"
        );
        let body = format!("csrf={csrf}&password={}", password.replace(' ', "+"));
        assert_eq!(
            post(admin, "/settings/factory-reset", &cookie, &body).0,
            403,
            "{name}"
        );
    }
    let (cookie, csrf) = session(admin, "ann", "a long admin secret");
    let (status, page) = get(admin, "/settings", &cookie);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"factory-reset-link\""), "{page}");
    let (status, page) = get(admin, "/settings/factory-reset", &cookie);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("hub.cert.pem"),
        "the page says what is kept: {page}"
    );

    // A wrong password changes nothing.
    let (status, page) = post(
        admin,
        "/settings/factory-reset",
        &cookie,
        &format!("csrf={csrf}&password=not+it"),
    );
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("that is not your password"), "{page}");
    assert_eq!(
        get(admin, "/settings", &cookie).0,
        200,
        "still running, still logged in"
    );
    assert!(d.join("var/certificates/lab.pem").exists());
    assert_eq!(setup_code(&config), None);

    let (status, page) = post(
        admin,
        "/settings/factory-reset",
        &cookie,
        &format!("csrf={csrf}&password=a+long+admin+secret"),
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"factory-reset-started\""), "{page}");
    assert_eq!(gw.wait_for_exit(), Some(75), "exits to be started again");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("factory reset requested") && text.contains("requested_by=\"ann\""),
        "{text}"
    );
    assert!(
        text.contains("the hub took the factory reset's event"),
        "{text}"
    );
    let events: Vec<_> = listener
        .on(&format!("{PREFIX}events"))
        .into_iter()
        .map(|r| decode(PayloadFormat::Json, &r.payload).unwrap())
        .filter(|e| e["kind"] == "device.factory_reset")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["subject"], "ann");
    // This [hub] names no certificate: the files there were uploads.
    assert_reset(d, false);
    assert!(!d.join("var/journal.db").exists(), "the journal is wiped");
    assert!(!d.join("var/journal.db-wal").exists());
    starts_as_on_first_boot(d, &config);
}

/// One `struct input_event` of this target, as `gpio-keys` writes it.
fn key_event(code: u16, value: i32) -> Vec<u8> {
    let size = std::mem::size_of::<nix::libc::input_event>();
    let mut record = vec![0u8; size];
    record[size - 8..size - 6].copy_from_slice(&1u16.to_ne_bytes()); // EV_KEY
    record[size - 6..size - 4].copy_from_slice(&code.to_ne_bytes());
    record[size - 4..].copy_from_slice(&value.to_ne_bytes());
    record
}

#[test]
fn holding_the_reset_button_of_an_input_device_resets_the_gateway_and_a_short_press_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let button = d.join("event0");
    nix::unistd::mkfifo(
        &button,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    let hub = format!(
        "{}\n[service.reset_button]\nsource = \"input\"\ndevice = \"{}\"\nhold = \"1500ms\"\ndebounce = \"20ms\"\n",
        enrolled_offline(d),
        button.display()
    );
    let config = site_config(d, free_port(), free_port(), &hub);
    used(d);
    user_add(&config, "admin", "ann", "a long admin secret");
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(&button)
        .unwrap();
    gw.wait_for_log("reset button watched", 0, Duration::from_secs(5));

    // A short press, with another key's events around it.
    fifo.write_all(&key_event(30, 1)).unwrap();
    fifo.write_all(&key_event(0x198, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fifo.write_all(&key_event(0x198, 0)).unwrap();
    gw.wait_for_log("a short press does nothing", 0, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(2_000));
    assert!(d.join("var/journal.db").exists(), "nothing reset");
    assert_eq!(setup_code(&config), None);

    // Held: the reset starts while it is still down.
    let pressed = std::time::Instant::now();
    fifo.write_all(&key_event(0x198, 1)).unwrap();
    fifo.write_all(&key_event(0x198, 2)).unwrap(); // auto-repeat
    assert_eq!(gw.wait_for_exit(), Some(75));
    assert!(
        pressed.elapsed() >= Duration::from_millis(1_500),
        "{:?}",
        pressed.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("requested_by=\"reset-button\""), "{text}");
    assert_reset(d, true);
    assert!(!d.join("var/journal.db").exists(), "the journal is wiped");
    // The button is the board's: `[service]` is kept with it.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[service.reset_button]"), "{text}");
}
