//! Floods of idle, trickling and slow connections against the real binary:
//! the MLLP listener, the ASTM TCP server and the admin page keep serving
//! a real sender from another address, and the login throttle slows the
//! attacker's address only.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 …), the real
//! senders from 127.0.0.1: on Linux the whole of 127/8 is the loopback.

mod astm_common;

use ecko_tests::admin_http::user_add;
use ecko_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A TCP connection to 127.0.0.1:`port` from `source`.
fn connect_from(source: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )?;
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )?;
    Ok(TcpStream::from(fd))
}

fn attacker(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + n)
}

/// Connections that each send `first`, then one byte a second, from
/// `addresses` × `per_address` sources; a connection the gateway closes is
/// opened again (the attacker keeps trying). Stop with [`Trickle::stop`].
struct Trickle {
    stop: Arc<AtomicBool>,
    /// How long each closed connection lived.
    lifetimes: Arc<Mutex<Vec<Duration>>>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    fn start(port: u16, addresses: u8, per_address: usize, first: &'static [u8]) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let lifetimes = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), lifetimes.clone());
        let thread = std::thread::spawn(move || {
            let open = |source| -> Option<(TcpStream, Instant, Ipv4Addr)> {
                let mut c = connect_from(source, port).ok()?;
                c.write_all(first).ok()?;
                c.set_nonblocking(true).ok()?;
                Some((c, Instant::now(), source))
            };
            let mut conns: Vec<_> = (0..addresses)
                .flat_map(|a| std::iter::repeat_n(attacker(a), per_address))
                .filter_map(open)
                .collect();
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                let mut next = Vec::with_capacity(conns.len());
                for (mut c, since, source) in conns.drain(..) {
                    let mut buf = [0u8; 1024];
                    let closed = match c.read(&mut buf) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    };
                    if closed || c.write_all(b"x").is_err() {
                        l.lock().unwrap().push(since.elapsed());
                        next.extend(open(source));
                    } else {
                        next.push((c, since, source));
                    }
                }
                conns = next;
            }
        });
        Trickle {
            stop,
            lifetimes,
            thread: Some(thread),
        }
    }

    fn lifetimes(&self) -> Vec<Duration> {
        self.lifetimes.lock().unwrap().clone()
    }

    fn stop(mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lifetimes()
    }
}

