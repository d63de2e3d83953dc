//! Serial lines (RS-232, USB-serial adapters, pseudo-terminals).
//!
//! The gateway asks a [`SerialPorts`] to open a device with
//! [`SerialSettings`] taken from the endpoint's configuration and gets a byte
//! stream back ([`SerialLine`]: tokio's `AsyncRead + AsyncWrite`). A line that
//! ends (end of file or an I/O error: the adapter was pulled, the
//! pseudo-terminal's other side went away) is dropped by the caller, which
//! opens the device again with backoff; opening fails with
//! [`SerialErrorKind::NotFound`] while the device is absent.
//!
//! - [`LinuxSerial`] opens real devices through tokio-serial (termios); it
//!   works on a pseudo-terminal too, which is how it is tested.
//! - [`SimSerial`] hands out in-memory lines whose other end the test holds,
//!   and can pretend the device is unplugged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;

/// Parity bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

/// Flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// How to open one serial device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    pub path: PathBuf,
    pub baud: u32,
    /// 5 to 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    pub flow_control: FlowControl,
}

impl SerialSettings {
    /// 9600 8N1 without flow control: what most analyzers ship with.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SerialSettings {
            path: path.into(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        }
    }
}

/// What kind of failure opening a line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialErrorKind {
    /// No such device (now): try again later.
    NotFound,
    PermissionDenied,
    /// The settings cannot be applied (data bits, stop bits, baud).
    InvalidSettings,
    Io,
}

/// Opening a serial line failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("serial device {path}: {message}")]
pub struct SerialError {
    pub kind: SerialErrorKind,
    pub path: String,
    pub message: String,
}

impl SerialError {
    fn new(kind: SerialErrorKind, path: &Path, message: impl Into<String>) -> Self {
        SerialError {
            kind,
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

/// An open serial line: bytes both ways.
pub trait SerialLine: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> SerialLine for T {}

/// Opens serial lines.
pub trait SerialPorts: Send + Sync + 'static {
    /// Opens the device. Must be called inside a tokio runtime.
    fn open(&self, settings: &SerialSettings) -> Result<Box<dyn SerialLine>, SerialError>;
}

/// Real devices through termios (tokio-serial).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxSerial;

impl SerialPorts for LinuxSerial {
    fn open(&self, s: &SerialSettings) -> Result<Box<dyn SerialLine>, SerialError> {
        Ok(Box::new(self.open_stream(s)?))
    }
}

impl LinuxSerial {
    /// Opens the device as a tokio-serial stream (what [`SerialPorts::open`]
    /// hands out, boxed).
    pub fn open_stream(
        &self,
        s: &SerialSettings,
    ) -> Result<tokio_serial::SerialStream, SerialError> {
        use tokio_serial::SerialPortBuilderExt;
        let invalid = |m: String| SerialError::new(SerialErrorKind::InvalidSettings, &s.path, m);
        let data_bits = match s.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            8 => tokio_serial::DataBits::Eight,
            n => return Err(invalid(format!("{n} data bits (expected 5 to 8)"))),
        };
        let stop_bits = match s.stop_bits {
            1 => tokio_serial::StopBits::One,
            2 => tokio_serial::StopBits::Two,
            n => return Err(invalid(format!("{n} stop bits (expected 1 or 2)"))),
        };
        let parity = match s.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Odd => tokio_serial::Parity::Odd,
            Parity::Even => tokio_serial::Parity::Even,
        };
        let flow = match s.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        };
        if !s.path.exists() {
            return Err(SerialError::new(
                SerialErrorKind::NotFound,
                &s.path,
                "no such device",
            ));
        }
        let path = s.path.to_string_lossy().into_owned();
        let stream = tokio_serial::new(path, s.baud)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(flow)
            .open_native_async()
            .map_err(|e| {
                let kind = match e.kind {
                    tokio_serial::ErrorKind::NoDevice => SerialErrorKind::NotFound,
                    tokio_serial::ErrorKind::InvalidInput => SerialErrorKind::InvalidSettings,
                    tokio_serial::ErrorKind::Io(std::io::ErrorKind::NotFound) => {
                        SerialErrorKind::NotFound
                    }
                    tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
                        SerialErrorKind::PermissionDenied
                    }
                    _ => SerialErrorKind::Io,
                };
                SerialError::new(kind, &s.path, e.description)
            })?;
        Ok(stream)
    }
}

