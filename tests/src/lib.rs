//! End-to-end test support: start the real `ecko-gateway` binary on a
//! configuration written by the test, wait for it, stop or kill it.

pub mod admin_http;
pub mod fhir;
pub mod firmware;
pub mod mqtt;
pub mod pacs;
pub mod rest_standin;
pub mod sshd;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The gateway binary built from this workspace (`cargo build --bins`), or
/// the one named by `ECKO_GATEWAY_BIN`.
pub fn gateway_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ECKO_GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/ecko-gateway
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ecko-gateway"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

/// A command that runs the gateway binary: the binary itself, or, when
/// `ECKO_GATEWAY_RUNNER` is set (for example `qemu-aarch64 -L
/// /usr/aarch64-linux-gnu` for a cross-built one), that command with the
/// binary as its first argument.
pub fn gateway_command() -> Command {
    let runner = std::env::var("ECKO_GATEWAY_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(gateway_binary());
            cmd
        }
        None => Command::new(gateway_binary()),
    }
}

/// A running gateway process; killed when dropped.
pub struct Gateway {
    child: Child,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts `ecko-gateway run --config <config>` with its log in `log`,
    /// and waits until it reports that it is running.
    pub fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Gateway {
        let started = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut gw = Self::spawn(config, log, env);
        gw.wait_for_log("gateway running", started, Duration::from_secs(10));
        gw
    }

    /// Starts `ecko-gateway run --config <config>` without waiting for it to
    /// be ready: for killing it while it opens the journal and its ports.
    pub fn spawn(config: &Path, log: &Path, env: &[(&str, &str)]) -> Gateway {
        Self::spawn_command(gateway_command(), config, log, env)
    }

    /// Like [`Gateway::start`], with the binary run by `wrapper`.
    pub fn start_under(wrapper: &[&str], config: &Path, log: &Path) -> Gateway {
        let started = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut gw = Self::spawn_under(wrapper, config, log, &[]);
        gw.wait_for_log("gateway running", started, Duration::from_secs(10));
        gw
    }

    /// Like [`Gateway::spawn`], with the binary run by `wrapper` (its
    /// program and arguments, e.g. `setpriv` dropping capabilities).
    pub fn spawn_under(
        wrapper: &[&str],
        config: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Gateway {
        let (program, args) = wrapper.split_first().expect("a wrapper program");
        let mut cmd = Command::new(program);
        cmd.args(args).arg(gateway_binary());
        Self::spawn_command(cmd, config, log, env)
    }

    fn spawn_command(mut cmd: Command, config: &Path, log: &Path, env: &[(&str, &str)]) -> Gateway {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .env("ECKO_LOG", "info,ecko_gateway=debug")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Gateway {
            child: cmd.spawn().expect("start ecko-gateway"),
            log: log.to_path_buf(),
        }
    }

    /// Waits until the log, from byte `from` on, contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, from: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&self.log) {
                let _ = f.read_to_string(&mut text);
            }
            let tail = text.get(from as usize..).unwrap_or("");
            if tail.contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ecko-gateway exited with {status} before `{needle}`:\n{tail}");
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within {timeout:?}:\n{tail}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a graceful exit; returns its exit code.
    pub fn terminate(self) -> Option<i32> {
        self.stop_with(nix::sys::signal::Signal::SIGTERM)
    }

    /// SIGINT (Ctrl-C), then wait for a graceful exit; returns its exit code.
    pub fn interrupt(self) -> Option<i32> {
        self.stop_with(nix::sys::signal::Signal::SIGINT)
    }

    fn stop_with(self, signal: nix::sys::signal::Signal) -> Option<i32> {
        use nix::sys::signal::kill;
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.pid()), signal);
        self.wait_for_exit()
    }

    /// Waits up to 20 s for the process to end; its exit code, `None` when a
    /// signal killed it.
    pub fn wait_for_exit(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ecko-gateway did not stop within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Where `scripts/install-peers` put the third-party peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("ECKO_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ecko-peers")
        })
}

