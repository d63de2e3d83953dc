//! The systemd unit in `packaging/systemd` as systemd itself reads it:
//! `systemd-analyze verify` finds nothing wrong, and `systemd-analyze
//! security --offline=true` rates its exposure "OK" or better. Its
//! generator, run by `sh` as systemd runs it on the real binary, grants
//! `CAP_NET_BIND_SERVICE` only for a configuration with a port below 1024,
//! and the unit with that drop-in verifies too. The systemd-analyze tests
//! are skipped, with the reason printed, where it is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/ecko-gateway.service")
}

/// The unit with `ExecStart` pointing at the binary built here, since
/// verify checks that the command exists.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(unit()).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/ecko-gateway run "));
    let binary = ecko_tests::gateway_binary();
    let path = dir.join("ecko-gateway.service");
    std::fs::write(
        &path,
        text.replace("/usr/bin/ecko-gateway", &binary.display().to_string()),
    )
    .unwrap();
    path
}

fn systemd_analyze() -> Option<PathBuf> {
    let found = Command::new("systemd-analyze").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => Some(PathBuf::from("systemd-analyze")),
        _ => {
            println!("skipped: systemd-analyze is not installed here");
            None
        }
    }
}

#[test]
fn systemd_analyze_verify_finds_nothing_wrong_with_the_unit() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(unit_for_this_build(dir.path()))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{said}");
    assert!(
        !said.contains("ecko-gateway.service"),
        "warnings about the unit:\n{said}"
    );
}

#[test]
fn the_unit_asks_for_notify_the_watchdog_restarts_and_a_reboot_after_a_crash_loop() {
    let text = std::fs::read_to_string(unit()).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "StartLimitAction=reboot",
        "StateDirectory=ecko",
        "User=ecko",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        // Emptied here, so the generator's drop-in grants exactly its one.
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SuccessExitStatus=75",
        "RestartForceExitStatus=75",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in the unit");
    }
}

/// The overall line of `systemd-analyze security --offline=true` for the
/// unit in `dir` (with any drop-in directory beside it), after checking
/// that it rates "OK" or better; `None` when this systemd-analyze cannot
/// rate offline.
fn security_rated_ok(analyze: &Path, dir: &Path) -> Option<String> {
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(dir.join("ecko-gateway.service"))
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && said.is_empty() {
        println!(
            "skipped: this systemd-analyze cannot rate a unit offline: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let overall = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall level in:\n{said}"));
    println!("{overall}");
    let level: f64 = overall
        .rsplit(':')
        .next()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no number in {overall:?}"));
    assert!(
        overall.contains(" OK") || overall.contains(" SAFE"),
        "exposure {level}: {overall}"
    );
    Some(said)
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok_or_better() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    unit_for_this_build(dir.path());
    security_rated_ok(&analyze, dir.path());
}

#[test]
fn systemd_analyze_security_rates_the_unit_with_the_low_port_drop_in_ok_or_better() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = mllp_on_port_104(dir.path());
    let drop_in = granted(generate(
        &config,
        &dir.path().join("no-environment"),
        dir.path(),
    ));
    let (ok, said) = verify_with_drop_in(dir.path(), &drop_in);
    assert!(ok, "{said}");
    let Some(rated) = security_rated_ok(&analyze, dir.path()) else {
        return;
    };
    // The drop-in was taken into account: the one capability is rated.
    assert!(
        rated.contains("✗ CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE"),
        "{rated}"
    );
}

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/ecko-gateway-generator")
}

/// What one run of the generator left: its exit status, its stderr, and
/// the drop-in it wrote in the normal directory (`None`: nothing at all was
/// written there).
struct Generated {
    success: bool,
    stderr: String,
    drop_in: Option<String>,
}

/// Runs the generator as systemd does (three directories) on `config`,
/// with `environment` as the service's environment file.
fn generate(config: &Path, environment: &Path, out: &Path) -> Generated {
    generate_with(&ecko_tests::gateway_binary(), config, environment, out)
}

fn generate_with(gateway: &Path, config: &Path, environment: &Path, out: &Path) -> Generated {
    let normal = out.join("normal");
    std::fs::create_dir_all(&normal).unwrap();
    let run = Command::new("sh")
        .arg(generator())
        .arg(&normal)
        .arg(out.join("early"))
        .arg(out.join("late"))
        .env("ECKO_GENERATOR_CONFIG", config)
        .env("ECKO_GENERATOR_ENVIRONMENT", environment)
        .env("ECKO_GENERATOR_GATEWAY", gateway)
        .env_remove("ECKO_ADMIN_PORT")
        .env_remove("ECKO_MLLP_PORT")
        .env_remove("ECKO_ASTM_PORT")
        .output()
        .unwrap();
    let written: Vec<_> = std::fs::read_dir(&normal).unwrap().collect();
    let file = normal.join("ecko-gateway.service.d/50-low-port.conf");
    let drop_in =
        if written.is_empty() {
            None
        } else {
            Some(std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!("something other than {} was written: {e}", file.display())
            }))
        };
    Generated {
        success: run.status.success(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        drop_in,
    }
}

