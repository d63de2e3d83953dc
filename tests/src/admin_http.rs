//! The admin page over plain HTTP, as a browser without script uses it:
//! a login's session cookie, pages with it, forms posted with its CSRF
//! token.

use crate::http_exchange;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Adds an administrator with `ecko-gateway user add`, the password on
/// its standard input.
pub fn user_add(config: &Path, name: &str, password: &str) {
    let mut child = Command::new(crate::gateway_binary())
        .args(["user", "add", "--config"])
        .arg(config)
        .args(["--role", "admin", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs in; the session cookie (`name=value`).
pub fn login(port: u16, name: &str, password: &str) -> String {
    let body = format!("name={name}&password={}", password.replace(' ', "+"));
    let (status, head, _) = http_exchange(
        port,
        &format!(
            "POST /login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        status == 303 || status == 302,
        "login {name}: {status}\n{head}"
    );
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().split(';').next().unwrap_or("").to_string())
        })
        .expect("a session cookie")
}

/// `GET path` with the session; (status, body).
pub fn get(port: u16, path: &str, cookie: &str) -> (u16, String) {
    let (status, _, body) = http_exchange(
        port,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        ),
    );
    (status, body)
}

/// A form posted with the session; (status, head, body).
pub fn post_form(port: u16, path: &str, cookie: &str, body: &str) -> (u16, String, String) {
    http_exchange(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The CSRF token a page carries.
pub fn csrf_of(page: &str) -> String {
    let at = page
        .find("<meta name=\"csrf\" content=\"")
        .expect("csrf meta")
        + 27;
    page[at..].split('"').next().unwrap().to_string()
}

/// A JSON body sent with `method` with the session and its CSRF token;
/// (status, body).
pub fn send_json(
    port: u16,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: &str,
    json: &str,
) -> (u16, String) {
    let (status, _, body) = http_exchange(
        port,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: gw\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    );
    (status, body)
}