/// Simulated devices: every successful [`SerialPorts::open`] creates an
/// in-memory line whose other end arrives at [`SimSerial::next_peer`]. While
/// [`SimSerial::unplug`]ged, opening fails with `NotFound`; dropping the
/// peer end ends the gateway's line as a pulled adapter would.
#[derive(Debug, Clone)]
pub struct SimSerial {
    state: Arc<Mutex<SimState>>,
    peers: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<DuplexStream>>>,
}

#[derive(Debug)]
struct SimState {
    present: bool,
    opened: u32,
    last_settings: Option<SerialSettings>,
    peers: mpsc::UnboundedSender<DuplexStream>,
}

impl Default for SimSerial {
    fn default() -> Self {
        Self::new()
    }
}

impl SimSerial {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        SimSerial {
            state: Arc::new(Mutex::new(SimState {
                present: true,
                opened: 0,
                last_settings: None,
                peers: tx,
            })),
            peers: Arc::new(tokio::sync::Mutex::new(rx)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device disappears: later opens fail until [`SimSerial::plug`].
    /// (Drop the peer end to end a line that is open.)
    pub fn unplug(&self) {
        self.state().present = false;
    }

    /// The device is back.
    pub fn plug(&self) {
        self.state().present = true;
    }

    /// How many times the device was opened.
    pub fn opened(&self) -> u32 {
        self.state().opened
    }

    /// The settings of the last successful open.
    pub fn last_settings(&self) -> Option<SerialSettings> {
        self.state().last_settings.clone()
    }

    /// The analyzer's end of the next line the gateway opens.
    pub async fn next_peer(&self) -> Option<DuplexStream> {
        self.peers.lock().await.recv().await
    }
}

impl SerialPorts for SimSerial {
    fn open(&self, settings: &SerialSettings) -> Result<Box<dyn SerialLine>, SerialError> {
        let mut state = self.state();
        if !state.present {
            return Err(SerialError::new(
                SerialErrorKind::NotFound,
                &settings.path,
                "no such device (simulated)",
            ));
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        state.opened += 1;
        state.last_settings = Some(settings.clone());
        let _ = state.peers.send(theirs);
        Ok(Box::new(ours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_linux_serial_reports_a_missing_device_as_not_found() {
        let err = LinuxSerial
            .open(&SerialSettings::new("/dev/ecko-no-such-tty"))
            .err()
            .map(|e| e.kind);
        assert_eq!(err, Some(SerialErrorKind::NotFound));
    }

    #[tokio::test]
    async fn the_linux_serial_refuses_impossible_settings() {
        let mut s = SerialSettings::new("/dev/null");
        s.data_bits = 9;
        let err = LinuxSerial.open(&s).err().map(|e| e.kind);
        assert_eq!(err, Some(SerialErrorKind::InvalidSettings));
    }

    #[tokio::test]
    async fn the_linux_serial_carries_every_byte_value_over_a_pseudo_terminal() {
        let (mut a, b) = tokio_serial::SerialStream::pair().unwrap();
        // Open the second end again by name through the trait, as the
        // gateway does with a configured device.
        use tokio_serial::SerialPort;
        let name = b.name().unwrap();
        drop(b);
        let mut line = LinuxSerial.open(&SerialSettings::new(&name)).unwrap();
        let all: Vec<u8> = (0..=255u8).collect();
        a.write_all(&all).await.unwrap();
        let mut got = vec![0u8; all.len()];
        tokio::time::timeout(std::time::Duration::from_secs(5), line.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, all);
        line.write_all(b"\x06").await.unwrap();
        let mut one = [0u8; 1];
        tokio::time::timeout(std::time::Duration::from_secs(5), a.read_exact(&mut one))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one, [6]);
    }

    /// The termios the kernel holds for a pseudo-terminal opened through
    /// [`LinuxSerial`] with `settings`, read back from the very descriptor
    /// the gateway would use, and its output speed (tokio-serial sets any
    /// speed through `termios2`, so it is read the same way).
    ///
    /// Linux's pty driver keeps stop bits, flow control and the parity
    /// flags but forces `CS8` and clears `PARENB` whatever was asked
    /// (drivers/tty/pty.c, `pty_set_termios`): on a pty, seven data bits
    /// and the parity bit itself can be seen only through `INPCK` and
    /// `PARODD`, which tokio-serial sets with them.
    fn applied(settings: impl FnOnce(&mut SerialSettings)) -> (nix::sys::termios::Termios, u32) {
        use std::os::fd::{AsRawFd, BorrowedFd};
        use tokio_serial::SerialPort;
        let (_master, slave) = tokio_serial::SerialStream::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave);
        let mut s = SerialSettings::new(&name);
        settings(&mut s);
        let line = LinuxSerial.open_stream(&s).unwrap();
        // SAFETY: `line` owns the descriptor and outlives the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(line.as_raw_fd()) };
        let termios = nix::sys::termios::tcgetattr(fd).unwrap();
        // SAFETY: TCGETS2 fills a termios2 the size libc declares.
        let speed = unsafe {
            let mut t2: nix::libc::termios2 = std::mem::zeroed();
            assert_eq!(
                nix::libc::ioctl(line.as_raw_fd(), nix::libc::TCGETS2, &mut t2),
                0
            );
            t2.c_ospeed
        };
        (termios, speed)
    }

    #[tokio::test]
    async fn a_7e2_rts_cts_line_gets_even_parity_two_stop_bits_rts_cts_and_its_speed_on_the_tty() {
        use nix::sys::termios::{ControlFlags, InputFlags};
        let (t, speed) = applied(|s| {
            s.baud = 19200;
            s.data_bits = 7;
            s.parity = Parity::Even;
            s.stop_bits = 2;
            s.flow_control = FlowControl::Hardware;
        });
        let c = t.control_flags;
        assert!(c.contains(ControlFlags::CSTOPB), "{c:?}");
        assert!(c.contains(ControlFlags::CRTSCTS), "{c:?}");
        // Parity on (input checking), and even, not odd.
        assert!(
            t.input_flags.contains(InputFlags::INPCK),
            "{:?}",
            t.input_flags
        );
        assert!(!c.contains(ControlFlags::PARODD), "{c:?}");
        assert!(!t
            .input_flags
            .intersects(InputFlags::IXON | InputFlags::IXOFF));
        assert_eq!(speed, 19200);
    }

    #[tokio::test]
    async fn an_8o1_xon_xoff_line_gets_odd_parity_one_stop_bit_xon_xoff_and_its_speed_on_the_tty() {
        use nix::sys::termios::{ControlFlags, InputFlags};
        let (t, speed) = applied(|s| {
            s.baud = 9600;
            s.data_bits = 8;
            s.parity = Parity::Odd;
            s.stop_bits = 1;
            s.flow_control = FlowControl::Software;
        });
        let c = t.control_flags;
        assert!(c.contains(ControlFlags::PARODD), "{c:?}");
        assert!(t.input_flags.contains(InputFlags::INPCK));
        assert!(!c.contains(ControlFlags::CSTOPB), "{c:?}");
        assert!(!c.contains(ControlFlags::CRTSCTS), "{c:?}");
        assert!(t.input_flags.contains(InputFlags::IXON | InputFlags::IXOFF));
        assert_eq!(speed, 9600);
    }

    #[tokio::test]
    async fn no_parity_and_no_flow_control_leave_the_tty_plain() {
        use nix::sys::termios::{ControlFlags, InputFlags};
        let (t, speed) = applied(|s| s.baud = 115_200);
        let c = t.control_flags;
        assert!(!t.input_flags.contains(InputFlags::INPCK));
        assert!(!c.intersects(ControlFlags::PARODD | ControlFlags::CSTOPB | ControlFlags::CRTSCTS));
        assert!(!t
            .input_flags
            .intersects(InputFlags::IXON | InputFlags::IXOFF));
        assert_eq!(speed, 115_200);
    }

    #[tokio::test]
    async fn a_simulated_device_can_be_unplugged_and_plugged_back() {
        let sim = SimSerial::new();
        let s = SerialSettings::new("/dev/ttySIM0");
        let mut line = sim.open(&s).unwrap();
        let mut peer = sim.next_peer().await.unwrap();
        peer.write_all(b"\x05").await.unwrap();
        let mut one = [0u8; 1];
        line.read_exact(&mut one).await.unwrap();
        assert_eq!(one, [5]);

        sim.unplug();
        drop(peer);
        assert_eq!(line.read(&mut one).await.unwrap(), 0, "a pulled line ends");
        assert_eq!(
            sim.open(&s).err().map(|e| e.kind),
            Some(SerialErrorKind::NotFound)
        );
        sim.plug();
        assert!(sim.open(&s).is_ok());
        assert_eq!(sim.opened(), 2);
        assert_eq!(sim.last_settings(), Some(s));
    }
}