fn default_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml")
}

fn mllp_on_port_104(dir: &Path) -> PathBuf {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = \"{}/journal.db\"\n\n[[endpoint]]\nname = \"his\"\ntype = \"mllp\"\nlisten = \"0.0.0.0:104\"\n\n[admin]\nlisten = \"127.0.0.1:8080\"\ntls = false\n",
            dir.display()
        ),
    )
    .unwrap();
    config
}

/// The lines of a drop-in that are not comments.
fn settings(drop_in: &str) -> Vec<&str> {
    drop_in.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The drop-in of a run that must have granted the capability, checked to
/// set exactly the two capability lines.
fn granted(out: Generated) -> String {
    assert!(out.success, "{}", out.stderr);
    let drop_in = out.drop_in.expect("a drop-in");
    assert_eq!(
        settings(&drop_in),
        [
            "[Service]",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        ],
        "{drop_in}"
    );
    drop_in
}

#[test]
fn the_generator_grants_the_bind_capability_for_an_mllp_listener_on_port_104() {
    let dir = tempfile::tempdir().unwrap();
    let config = mllp_on_port_104(dir.path());
    let drop_in = granted(generate(
        &config,
        &dir.path().join("no-environment"),
        dir.path(),
    ));
    assert!(drop_in.contains("port 104 (his, 0.0.0.0:104)"), "{drop_in}");
    assert!(!drop_in.contains("8080"), "{drop_in}");
}

#[test]
fn the_generator_writes_nothing_for_the_default_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(
        &default_config(),
        &dir.path().join("no-environment"),
        dir.path(),
    );
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.drop_in, None);
    assert_eq!(out.stderr, "");
}

#[test]
fn the_generator_reads_a_port_from_the_services_environment_file() {
    let dir = tempfile::tempdir().unwrap();
    let environment = dir.path().join("environment");
    std::fs::write(
        &environment,
        "# the page on the standard port\nECKO_ADMIN_PORT=443\n",
    )
    .unwrap();
    let drop_in = granted(generate(&default_config(), &environment, dir.path()));
    assert!(
        drop_in.contains("port 443 ([admin], 0.0.0.0:443)"),
        "{drop_in}"
    );
}

#[test]
fn the_generator_exits_0_and_writes_nothing_for_a_broken_or_missing_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "[[endpoint]\nname = \"his\"\nlisten = \"0.0.0.0:104\"\n",
    )
    .unwrap();
    for config in [broken, dir.path().join("missing.toml")] {
        let out = generate(&config, &dir.path().join("no-environment"), dir.path());
        assert!(out.success, "{}: {}", config.display(), out.stderr);
        assert_eq!(out.drop_in, None, "{}", config.display());
        assert!(
            out.stderr.contains("ecko-gateway-generator:")
                && out.stderr.contains(&config.display().to_string()),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn the_generator_exits_0_and_writes_nothing_when_the_binary_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = mllp_on_port_104(dir.path());
    let out = generate_with(
        &dir.path().join("no-such-binary"),
        &config,
        &dir.path().join("no-environment"),
        dir.path(),
    );
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.drop_in, None);
    assert!(
        out.stderr.contains("no capability granted"),
        "{}",
        out.stderr
    );
}

/// `systemd-analyze verify` of the unit with its drop-in directory beside
/// it, found through `SYSTEMD_UNIT_PATH`; (success, what it said).
fn verify_with_drop_in(dir: &Path, drop_in: &str) -> (bool, String) {
    let unit = unit_for_this_build(dir);
    let drop_ins = dir.join("ecko-gateway.service.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    std::fs::write(drop_ins.join("50-low-port.conf"), drop_in).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        // The trailing colon keeps systemd's own directories after it.
        .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.display()))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn systemd_analyze_verify_finds_nothing_wrong_with_the_unit_and_the_generated_drop_in() {
    if systemd_analyze().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = mllp_on_port_104(dir.path());
    let drop_in = generate(&config, &dir.path().join("no-environment"), dir.path())
        .drop_in
        .expect("a drop-in");

    // The drop-in is read at all: a wrong key in it is reported.
    let (_, said) = verify_with_drop_in(dir.path(), &format!("{drop_in}NoSuchKey=1\n"));
    assert!(
        said.contains("50-low-port.conf") && said.contains("NoSuchKey"),
        "the drop-in was not read:\n{said}"
    );

    let (ok, said) = verify_with_drop_in(dir.path(), &drop_in);
    assert!(ok, "systemd-analyze verify:\n{said}");
    assert!(
        !said.contains("ecko-gateway.service") && !said.contains("50-low-port.conf"),
        "warnings about the unit or its drop-in:\n{said}"
    );
}
