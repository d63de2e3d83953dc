//! Whoever restarts the process when it stops answering: the service
//! manager (systemd's notify socket) or a hardware watchdog
//! (`/dev/watchdog`).
//!
//! The gateway says when it is ready, keeps the watchdog fed only while its
//! own tasks make progress (its choice, not this module's), says what it is
//! doing in one status line, and says when it stops on purpose, so that a
//! stop is not taken for a hang.
//!
//! - [`SystemdNotify`] writes `READY=1`, `WATCHDOG=1`, `STATUS=…`,
//!   `EXTEND_TIMEOUT_USEC=…`, `RELOADING=1` and `STOPPING=1` datagrams to
//!   `$NOTIFY_SOCKET`; its timeout is `$WATCHDOG_USEC`.
//! - [`DevWatchdog`] opens a watchdog device, sets its timeout with
//!   `WDIOC_SETTIMEOUT`, feeds it by writing to it, and disarms it on an
//!   orderly stop with the magic close (`V`, then close). It has no notion
//!   of ready or status; those are no-ops.
//! - [`SimWatchdog`] records what it was told, for tests.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What kind of failure talking to the watchdog was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogErrorKind {
    /// No such device, or no permission to open it.
    Unavailable,
    /// The device does not take the request (not a watchdog, or a timeout
    /// it cannot do).
    Unsupported,
    Io,
}

#[derive(Debug, thiserror::Error)]
#[error("watchdog {what}: {source}")]
pub struct WatchdogError {
    pub kind: WatchdogErrorKind,
    what: String,
    #[source]
    source: std::io::Error,
}

impl WatchdogError {
    fn new(kind: WatchdogErrorKind, what: impl Into<String>, source: std::io::Error) -> Self {
        Self {
            kind,
            what: what.into(),
            source,
        }
    }
}

/// One watcher of the process.
pub trait Watchdog: Send + Sync + 'static {
    /// The longest the process may go without [`Watchdog::keepalive`]
    /// before the watcher acts; `None` when nothing watches.
    fn timeout(&self) -> Option<Duration>;
    /// Start-up is complete.
    fn ready(&self) -> Result<(), WatchdogError>;
    /// The process is alive and making progress.
    fn keepalive(&self) -> Result<(), WatchdogError>;
    /// One line on what the process is doing now (`systemctl status`).
    fn status(&self, line: &str) -> Result<(), WatchdogError>;
    /// Start-up or shutdown needs `by` more than the watcher allows.
    fn extend_timeout(&self, by: Duration) -> Result<(), WatchdogError>;
    /// The configuration is being read again; [`Watchdog::ready`] follows.
    fn reloading(&self) -> Result<(), WatchdogError>;
    /// The process stops on purpose: what follows is not a hang.
    fn stopping(&self) -> Result<(), WatchdogError>;
}

/// The service manager's notify socket (`$NOTIFY_SOCKET`). Without one
/// every call does nothing, so the same binary runs outside systemd.
#[derive(Debug, Clone)]
pub struct SystemdNotify {
    timeout: Option<Duration>,
}

impl SystemdNotify {
    /// Reads `$WATCHDOG_USEC` (and `$WATCHDOG_PID`: a watchdog meant for
    /// another process is not ours) from the environment.
    pub fn from_env() -> Self {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self {
            timeout: watchdog_timeout(usec.as_deref(), pid.as_deref(), std::process::id()),
        }
    }

    fn send(&self, what: &str, states: &[sd_notify::NotifyState<'_>]) -> Result<(), WatchdogError> {
        sd_notify::notify(false, states).map_err(|e| WatchdogError::new(kind_of(&e), what, e))
    }
}

/// The watchdog timeout systemd asks of process `own_pid`, from the values
/// of `WATCHDOG_USEC` and `WATCHDOG_PID`; as `sd_watchdog_enabled(3)`, an
/// absent `WATCHDOG_PID` means the main process, which is us.
fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(p)) if p == own_pid => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