/// The Python interpreter of one of the peers' virtual environments.
pub fn peer_python(venv: &str) -> PathBuf {
    let python = peers_dir().join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-peers (scripts/test does)",
        python.display()
    );
    python
}

/// A command-line tool installed into a peer virtual environment.
pub fn peer_tool(venv: &str, tool: &str) -> PathBuf {
    let path = peers_dir().join(venv).join("bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-peers",
        path.display()
    );
    path
}

/// A helper script of this crate under `tests/python`.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// The names in `dir`, sorted; none when it cannot be read.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sample messages shared with the gateway's unit tests.
pub fn hl7_sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/src/hl7/testdata")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Sends one message over MLLP to 127.0.0.1:`port` and returns the code of
/// its acknowledgement (MSA-1: `AA`, `AE`, `AR`, ...).
pub fn mllp_ack_code(port: u16, message: &[u8]) -> String {
    msa_code(&mllp_ack(port, message))
}

/// MSA-1 of an acknowledgement's text; empty when it has no MSA segment.
pub fn msa_code(ack: &str) -> String {
    ack.split('\r')
        .find_map(|seg| seg.trim_start_matches('\x0b').strip_prefix("MSA|"))
        .and_then(|msa| msa.split('|').next())
        .unwrap_or_default()
        .to_string()
}

/// Sends one message over MLLP to 127.0.0.1:`port` and returns its
/// acknowledgement as text, without the MLLP framing.
pub fn mllp_ack(port: u16, message: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    mllp_exchange(&mut s, message)
}

/// Sends one message on an open MLLP connection and returns its
/// acknowledgement as text, without the MLLP framing.
pub fn mllp_exchange(s: &mut std::net::TcpStream, message: &[u8]) -> String {
    use std::io::Write;
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message);
    framed.extend_from_slice(b"\x1c\r");
    s.write_all(&framed).expect("send");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"\x1c\r") {
        let n = s.read(&mut buf).expect("read the ACK");
        assert!(n > 0, "closed before the ACK");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out)
        .trim_start_matches('\x0b')
        .trim_end_matches("\x1c\r")
        .to_string()
}

/// Waits until something listens on `port` (127.0.0.1).
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    eventually(timeout, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

/// The environment that puts the shipped default configuration
/// (`config/gateway.toml`) on free ports with its data under `dir/var`:
/// `ECKO_DATA_DIR`, `ECKO_MLLP_PORT`, `ECKO_ASTM_PORT`, `ECKO_ADMIN_PORT`, in
/// that order.
pub fn default_on_free_ports(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("ECKO_DATA_DIR", dir.join("var").display().to_string()),
        ("ECKO_MLLP_PORT", free_port().to_string()),
        ("ECKO_ASTM_PORT", free_port().to_string()),
        ("ECKO_ADMIN_PORT", free_port().to_string()),
    ]
}

/// A gateway in `d` whose every delivery goes dead: a file-drop inbox
/// (`d/inbox`) routed to a file sink whose directory `d/blocked` is a file,
/// with one attempt allowed. Makes both directories' parents ready.
pub fn dead_letter_config(d: &Path) -> String {
    std::fs::create_dir_all(d.join("inbox")).unwrap();
    std::fs::write(d.join("blocked"), b"not a directory").unwrap();
    format!(
        r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
poll_interval = "20ms"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/blocked/out"
retry = {{ max_attempts = 1 }}

[[route]]
name = "all"
from = ["inbox"]
to = ["archive"]
"#,
        d = d.display()
    )
}

/// One HTTP/1.1 exchange over plain TCP on 127.0.0.1: `request` is the
/// whole request (it must ask `Connection: close`); (status, head, body),
/// the body un-chunked when the answer was chunked.
pub fn http_exchange(port: u16, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
