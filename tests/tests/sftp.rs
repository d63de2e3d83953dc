//! The `sftp` endpoint type end to end: the real binary against a real
//! OpenSSH server (`/usr/sbin/sshd` from Debian's `openssh-server`),
//! started by each test on 127.0.0.1 with its own host key, its own
//! authorized key and `ForceCommand internal-sftp`.
//!
//! - in: files picked up, journalled, then moved to `done_dir` (or deleted without one); a file
//!   growing between polls taken only once stable, whole; a `.part` file
//!   never taken; a file invalid in its charset moved to `error_dir` with
//!   the reason; a file whose move fails after the commit downloaded
//!   again and recognised as a duplicate, never stored twice;
//! - out: an upload appears under its final name only complete; a wrong
//!   host key refused with a clear error and nothing sent; a wrong
//!   password and a wrong key permanent with a clear error; a server down
//!   then up gets each message exactly once.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::sshd::{server, SshdFiles};
use ecko_tests::{eventually, file_names as names, free_port, Gateway};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn oru(control: &str, name: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|LAB|HOSP|HIS|HOSP|20260312101500||ORU^R01|{control}|P|2.5.1||||||UNICODE UTF-8\rPID|1||P1||"
    )
    .into_bytes();
    m.extend_from_slice(name);
    m.extend_from_slice(b"\rOBX|1|NM|GLU||5.4|mmol/L|||||F\r");
    m
}

/// The stored messages: (control id, payload).
fn stored(db: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(r) = JournalReader::open(db) else {
        return Vec::new();
    };
    r.message_ids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| r.message(id).ok().flatten())
        .map(|m| (m.control_id.clone().unwrap_or_default(), m.payload.clone()))
        .collect()
}

/// `done_dir` as given; `None`: journalled files are deleted.
fn inbound_config(d: &Path, port: u16, files: &SshdFiles, done_dir: Option<&Path>) -> PathBuf {
    let remote = d.join("remote");
    std::fs::create_dir_all(remote.join("in")).unwrap();
    std::fs::create_dir_all(remote.join("error")).unwrap();
    let path = d.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab-sftp"
type = "sftp"
host = "127.0.0.1"
port = {port}
user = "root"
private_key = "{key}"
host_key_sha256 = "{fp}"
path = "{r}/in"
pattern = "*"
interval = "300ms"
{done}
error_dir = "{r}/error"
message_type = "ORU^R01"
timeout = "5s"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/outbox"

[[route]]
name = "all"
from = ["lab-sftp"]
to = ["archive"]
"#,
            d = d.display(),
            r = remote.display(),
            key = files.user_key.display(),
            fp = files.fingerprint,
            done = done_dir.map_or(String::new(), |p| format!("done_dir = \"{}\"", p.display())),
        ),
    )
    .unwrap();
    path
}

