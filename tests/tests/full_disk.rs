//! A gateway that crashed on a completely full disk comes up again: its
//! listeners answer with a negative acknowledgement instead of refusing the
//! connection, `/readyz` says why, and once space is freed it returns the
//! previous run's leases to the queue, takes messages again and delivers
//! everything it had accepted.
//!
//! The disk is a small tmpfs mounted by the test (the tests run as root).

use ecko_gateway::journal::JournalReader;
use ecko_tests::fhir::FhirServer;
use ecko_tests::{eventually, free_port, hl7_sample, http_exchange, mllp_ack_code, Gateway};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs for the full-disk test needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `name` until the file system says it is full.
    fn fill(&self, name: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(name))
            .unwrap();
        let block = vec![0u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                    break;
                }
            }
        }
        // What fits of a partial block goes too.
        while f.write(&[0u8]).is_ok_and(|n| n == 1) {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The sample ORU with its own control id, so that each is a new message.
fn oru(control_id: &str) -> Vec<u8> {
    let text = String::from_utf8(hl7_sample("oru_r01_v251.hl7")).unwrap();
    text.replacen("XN20260314093015001", control_id, 1)
        .into_bytes()
}

fn readyz(admin: u16) -> (u16, serde_json::Value) {
    let (status, _, body) = http_exchange(
        admin,
        "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    (status, serde_json::from_str(&body).unwrap_or_default())
}

fn counts(journal: &Path) -> (u64, u64, u64) {
    JournalReader::open(journal)
        .and_then(|r| r.counts())
        .map(|c| {
            c.iter().fold((0, 0, 0), |a, c| {
                (a.0 + c.queued, a.1 + c.leased, a.2 + c.delivered)
            })
        })
        .unwrap_or_default()
}

#[test]
fn a_gateway_killed_on_a_full_disk_restarts_refusing_and_resumes_by_itself_once_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "16m");
    let data = disk.dir.join("var");
    let journal = data.join("journal.db");
    let (mllp, admin, fhir) = (free_port(), free_port(), free_port());
    // The hub takes the connection and never answers: the gateway's
    // deliveries stay leased until it is killed.
    let black_hole = std::net::TcpListener::bind(("127.0.0.1", fhir)).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[journal]
path = "{data}/journal.db"
min_free_disk = "1 MiB"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "http://127.0.0.1:{fhir}/fhir/R4"
timeout = "60s"

[endpoint.retry]
initial = "200ms"
max = "1s"

[[route]]
name = "results"
from = ["lab"]
transform = "hl7v2-fhir"
to = ["hub"]

[admin]
listen = "127.0.0.1:{admin}"
tls = false
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("log");

    let gw = Gateway::start(&config, &log, &[]);
    for id in ["FULL-1", "FULL-2", "FULL-3"] {
        assert_eq!(mllp_ack_code(mllp, &oru(id)), "AA");
    }
    assert!(
        eventually(Duration::from_secs(10), || counts(&journal).1 > 0),
        "no delivery was leased"
    );
    disk.fill("filler");
    gw.kill();
    // Whatever the killed process left free is taken too.
    disk.fill("filler-2");
    let leased_at_the_crash = counts(&journal).1;
    assert!(leased_at_the_crash > 0);

    let from = std::fs::metadata(&log).unwrap().len();
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log(
        "the disk holding the journal is full",
        from,
        Duration::from_secs(5),
    );
    let refused = mllp_ack_code(mllp, &oru("FULL-4"));
    assert!(
        refused == "AE" || refused == "AR",
        "a full disk answers with a negative acknowledgement, not {refused}"
    );
    let (status, ready) = readyz(admin);
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["journal"]["status"], "failing", "{ready}");
    assert!(
        ready["journal"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("disk is full")),
        "{ready}"
    );
    assert_eq!(
        counts(&journal).1,
        leased_at_the_crash,
        "nothing is leased again while the old leases cannot be returned"
    );

    drop(black_hole);
    let server = FhirServer::start(fhir, &[]);
    std::fs::remove_file(disk.dir.join("filler")).unwrap();
    std::fs::remove_file(disk.dir.join("filler-2")).unwrap();
    gw.wait_for_log(
        "the journal is writable again",
        from,
        Duration::from_secs(10),
    );
    assert!(
        eventually(Duration::from_secs(10), || mllp_ack_code(
            mllp,
            &oru("FULL-4")
        ) == "AA"),
        "messages are taken again once space returns"
    );
    assert!(
        eventually(Duration::from_secs(60), || counts(&journal) == (0, 0, 4)),
        "every accepted message is delivered: {:?} (queued, leased, delivered)",
        counts(&journal)
    );
    let (status, ready) = readyz(admin);
    assert_eq!(ready["journal"]["status"], "ok", "{status} {ready}");
    drop(server);
    drop(gw);
}
