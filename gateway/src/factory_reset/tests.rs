use super::*;
use crate::config::Config;
use std::path::Path;

/// A box in `d` that ran for a while: a journal with its WAL, users' setup
/// code used, uploaded certificates (the hub's identity and an endpoint's),
/// versions of its configuration, a staged bundle, DICOM objects, the
/// device's own admin certificate and the update slots.
fn used_box(d: &Path) -> Config {
    for dir in [
        "certificates",
        "config-history",
        "update",
        "dicom/pacs",
        "admin-tls",
        "slots",
        "keys",
        "out",
    ] {
        std::fs::create_dir_all(d.join(dir)).unwrap();
    }
    for file in [
        "journal.db",
        "journal.db-wal",
        "journal.db-shm",
        "setup-code",
        "certificates/hub.cert.pem",
        "certificates/hub.key.pem",
        "certificates/lab.tls.cert.1.pem",
        "config-history/1-edit-ann.toml",
        "update/ecko-1.1.bundle",
        "dicom/pacs/1.2.3.dcm",
        "admin-tls/cert.pem",
        "slots/boot-state.json",
        "out/delivered.hl7",
    ] {
        std::fs::write(d.join(file), file).unwrap();
    }
    let text = format!(
        r#"# the site's own file
[journal]
path = "{d}/journal.db"
retention_days = 7

[site]
time_zone = "Europe/Berlin"

[[endpoint]]
name = "lab-archive"
type = "file"
path = "{d}/out"

[update]
slots = "{d}/slots"
trust = "{d}/keys"
hardware = "ecko-gw-2"

# The hub enrolled this box as north/lab-1.
[hub]
url = "mqtts://hub.example:8883"
site = "north"
device = "lab-1"
cert = "{d}/certificates/hub.cert.pem"
key = "{d}/certificates/hub.key.pem"

[hub.commands]
max_age = "1m"

[service]
watchdog = "systemd"
"#,
        d = d.display()
    );
    let file = d.join("gateway.toml");
    std::fs::write(&file, text).unwrap();
    Config::load(&file).unwrap()
}

/// What every reset of [`used_box`] leaves, however it got there.
fn assert_reset(d: &Path) {
    for gone in [
        "journal.db",
        "journal.db-wal",
        "journal.db-shm",
        "setup-code",
        "certificates/lab.tls.cert.1.pem",
        "config-history",
        "update",
        "dicom",
    ] {
        assert!(!d.join(gone).exists(), "{gone} is wiped");
    }
    for kept in [
        "certificates/hub.cert.pem",
        "certificates/hub.key.pem",
        "admin-tls/cert.pem",
        "slots/boot-state.json",
        "out/delivered.hl7",
    ] {
        assert!(d.join(kept).exists(), "{kept} is kept");
    }
    assert!(!marker_path(&d.join("gateway.toml")).exists());
    let config = Config::load(&d.join("gateway.toml")).unwrap();
    assert_eq!(
        config.journal.path,
        d.join("journal.db"),
        "the journal stays where it was"
    );
    assert_eq!(
        config.journal.retention.as_secs(),
        90 * 86_400,
        "the rest of [journal] is the default"
    );
    assert!(config.endpoint("lab-archive").is_none());
    assert!(
        config.endpoint("mllp-in").is_some(),
        "the default endpoints"
    );
    assert_eq!(config.hub.site, "north");
    assert_eq!(config.hub.device, "lab-1");
    assert_eq!(config.hub.url, "mqtts://hub.example:8883");
    assert_eq!(config.hub.cert, Some(d.join("certificates/hub.cert.pem")));
    assert_eq!(
        config.hub.commands,
        crate::config::CommandPolicy::default(),
        "the hub's command policy is the default"
    );
    let update = config.update.expect("[update] kept");
    assert_eq!(update.hardware, "ecko-gw-2");
}

#[test]
fn a_reset_wipes_the_journal_configuration_and_uploads_and_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let config = used_box(dir.path());
    let plan = Plan::for_config(&config, "ann").unwrap();
    perform(&plan).unwrap();
    assert_reset(dir.path());
    let text = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    assert!(
        text.contains("# The hub enrolled this box as north/lab-1."),
        "{text}"
    );
    assert!(!text.contains("the site's own file"), "{text}");
}

#[test]
fn a_reset_cut_short_after_any_step_is_finished_by_the_next_start() {
    for stop in [Step::MarkerWritten, Step::Wiped, Step::ConfigWritten] {
        let dir = tempfile::tempdir().unwrap();
        let config = used_box(dir.path());
        let plan = Plan::for_config(&config, "ann").unwrap();
        let cut = perform_with_hook(&plan, &mut |step| {
            if step == stop {
                Err(std::io::Error::other("power cut"))
            } else {
                Ok(())
            }
        });
        assert!(cut.is_err(), "{stop:?}");
        assert!(
            marker_path(&dir.path().join("gateway.toml")).exists(),
            "{stop:?}"
        );
        let finished = finish_pending(&dir.path().join("gateway.toml")).unwrap();
        assert_eq!(
            finished.as_ref().map(|p| p.requested_by.as_str()),
            Some("ann")
        );
        assert_reset(dir.path());
    }
}

#[test]
fn a_start_without_a_marker_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    used_box(dir.path());
    assert!(finish_pending(&dir.path().join("gateway.toml"))
        .unwrap()
        .is_none());
    assert!(dir.path().join("journal.db").exists());
}

#[test]
fn a_marker_that_is_not_a_plan_of_this_file_is_moved_aside_and_wipes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = used_box(dir.path());
    let file = dir.path().join("gateway.toml");
    let marker = marker_path(&file);
    std::fs::write(&marker, "not json").unwrap();
    assert!(finish_pending(&file).unwrap().is_none());
    assert!(!marker.exists());
    assert!(dir.path().join("journal.db").exists());
    let mut plan = Plan::for_config(&config, "ann").unwrap();
    plan.config_file = dir.path().join("other.toml");
    std::fs::write(&marker, serde_json::to_string(&plan).unwrap()).unwrap();
    assert!(finish_pending(&file).unwrap().is_none());
    assert!(dir.path().join("journal.db").exists());
    let mut plan = Plan::for_config(&config, "ann").unwrap();
    plan.wipe.push(dir.path().join("slots"));
    std::fs::write(&marker, serde_json::to_string(&plan).unwrap()).unwrap();
    assert!(finish_pending(&file).unwrap().is_none());
    assert!(dir.path().join("slots/boot-state.json").exists());
}

#[test]
fn the_reset_configuration_is_the_embedded_default_where_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(&file, "[journal]\npath = \"./var/journal.db\"\n").unwrap();
    let plan = Plan::for_config(&Config::load(&file).unwrap(), "cli:root").unwrap();
    if std::env::var_os("ECKO_DATA_DIR").is_none() {
        assert_eq!(plan.config_text, DEFAULT_CONFIG);
    }
}
