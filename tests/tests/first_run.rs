//! The first run of the real binary: with no user, the gateway makes a
//! one-time setup code, says it in its log (standard error, the console),
//! keeps it in a 0600 file beside the journal and again after a restart,
//! `ecko-gateway setup-code` prints it, and the admin page's setup takes
//! only that code — and none once the first administrator exists.

use ecko_tests::{free_port, gateway_binary, http_exchange, Gateway};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One form POST over plain HTTP on 127.0.0.1; (status, head, body).
fn post_form(port: u16, path: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    http_exchange(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// `ecko-gateway setup-code --config <config>`: (success, stdout, stderr).
fn setup_code_command(config: &Path) -> (bool, String, String) {
    let out = Command::new(gateway_binary())
        .args(["setup-code", "--config"])
        .arg(config)
        .output()
        .expect("run ecko-gateway setup-code");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn setup_form<'a>(code: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("setup_code", code),
        ("name", "admin"),
        ("password", password),
        ("confirm", password),
    ]
}

#[test]
fn the_first_run_setup_code_is_logged_kept_0600_printed_by_the_cli_and_the_only_way_in() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let config = d.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = \"{}/journal.db\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntls = false\n",
            d.display()
        ),
    )
    .unwrap();
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));

    // The file beside the journal, owner-only, holds the code the log says.
    let file = d.join("setup-code");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let code = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(code.len(), 14, "{code}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("setup_code={code}"))
            || text.contains(&format!("setup_code=\"{code}\"")),
        "the log line carries the code:\n{text}"
    );
    assert!(
        text.contains(&format!("first-run setup code: {code}")),
        "the console block:\n{text}"
    );
    let (ok, stdout, stderr) = setup_code_command(&config);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, format!("{code}\n"));

    // A restart before the setup keeps the code someone wrote down.
    assert_eq!(gw.terminate(), Some(0));
    let from = std::fs::metadata(&log).unwrap().len();
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log(
        &format!("first-run setup code: {code}"),
        from,
        Duration::from_secs(10),
    );
    gw.wait_for_log("admin page listening", from, Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        code,
        "the same code after a restart"
    );

    // Only the code lets the setup through.
    let password = "first run secret";
    for given in ["", "AAAA-BBBB-CCCC"] {
        let (status, _, body) = post_form(port, "/setup", &setup_form(given, password));
        assert_eq!(status, 401, "{given:?}: {body}");
        assert!(body.contains("Setup code: "), "{body}");
    }
    let (status, head, body) = post_form(port, "/setup", &setup_form(&code, password));
    assert_eq!(status, 303, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("location: /login"),
        "{head}"
    );

    // Consumed: the file is gone, the command says setup is done, and the
    // code lets nobody else in.
    assert!(!file.exists());
    let (ok, stdout, stderr) = setup_code_command(&config);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("setup is done"), "{stderr}");
    let (status, _, _) = post_form(port, "/setup", &setup_form(&code, password));
    assert_eq!(status, 403);
    let (status, _, body) = post_form(port, "/login", &[("name", "admin"), ("password", password)]);
    assert_eq!(status, 303, "the administrator logs in: {body}");
    assert_eq!(gw.terminate(), Some(0));
}
