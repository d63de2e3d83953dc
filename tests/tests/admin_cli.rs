//! `ecko-gateway user add`: the first administrator without the web page.

use std::io::Write;
use std::process::{Command, Stdio};

fn user_add(config: &std::path::Path, role: &str, name: &str, password: &str) -> (bool, String) {
    let mut child = Command::new(ecko_tests::gateway_binary())
        .args(["user", "add", "--config"])
        .arg(config)
        .args(["--role", role, name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ecko-gateway");
    // A refused argument ends the process before it reads: a closed pipe
    // here is part of that answer, not a failure of the test.
    let _ = writeln!(child.stdin.take().expect("stdin"), "{password}");
    let out = child.wait_with_output().expect("wait");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn user_add_creates_the_journal_and_an_admin_and_refuses_weak_passwords_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!("[journal]\npath = \"{}/j.db\"\n", dir.path().display()),
    )
    .unwrap();
    let (ok, text) = user_add(&config, "admin", "alice", "a long enough pass");
    assert!(ok, "{text}");
    assert!(text.contains("alice added with role admin"));
    let (ok, text) = user_add(&config, "viewer", "bob", "short");
    assert!(!ok && text.contains("at least 10 characters"), "{text}");
    let (ok, text) = user_add(&config, "viewer", "alice", "a long enough pass");
    assert!(!ok && text.contains("exists already"), "{text}");
    let (ok, _) = user_add(&config, "root", "carl", "a long enough pass");
    assert!(!ok, "an unknown role is refused");
}