#[test]
fn remote_files_are_journalled_then_moved_and_growing_or_part_files_wait() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let done = d.join("remote/done");
    std::fs::create_dir_all(&done).unwrap();
    let cfg = inbound_config(d, port, &files, Some(&done));
    let inbox = d.join("remote/in");
    std::fs::write(inbox.join("a.hl7"), oru("A1", b"Doe^Jane")).unwrap();
    std::fs::write(inbox.join("b.hl7.part"), oru("B1", b"Doe^Half")).unwrap();
    std::fs::write(inbox.join("bad.hl7"), oru("X1", b"M\xFCller^Hans")).unwrap();
    let _gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);

    // `c.hl7` grows every 100ms until told to stop: it changes between
    // any two polls.
    let stop = Arc::new(AtomicBool::new(false));
    let grown = {
        let path = inbox.join("c.hl7");
        let stop = stop.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).unwrap();
            let mut all = oru("C1", b"Doe^Long");
            f.write_all(&all).unwrap();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let line = b"NTE|1||still writing\r";
                f.write_all(line).unwrap();
                all.extend_from_slice(line);
            }
            all
        })
    };
    let db = d.join("journal.db");
    assert!(
        eventually(Duration::from_secs(20), || names(&done) == ["a.hl7"]),
        "done {:?}, in {:?}, stored {:?}",
        names(&done),
        names(&inbox),
        stored(&db).len()
    );
    // While it grows, over several more polls, `c.hl7` is neither stored
    // nor moved.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(stored(&db).iter().all(|(c, _)| c != "c.hl7"));
        assert!(names(&inbox).contains(&"c.hl7".to_string()));
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let whole = grown.join().unwrap();
    assert!(
        eventually(Duration::from_secs(20), || names(&done)
            == ["a.hl7", "c.hl7"]),
        "done {:?}",
        names(&done)
    );
    let mut messages = stored(&db);
    messages.sort();
    let controls: Vec<&str> = messages.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(controls, ["a.hl7", "c.hl7"]);
    assert_eq!(messages[0].1, oru("A1", b"Doe^Jane"));
    assert_eq!(messages[1].1, whole, "the grown file is stored whole");
    // The `.part` file is never taken; the bad one is set aside, byte for
    // byte, with the reason.
    assert_eq!(names(&inbox), ["b.hl7.part"]);
    let error = d.join("remote/error");
    assert_eq!(names(&error), ["bad.hl7", "bad.hl7.reason"]);
    assert_eq!(
        std::fs::read(error.join("bad.hl7")).unwrap(),
        oru("X1", b"M\xFCller^Hans")
    );
    let reason = std::fs::read_to_string(error.join("bad.hl7.reason")).unwrap();
    assert!(reason.starts_with("PID-5"), "{reason}");
    // And what was stored was delivered.
    assert!(eventually(Duration::from_secs(10), || names(
        &d.join("outbox")
    )
    .len()
        == 2));
}

#[test]
fn a_file_left_by_a_failed_move_after_the_commit_is_not_stored_twice() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    // `done_dir` does not exist yet: every move after the commit fails,
    // as a crash between the commit and the move would leave the file.
    let done = d.join("remote/done");
    let cfg = inbound_config(d, port, &files, Some(&done));
    let inbox = d.join("remote/in");
    std::fs::write(inbox.join("a.hl7"), oru("A1", b"Doe^Jane")).unwrap();
    let mut gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    let db = d.join("journal.db");
    assert!(eventually(Duration::from_secs(20), || stored(&db).len() == 1));
    gw.wait_for_log(
        "journalled, but cannot remove the remote file",
        0,
        Duration::from_secs(10),
    );
    // Polled and downloaded again several times meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&inbox), ["a.hl7"]);
    assert_eq!(stored(&db).len(), 1, "a duplicate, not a second message");
    std::fs::create_dir_all(&done).unwrap();
    assert!(eventually(Duration::from_secs(20), || names(&done) == ["a.hl7"]));
    assert!(names(&inbox).is_empty());
    assert_eq!(stored(&db).len(), 1);
    assert!(eventually(Duration::from_secs(10), || names(
        &d.join("outbox")
    )
    .len()
        == 1));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(&d.join("outbox")).len(), 1, "delivered once");
}

#[test]
fn without_done_dir_a_journalled_file_is_deleted() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let cfg = inbound_config(d, port, &files, None);
    let inbox = d.join("remote/in");
    std::fs::write(inbox.join("a.hl7"), oru("A1", b"Doe^Jane")).unwrap();
    let _gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    let db = d.join("journal.db");
    assert!(eventually(Duration::from_secs(20), || names(&inbox).is_empty()));
    assert_eq!(stored(&db), [("a.hl7".to_string(), oru("A1", b"Doe^Jane"))]);
}