fn usec(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Watchdog for SystemdNotify {
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn ready(&self) -> Result<(), WatchdogError> {
        self.send("READY=1", &[sd_notify::NotifyState::Ready])
    }
    fn keepalive(&self) -> Result<(), WatchdogError> {
        self.send("WATCHDOG=1", &[sd_notify::NotifyState::Watchdog])
    }
    fn status(&self, line: &str) -> Result<(), WatchdogError> {
        // One line: a newline would start another assignment.
        let line = line.replace(['\n', '\r'], " ");
        self.send("STATUS=", &[sd_notify::NotifyState::Status(&line)])
    }
    fn extend_timeout(&self, by: Duration) -> Result<(), WatchdogError> {
        self.send(
            "EXTEND_TIMEOUT_USEC=",
            &[sd_notify::NotifyState::ExtendTimeoutUsec(usec(by))],
        )
    }
    fn reloading(&self) -> Result<(), WatchdogError> {
        // systemd (Type=notify-reload) matches RELOADING=1 with the
        // monotonic time it was sent at.
        let mut states = vec![sd_notify::NotifyState::Reloading];
        states.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        self.send("RELOADING=1", &states)
    }
    fn stopping(&self) -> Result<(), WatchdogError> {
        self.send("STOPPING=1", &[sd_notify::NotifyState::Stopping])
    }
}

fn kind_of(e: &std::io::Error) -> WatchdogErrorKind {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            WatchdogErrorKind::Unavailable
        }
        _ if e.raw_os_error() == Some(libc::ENOTTY) || e.raw_os_error() == Some(libc::EINVAL) => {
            WatchdogErrorKind::Unsupported
        }
        _ => WatchdogErrorKind::Io,
    }
}

mod ioctl {
    // <linux/watchdog.h>: #define WDIOC_SETTIMEOUT _IOWR(WATCHDOG_IOCTL_BASE, 6, int)
    nix::ioctl_readwrite!(set_timeout, b'W', 6, libc::c_int);
}

/// A watchdog device (`/dev/watchdog`, `/dev/watchdog0`): armed from the
/// moment it is opened, it resets the machine unless it is written to
/// within its timeout.
#[derive(Debug)]
pub struct DevWatchdog {
    path: PathBuf,
    device: Mutex<Option<File>>,
    timeout: Duration,
}

impl DevWatchdog {
    /// Opens the device and asks for `timeout` (whole seconds); the device
    /// may round it, and the timeout it took is the one reported.
    pub fn open(path: &Path, timeout: Duration) -> Result<DevWatchdog, WatchdogError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| WatchdogError::new(kind_of(&e), format!("{}", path.display()), e))?;
        let mut secs = libc::c_int::try_from(timeout.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: the descriptor is open for the duration of the call and
        // `secs` is a valid int the kernel reads and writes back.
        unsafe { ioctl::set_timeout(file.as_raw_fd(), &mut secs) }.map_err(|errno| {
            let e = std::io::Error::from(errno);
            // The device stays armed unless told it may stop: say so before
            // giving it up.
            let _ = (&file).write_all(b"V");
            WatchdogError::new(
                kind_of(&e),
                format!("{}: WDIOC_SETTIMEOUT", path.display()),
                e,
            )
        })?;
        Ok(DevWatchdog {
            path: path.to_path_buf(),
            device: Mutex::new(Some(file)),
            timeout: Duration::from_secs(u64::try_from(secs).unwrap_or(1)),
        })
    }

    /// Wraps a file opened already, for a device that takes no ioctls (and
    /// for tests, which use a plain file).
    pub fn from_file(path: &Path, file: File, timeout: Duration) -> DevWatchdog {
        DevWatchdog {
            path: path.to_path_buf(),
            device: Mutex::new(Some(file)),
            timeout,
        }
    }

    fn write(&self, what: &str, bytes: &[u8], close: bool) -> Result<(), WatchdogError> {
        let mut device = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = device.as_mut() else {
            return Ok(());
        };
        let written = file.write_all(bytes).and_then(|()| file.flush());
        if close {
            device.take();
        }
        written.map_err(|e| {
            WatchdogError::new(kind_of(&e), format!("{} {what}", self.path.display()), e)
        })
    }
}

impl Watchdog for DevWatchdog {
    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
    fn ready(&self) -> Result<(), WatchdogError> {
        Ok(())
    }
    fn keepalive(&self) -> Result<(), WatchdogError> {
        // Any write feeds the device; it must not be a `V`, which some
        // drivers take as the magic close.
        self.write("keepalive", b"\0", false)
    }
    fn status(&self, _line: &str) -> Result<(), WatchdogError> {
        Ok(())
    }
    fn extend_timeout(&self, _by: Duration) -> Result<(), WatchdogError> {
        self.keepalive()
    }
    fn reloading(&self) -> Result<(), WatchdogError> {
        Ok(())
    }
    fn stopping(&self) -> Result<(), WatchdogError> {
        // Magic close: `V`, then close; the device stops counting.
        self.write("magic close", b"V", true)
    }
}

/// One thing a [`SimWatchdog`] was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchdogEvent {
    Ready,
    Keepalive,
    Status(String),
    ExtendTimeout(Duration),
    Reloading,
    Stopping,
}

/// Records what it is told; its timeout is the test's.
#[derive(Debug, Clone)]
pub struct SimWatchdog {
    timeout: Option<Duration>,
    events: Arc<Mutex<Vec<WatchdogEvent>>>,
}

