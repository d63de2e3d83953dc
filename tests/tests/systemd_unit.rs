//! The systemd unit in `packaging/systemd` as systemd itself reads it:
//! `systemd-analyze verify` finds nothing wrong, and `systemd-analyze
//! security --offline=true` rates its exposure "OK" or better. Skipped, with
//! the reason printed, where systemd-analyze is not installed.

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
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "SuccessExitStatus=75",
        "RestartForceExitStatus=75",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in the unit");
    }
}

#[test]
fn systemd_analyze_security_rates_the_unit_ok_or_better() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_for_this_build(dir.path()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && said.is_empty() {
        println!(
            "skipped: this systemd-analyze cannot rate a unit offline: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
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
}