/// A file-drop inbox routed to each of `sinks` (`name`, extra keys).
fn outbound_config(d: &Path, port: u16, sinks: &[(&str, String)]) -> PathBuf {
    std::fs::create_dir_all(d.join("inbox")).unwrap();
    std::fs::create_dir_all(d.join("remote/out")).unwrap();
    let mut text = format!(
        r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
poll_interval = "20ms"
"#,
        d = d.display()
    );
    for (name, keys) in sinks {
        text.push_str(&format!(
            r#"
[[endpoint]]
name = "{name}"
type = "sftp"
host = "127.0.0.1"
port = {port}
user = "root"
path = "{r}/out"
file_name = "{{{{ msg.control_id }}}}.out"
timeout = "3s"
retry = {{ initial = "200ms", max = "1s", jitter = 0.0 }}
{keys}
"#,
            r = d.join("remote").display(),
        ));
    }
    let to: Vec<String> = sinks.iter().map(|(n, _)| format!("{n:?}")).collect();
    text.push_str(&format!(
        "\n[[route]]\nname = \"all\"\nfrom = [\"inbox\"]\nto = [{}]\n",
        to.join(", ")
    ));
    let path = d.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn drop_file(d: &Path, name: &str, body: &[u8]) {
    let tmp = d.join("inbox").join(format!(".{name}"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, d.join("inbox").join(name)).unwrap();
}

/// The outbox rows of every message for `destination`.
fn outbox(db: &Path, destination: &str) -> Vec<ecko_gateway::journal::OutboxRecord> {
    let Ok(r) = JournalReader::open(db) else {
        return Vec::new();
    };
    r.message_ids()
        .unwrap_or_default()
        .into_iter()
        .flat_map(|id| r.outbox_of(id).unwrap_or_default())
        .filter(|o| o.destination == destination)
        .collect()
}

fn settled(
    db: &Path,
    destination: &str,
    count: usize,
    state: OutboxState,
) -> Vec<ecko_gateway::journal::OutboxRecord> {
    let mut rows = Vec::new();
    let ok = eventually(Duration::from_secs(30), || {
        rows = outbox(db, destination);
        rows.len() == count && rows.iter().all(|o| o.state == state)
    });
    assert!(ok, "{destination}: not {count} × {state:?}: {rows:?}");
    rows
}

/// The one row of `destination` once it has failed at least once and
/// waits, queued (never dead) with its error.
fn waiting(db: &Path, destination: &str) -> Vec<ecko_gateway::journal::OutboxRecord> {
    let mut rows = Vec::new();
    let ok = eventually(Duration::from_secs(30), || {
        rows = outbox(db, destination);
        rows.len() == 1
            && rows[0].attempts >= 1
            && rows[0].state == OutboxState::Queued
            && rows[0].last_error.is_some()
    });
    assert!(ok, "{destination}: not waiting after a failure: {rows:?}");
    rows
}

fn key_login(files: &SshdFiles) -> String {
    format!(
        "private_key = \"{}\"\nhost_key_sha256 = \"{}\"",
        files.user_key.display(),
        files.fingerprint
    )
}

#[test]
fn an_upload_appears_under_its_final_name_only_complete() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let cfg = outbound_config(d, port, &[("up", key_login(&files))]);
    let _gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    // 8 MiB: written in many SFTP packets, so a reader listing the
    // directory meanwhile would catch a file written in place half done.
    let body: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let out = d.join("remote/out");
    let watcher = {
        let out = out.clone();
        let len = body.len();
        std::thread::spawn(move || {
            let (mut partial, mut temp_seen) = (Vec::new(), false);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                for name in names(&out) {
                    if name.starts_with('.') {
                        temp_seen = true;
                        continue;
                    }
                    let size = std::fs::metadata(out.join(&name)).map_or(0, |m| m.len());
                    if size as usize != len {
                        partial.push((name, size));
                    } else {
                        return (partial, temp_seen);
                    }
                }
            }
            (partial, temp_seen)
        })
    };
    drop_file(d, "big.bin", &body);
    let db = d.join("journal.db");
    let rows = settled(&db, "up", 1, OutboxState::Delivered);
    let (partial, temp_seen) = watcher.join().unwrap();
    assert!(
        partial.is_empty(),
        "seen under the final name before complete: {partial:?}"
    );
    assert!(temp_seen, "the upload went through a temporary name");
    assert_eq!(names(&out), ["big.bin.out"]);
    assert_eq!(std::fs::read(out.join("big.bin.out")).unwrap(), body);
    assert_eq!(rows[0].attempts, 1);
}