impl SimWatchdog {
    pub fn new(timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            events: Arc::default(),
        }
    }

    /// Everything told so far, in order.
    pub fn events(&self) -> Vec<WatchdogEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many keepalives were sent so far.
    pub fn keepalives(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| **e == WatchdogEvent::Keepalive)
            .count()
    }

    fn record(&self, event: WatchdogEvent) -> Result<(), WatchdogError> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        Ok(())
    }
}

impl Watchdog for SimWatchdog {
    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    fn ready(&self) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::Ready)
    }
    fn keepalive(&self) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::Keepalive)
    }
    fn status(&self, line: &str) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::Status(line.to_string()))
    }
    fn extend_timeout(&self, by: Duration) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::ExtendTimeout(by))
    }
    fn reloading(&self) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::Reloading)
    }
    fn stopping(&self) -> Result<(), WatchdogError> {
        self.record(WatchdogEvent::Stopping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn the_watchdog_timeout_is_watchdog_usec_when_it_is_meant_for_this_process() {
        assert_eq!(
            watchdog_timeout(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_timeout(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(watchdog_timeout(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_timeout(Some("0"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("soon"), None, 7), None);
        assert_eq!(watchdog_timeout(None, Some("7"), 7), None);
    }

    /// One process-wide environment: the notify tests take turns.
    static NOTIFY_SOCKET: Mutex<()> = Mutex::new(());

    #[test]
    fn systemd_notify_sends_each_state_as_a_datagram_to_the_notify_socket() {
        let _turn = NOTIFY_SOCKET.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        let notify = SystemdNotify { timeout: None };
        notify.ready().unwrap();
        notify.keepalive().unwrap();
        notify.status("queued: 3\nsecond line").unwrap();
        notify.extend_timeout(Duration::from_secs(90)).unwrap();
        notify.stopping().unwrap();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..5 {
            let n = socket.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        }
        assert_eq!(
            got,
            [
                "READY=1",
                "WATCHDOG=1",
                "STATUS=queued: 3 second line",
                "EXTEND_TIMEOUT_USEC=90000000",
                "STOPPING=1"
            ]
        );
    }

    #[test]
    fn systemd_notify_without_a_notify_socket_does_nothing() {
        let _turn = NOTIFY_SOCKET.lock().unwrap_or_else(PoisonError::into_inner);
        std::env::remove_var("NOTIFY_SOCKET");
        let notify = SystemdNotify { timeout: None };
        notify.ready().unwrap();
        notify.keepalive().unwrap();
        assert_eq!(notify.timeout(), None);
    }

    #[test]
    fn the_device_is_fed_by_writes_and_disarmed_by_the_magic_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("watchdog");
        let file = File::create(&path).unwrap();
        let dog = DevWatchdog::from_file(&path, file, Duration::from_secs(15));
        assert_eq!(dog.timeout(), Some(Duration::from_secs(15)));
        dog.ready().unwrap();
        dog.keepalive().unwrap();
        dog.keepalive().unwrap();
        dog.stopping().unwrap();
        // Closed: later calls write nothing.
        dog.keepalive().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0\0V");
    }

    #[test]
    fn a_file_that_is_not_a_watchdog_is_refused_as_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-watchdog");
        std::fs::write(&path, b"").unwrap();
        let err = DevWatchdog::open(&path, Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind, WatchdogErrorKind::Unsupported);
        assert!(err.to_string().contains("WDIOC_SETTIMEOUT"), "{err}");
        // Told it may stop before it was given up.
        assert_eq!(std::fs::read(&path).unwrap(), b"V");
    }

    #[test]
    fn the_timeout_ioctl_is_the_request_code_of_linux_watchdog_h() {
        // WDIOC_SETTIMEOUT as <linux/watchdog.h> expands it on every Linux
        // target we build for: _IOWR('W', 6, int) = 0xC0045706. No watchdog
        // device can be opened in a test; the code the kernel matches on is
        // checked instead.
        let code = nix::request_code_readwrite!(b'W', 6, std::mem::size_of::<libc::c_int>());
        assert_eq!(code, 0xC004_5706);
    }

    #[test]
    fn a_missing_device_is_unavailable() {
        let err = DevWatchdog::open(Path::new("/nonexistent/watchdog"), Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(err.kind, WatchdogErrorKind::Unavailable);
    }

    #[test]
    fn the_simulated_watchdog_records_what_it_was_told() {
        let sim = SimWatchdog::new(Some(Duration::from_secs(2)));
        sim.ready().unwrap();
        sim.keepalive().unwrap();
        sim.status("ok").unwrap();
        sim.stopping().unwrap();
        assert_eq!(sim.keepalives(), 1);
        assert_eq!(
            sim.events(),
            [
                WatchdogEvent::Ready,
                WatchdogEvent::Keepalive,
                WatchdogEvent::Status("ok".into()),
                WatchdogEvent::Stopping
            ]
        );
    }
}