fn mllp_config(dir: &Path, port: u16, lab_settings: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{port}"
{lab_settings}

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/archive"

[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^*"]
to = ["archive"]
"#,
        d = dir.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn oru(control_id: &str) -> String {
    String::from_utf8(hl7_sample("oru_r01_v251.hl7"))
        .unwrap()
        .replace("XN20260314093015001", control_id)
}

/// python-hl7's `mllp_send` from 127.0.0.1: whether it got `AA`, and how
/// long it took.
fn real_sender(dir: &Path, port: u16, control_id: &str) -> (bool, Duration, String) {
    let file = dir.join(format!("{control_id}.hl7"));
    std::fs::write(&file, oru(control_id).replace('\r', "\n")).unwrap();
    let started = Instant::now();
    let out = Command::new(peer_tool("venv-hl7", "mllp_send"))
        .args(["--loose", "-p", &port.to_string(), "-f"])
        .arg(&file)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let aa = text.contains(&format!("MSA|AA|{control_id}"));
    (aa, took, text)
}

fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

#[test]
fn a_real_sender_gets_aa_while_64_idle_sockets_from_one_address_are_open() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = mllp_config(tmp.path(), port, "");
    let log = tmp.path().join("log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    let idle: Vec<TcpStream> = (0..64)
        .filter_map(|_| connect_from(attacker(0), port).ok())
        .collect();
    assert_eq!(idle.len(), 64, "the kernel accepted every socket");
    std::thread::sleep(Duration::from_millis(500));
    for i in 1..=3 {
        let (aa, took, text) = real_sender(tmp.path(), port, &format!("IDLE{i}"));
        eprintln!("idle flood: real sender {i}: AA = {aa} in {took:?}");
        assert!(
            aa,
            "the real sender is served beside 64 idle sockets: {text}"
        );
    }
    assert!(
        log_count(&log, "reason=\"per_address_cap\"") >= 56,
        "each refusal is logged with its reason"
    );
    drop(idle);
}

#[test]
fn a_real_sender_gets_aa_while_200_connections_trickle_one_byte_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = mllp_config(tmp.path(), port, "");
    let log = tmp.path().join("log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    // 25 addresses × 8 connections, each inside a started frame.
    let trickle = Trickle::start(port, 25, 8, b"\x0bMSH|");
    std::thread::sleep(Duration::from_secs(2));
    let mut times = Vec::new();
    for i in 1..=4 {
        let (aa, took, text) = real_sender(tmp.path(), port, &format!("TRICKLE{i}"));
        eprintln!("trickle flood: real sender {i}: AA = {aa} in {took:?}");
        assert!(aa, "the real sender is served beside 200 trickles: {text}");
        times.push(took);
        std::thread::sleep(Duration::from_secs(3));
    }
    let lifetimes = trickle.stop();
    let cut: Vec<_> = lifetimes
        .iter()
        .filter(|d| **d >= Duration::from_secs(5))
        .collect();
    let longest = lifetimes.iter().max().copied().unwrap_or_default();
    eprintln!(
        "trickle flood: {} connections closed, {} after at least 5 s, the longest lived {longest:?}; real sender {times:?}",
        lifetimes.len(),
        cut.len()
    );
    assert!(
        longest < Duration::from_secs(13),
        "no trickle outlives the rate window by much: {longest:?}"
    );
    assert!(log_count(&log, "reason=\"too_slow\"") > 0);
}

#[test]
fn a_started_frame_is_cut_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    // The rate check off, so the frame deadline alone cuts.
    let cfg = mllp_config(
        tmp.path(),
        port,
        "frame_timeout = \"3s\"\nmin_data_rate = 0",
    );
    let log = tmp.path().join("log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    let mut c = connect_from(attacker(0), port).unwrap();
    let message = oru("HALF1");
    let started = Instant::now();
    c.write_all(b"\x0b").unwrap();
    c.write_all(&message.as_bytes()[..message.len() / 2])
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let read = c.read(&mut buf);
    let took = started.elapsed();
    eprintln!("frame deadline 3 s: cut after {took:?}");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(eventually(Duration::from_secs(2), || log_count(
        &log,
        "reason=\"frame_deadline\""
    ) == 1));
}

#[test]
fn an_analyzer_is_acknowledged_while_idle_and_trickling_sockets_hold_the_astm_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = astm_common::free_port();
    let endpoint = format!(
        "[[endpoint]]\nname = \"astm\"\ntype = \"astm-tcp\"\naddress = \"127.0.0.1:{port}\"\nrate_window = \"5s\""
    );
    let config = astm_common::config(dir.path(), &endpoint);
    let log = dir.path().join("gw.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));
    // 8 idle sockets from one address, 8 trickling an ENQ and a frame one
    // byte a second from another: the default 16 connections are taken.
    let idle: Vec<TcpStream> = (0..8)
        .filter_map(|_| connect_from(attacker(5), port).ok())
        .collect();
    let trickle = Trickle::start(port, 1, 8, b"\x05\x021H|");
    std::thread::sleep(Duration::from_secs(1));
    let m1 = astm_common::message_file(dir.path(), "m1.astm", astm_common::RESULT_1);
    let started = Instant::now();
    astm_common::analyzer(&["send", &port.to_string(), &m1]);
    let took = started.elapsed();
    eprintln!("ASTM flood: the analyzer's message acknowledged in {took:?}");
    std::thread::sleep(Duration::from_secs(6));
    let lifetimes = trickle.stop();
    eprintln!("ASTM flood: trickles closed after {lifetimes:?}");
    assert!(
        !lifetimes.is_empty() && lifetimes.iter().all(|d| *d < Duration::from_secs(8)),
        "trickles are cut at the 5 s rate window: {lifetimes:?}"
    );
    assert!(log_count(&log, "reason=\"too_slow\"") > 0);
    drop(idle);
    assert_eq!(gw.terminate(), Some(0));
    assert_eq!(
        astm_common::results(&dir.path().join("journal.db")).len(),
        1,
        "the analyzer's results are stored"
    );
}

fn admin_config(dir: &Path, port: u16, admin: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
[journal]
path = "{d}/journal.db"

[admin]
listen = "127.0.0.1:{port}"
tls = false
{admin}
"#,
        d = dir.display()
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One HTTP exchange from `source`: (status, body, how long it took).
fn http_from(source: Ipv4Addr, port: u16, request: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = connect_from(source, port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body, took)
}

#[test]
fn the_admin_page_answers_while_slowloris_header_trickles_are_open() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = admin_config(tmp.path(), port, "");
    let log = tmp.path().join("log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    // 4 addresses × 16: the page's default 64 connections, all trickling
    // headers that never end.
    let trickle = Trickle::start(port, 4, 16, b"GET / HTTP/1.1\r\nHost: gw\r\nX-Pad: ");
    std::thread::sleep(Duration::from_secs(2));
    let request = "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    for i in 1..=3 {
        let (status, _, took) = http_from(Ipv4Addr::LOCALHOST, port, request);
        eprintln!("slowloris: /healthz {i} answered {status} in {took:?}");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(6));
    let lifetimes = trickle.stop();
    let longest = lifetimes.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowloris: {} connections closed, the longest lived {longest:?}",
        lifetimes.len()
    );
    assert!(
        lifetimes.iter().any(|d| *d >= Duration::from_secs(9)) && longest < Duration::from_secs(13),
        "header trickles are cut at the 10 s header timeout: {lifetimes:?}"
    );
}

fn login(from: Ipv4Addr, port: u16, name: &str, password: &str) -> (u16, String, Duration) {
    let body = format!("name={name}&password={password}");
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_from(from, port, &request)
}

#[test]
fn a_login_from_another_address_succeeds_while_an_attackers_address_is_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = admin_config(tmp.path(), port, "");
    let log = tmp.path().join("log");
    let _gw = Gateway::start(&cfg, &log, &[]);
    let password = "a long admin secret";
    user_add(&cfg, "ann", password);
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(login(attacker(0), port, "ann", "guess").0);
    }
    assert_eq!(answers, [401, 401, 401, 429], "throttled after 3 failures");
    let (status, _, took) = login(attacker(0), port, "ann", password);
    assert_eq!(
        status, 429,
        "the right password waits too, from that address"
    );
    let (status, _, took_ok) = login(Ipv4Addr::LOCALHOST, port, "ann", password);
    eprintln!(
        "throttle: refused in {took:?} from the attacker, logged in in {took_ok:?} from 127.0.0.1"
    );
    assert_eq!(status, 303, "the administrator's own address logs in");
}

#[test]
fn an_unknown_user_and_a_wrong_password_get_the_same_answer_in_the_same_time() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = admin_config(tmp.path(), port, "");
    let _gw = Gateway::start(&cfg, &tmp.path().join("log"), &[]);
    user_add(&cfg, "ann", "a long admin secret");
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    // Alternating, one failure per name and address: never throttled.
    for i in 0..6u8 {
        let (s1, b1, t1) = login(attacker(2 * i), port, "ann", "not-it");
        let (s2, b2, t2) = login(attacker(2 * i + 1), port, "bob", "not-it");
        assert_eq!(
            (s1, b1.replace("ann", "NAME")),
            (s2, b2.replace("bob", "NAME"))
        );
        assert_eq!(s1, 401);
        wrong.push(t1);
        unknown.push(t2);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (w, u) = (median(&mut wrong), median(&mut unknown));
    eprintln!("login timing: wrong password median {w:?}, unknown user median {u:?}");
    let ratio = w.as_secs_f64() / u.as_secs_f64();
    assert!((0.5..2.0).contains(&ratio), "wrong {w:?} vs unknown {u:?}");
}