#[test]
fn a_wrong_host_key_is_refused_with_a_clear_error_and_nothing_is_sent() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let keys = format!(
        "private_key = \"{}\"\nhost_key_sha256 = \"{}\"",
        files.user_key.display(),
        files.other_fingerprint
    );
    let cfg = outbound_config(d, port, &[("up", keys)]);
    let _gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    drop_file(d, "m1.hl7", &oru("M1", b"Doe^Jane"));
    let rows = waiting(&d.join("journal.db"), "up");
    let error = rows[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("presented the host key {}", files.fingerprint))
            && error.contains(&format!("not the pinned {}", files.other_fingerprint))
            && error.contains("nothing was sent"),
        "{error}"
    );
    assert!(names(&d.join("remote/out")).is_empty());
    // The server never saw a login attempt: no key, no password offered.
    let log = files.log();
    assert!(
        !log.contains("Accepted") && !log.contains("Failed"),
        "{log}"
    );
}

#[test]
fn a_wrong_password_or_key_says_so_clearly_and_the_messages_wait() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let pin = format!("host_key_sha256 = \"{}\"", files.fingerprint);
    let cfg = outbound_config(
        d,
        port,
        &[
            (
                "by-password",
                format!("{pin}\npassword = \"${{ECKO_SFTP_PASSWORD}}\""),
            ),
            (
                "by-key",
                format!("{pin}\nprivate_key = \"{}\"", files.stranger_key.display()),
            ),
        ],
    );
    let _gw = Gateway::start(
        &cfg,
        &d.join("gateway.log"),
        &[("ECKO_SFTP_PASSWORD", "not-the-password")],
    );
    drop_file(d, "m1.hl7", &oru("M1", b"Doe^Jane"));
    let db = d.join("journal.db");
    for (dest, method) in [("by-password", "password"), ("by-key", "private key")] {
        let rows = waiting(&db, dest);
        let error = rows[0].last_error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("refused the login of `root` by {method}"))
                && error.contains("the messages wait until this is fixed"),
            "{dest}: {error}"
        );
        assert!(!error.contains("not-the-password"), "{error}");
    }
    assert!(names(&d.join("remote/out")).is_empty());
}

#[test]
fn a_server_down_then_up_gets_each_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let files = SshdFiles::new(d);
    let port = free_port();
    let cfg = outbound_config(d, port, &[("up", key_login(&files))]);
    let _gw = Gateway::start(&cfg, &d.join("gateway.log"), &[]);
    let bodies: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| (format!("m{i}.hl7"), oru(&format!("M{i}"), b"Doe^Jane")))
        .collect();
    for (name, body) in &bodies {
        drop_file(d, name, body);
    }
    let db = d.join("journal.db");
    assert!(
        eventually(Duration::from_secs(20), || {
            let rows = outbox(&db, "up");
            rows.len() == 3
                && rows.iter().any(|o| o.attempts >= 2)
                && rows
                    .iter()
                    .all(|o| o.state != OutboxState::Delivered && o.state != OutboxState::Dead)
        }),
        "retried while the server is down: {:?}",
        outbox(&db, "up")
    );
    let first = outbox(&db, "up");
    assert!(
        first.iter().any(|o| o
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&format!("cannot connect to 127.0.0.1:{port}")))),
        "{first:?}"
    );
    let _sshd = files.run(port);
    settled(&db, "up", 3, OutboxState::Delivered);
    std::thread::sleep(Duration::from_millis(1500));
    let out = d.join("remote/out");
    assert_eq!(
        names(&out),
        ["m1.hl7.out", "m2.hl7.out", "m3.hl7.out"],
        "each once, no temporary left"
    );
    for (name, body) in &bodies {
        assert_eq!(
            &std::fs::read(out.join(format!("{name}.out"))).unwrap(),
            body
        );
    }
}
