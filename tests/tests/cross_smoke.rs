//! A cross-built gateway under emulation, on the shipped default
//! configuration: it takes an HL7 message over MLLP, an ASTM session from
//! python-astm, and its admin page answers.
//!
//! Ignored by a plain `cargo test`: it needs a gateway built for another CPU
//! and qemu to run it. `scripts/cross smoke` builds both and runs it with
//! `ECKO_GATEWAY_BIN` (the ARM binary) and `ECKO_GATEWAY_RUNNER` (the qemu
//! command) set; without them it fails rather than test the native binary.

mod astm_common;

use astm_common::{analyzer, message_file, results, RESULT_1};
use ecko_tests::{default_on_free_ports, eventually, hl7_sample, mllp_ack, msa_code, Gateway};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The ELF machine of a binary (e_machine): 183 aarch64, 40 ARM, 62 x86_64.
fn elf_machine(path: &Path) -> u16 {
    let head = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &head[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    u16::from_le_bytes([head[18], head[19]])
}

/// curl against the admin page (its certificate is the gateway's own,
/// self-signed): (status, body) after following redirects.
fn admin_get(port: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "-L", "--max-time", "30", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
#[ignore = "needs a cross-built gateway and qemu: run by scripts/cross smoke"]
fn a_cross_built_gateway_under_qemu_takes_mllp_and_astm_and_serves_its_admin_page() {
    let runner = std::env::var("ECKO_GATEWAY_RUNNER").unwrap_or_default();
    assert!(
        !runner.trim().is_empty(),
        "ECKO_GATEWAY_RUNNER is not set: scripts/cross smoke sets it and ECKO_GATEWAY_BIN"
    );
    let bin = ecko_tests::gateway_binary();
    let machine = elf_machine(&bin);
    assert!(
        machine == 183 || machine == 40,
        "{} is not an ARM binary (ELF machine {machine})",
        bin.display()
    );
    eprintln!("{} (ELF machine {machine}) under `{runner}`", bin.display());

    let dir = tempfile::tempdir().unwrap();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
    let env = default_on_free_ports(dir.path());
    let (mllp_port, astm_port, admin_port) = (&env[1].1, &env[2].1, &env[3].1);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut gw = Gateway::start(&default, &dir.path().join("gateway.log"), &env_refs);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(20));
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(20));

    // MLLP: an ORU^R01 is committed, then acknowledged.
    let ack = mllp_ack(mllp_port.parse().unwrap(), &hl7_sample("oru_r01_v251.hl7"));
    let msa = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_default();
    eprintln!("MLLP ACK: {msa}");
    assert_eq!(msa_code(&ack), "AA", "{ack:?}");

    // ASTM: python-astm's client sends one result message in one session.
    let m1 = message_file(dir.path(), "m1.astm", RESULT_1);
    analyzer(&["send", astm_port, &m1]);
    let journal = dir.path().join("var/journal.db");
    assert!(
        eventually(Duration::from_secs(20), || results(&journal).len() == 1),
        "the ASTM message did not reach the journal"
    );
    assert_eq!(results(&journal)[0].payload, RESULT_1.as_bytes());
    eprintln!("ASTM session: 1 result message journalled");

    // The admin page: a fresh gateway leads every page to its first-run
    // setup, and the service endpoint says it is alive.
    let (status, body) = admin_get(admin_port, "/");
    eprintln!("admin page: HTTP {status}");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("setup_code"), "{body}");
    let (status, body) = admin_get(admin_port, "/healthz");
    eprintln!("/healthz: HTTP {status} {}", body.trim());
    assert_eq!(status, 200, "{body}");

    // Both messages are archived by the default routes.
    let outbox = dir.path().join("var/outbox");
    assert!(eventually(Duration::from_secs(20), || {
        std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0) >= 2
    }));
    assert_eq!(gw.terminate(), Some(0));
}
