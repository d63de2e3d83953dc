//! `ResetButton`: the appliance's reset button, held down to ask for a
//! factory reset.
//!
//! A button is a source of raw edges (`pressed` or released, as the
//! hardware reports them, bounces included): the GPIO character device
//! through `gpiocdev` (chip, line, active-low) or an input event device
//! (`/dev/input/eventN`, e.g. from the `gpio-keys` driver: `struct
//! input_event` records, one key code), and [`SimButton`] for tests.
//! [`long_press`] turns the edges into the one thing the gateway acts on:
//! the button held down, without a release, for `hold` — counted from
//! when the press was stable for `debounce`, so contact bounce neither
//! starts nor ends a press. A shorter press does nothing but say so
//! ([`Press::Short`]); the gateway logs it.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// What kind of failure a button source had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetButtonErrorKind {
    /// The chip, line or device does not exist.
    NotFound,
    /// Not allowed to open it.
    Permission,
    /// It exists but is not such a device (or the line is taken).
    Unsupported,
    /// The device went away or stopped sending (end of file).
    Closed,
    Io,
}

#[derive(Debug, thiserror::Error)]
#[error("reset button {what}: {message}")]
pub struct ResetButtonError {
    pub kind: ResetButtonErrorKind,
    pub what: String,
    pub message: String,
}

impl ResetButtonError {
    fn new(kind: ResetButtonErrorKind, what: &Path, message: impl ToString) -> Self {
        Self {
            kind,
            what: what.display().to_string(),
            message: message.to_string(),
        }
    }

    fn io(what: &Path, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ResetButtonErrorKind::NotFound,
            K::PermissionDenied => ResetButtonErrorKind::Permission,
            K::UnexpectedEof => ResetButtonErrorKind::Closed,
            _ => ResetButtonErrorKind::Io,
        };
        Self::new(kind, what, e)
    }
}

/// One raw edge of the button: `true` when it went down.
pub type Edge = bool;

/// A source of the button's raw edges.
pub trait ResetButton: Send {
    /// Waits for the next edge.
    fn next_edge(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Edge, ResetButtonError>> + Send;
}

/// How a press ended, as [`long_press`] judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Press {
    /// Held for the whole `hold`: the reset is asked for (while the button
    /// is still down).
    Long,
    /// Released before `hold`, after being held this long.
    Short(Duration),
}

/// `hold` and `debounce` of [`long_press`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressTiming {
    pub hold: Duration,
    pub debounce: Duration,
}

impl Default for PressTiming {
    fn default() -> Self {
        Self {
            hold: Duration::from_secs(10),
            debounce: Duration::from_millis(50),
        }
    }
}

/// Waits for the next press of `button` and says how it ended: `Long` as
/// soon as the button has been down, stable, for `timing.hold`; `Short`
/// when it came up before. A level must hold for `timing.debounce` before
/// it counts; edges in between only restart that wait.
pub async fn long_press<B: ResetButton>(
    button: &mut B,
    timing: PressTiming,
) -> Result<Press, ResetButtonError> {
    let mut raw = false;
    let mut stable = false;
    let mut settles: Option<Instant> = None;
    let mut down_since: Option<Instant> = None;
    loop {
        let long_at = down_since.map(|t| t + timing.hold);
        tokio::select! {
            edge = button.next_edge() => {
                let edge = edge?;
                if edge != raw {
                    raw = edge;
                    settles = Some(Instant::now() + timing.debounce);
                }
            }
            _ = sleep_until(settles), if settles.is_some() => {
                settles = None;
                if raw != stable {
                    stable = raw;
                    if stable {
                        down_since = Some(Instant::now());
                    } else if let Some(since) = down_since.take() {
                        return Ok(Press::Short(since.elapsed()));
                    }
                }
            }
            _ = sleep_until(long_at), if long_at.is_some() => return Ok(Press::Long),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A simulated button: [`SimButtonHandle::press`] and `release` feed it.
pub struct SimButton {
    edges: tokio::sync::mpsc::UnboundedReceiver<Edge>,
}

/// The test's finger on a [`SimButton`].
#[derive(Clone)]
pub struct SimButtonHandle {
    edges: tokio::sync::mpsc::UnboundedSender<Edge>,
}

impl SimButton {
    pub fn new() -> (SimButton, SimButtonHandle) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (SimButton { edges: rx }, SimButtonHandle { edges: tx })
    }
}

impl SimButtonHandle {
    pub fn press(&self) {
        let _ = self.edges.send(true);
    }
    pub fn release(&self) {
        let _ = self.edges.send(false);
    }
}

impl ResetButton for SimButton {
    async fn next_edge(&mut self) -> Result<Edge, ResetButtonError> {
        match self.edges.recv().await {
            Some(e) => Ok(e),
            None => Err(ResetButtonError::new(
                ResetButtonErrorKind::Closed,
                Path::new("simulated"),
                "the test let go of it",
            )),
        }
    }
}

/// `KEY_RESTART`, the key code `gpio-keys` boards give a reset button.
pub const KEY_RESTART: u16 = 0x198;
const EV_KEY: u16 = 0x01;

/// A key of an input event device (`/dev/input/eventN`): press and release
/// of `key` (auto-repeat ignored); other keys and events are skipped.
pub struct InputEventButton {
    path: PathBuf,
    file: tokio::fs::File,
    key: u16,
}

/// The size of the kernel's `struct input_event` on this target (24 bytes
/// on 64-bit, 16 on 32-bit with a 32-bit `time_t`); its last 8 bytes are
/// `type`, `code` and `value`.
pub const INPUT_EVENT_SIZE: usize = std::mem::size_of::<libc::input_event>();

/// `(type, code, value)` of one `struct input_event` record.
pub fn decode_input_event(record: &[u8; INPUT_EVENT_SIZE]) -> (u16, u16, i32) {
    let tail = INPUT_EVENT_SIZE - 8;
    let u16_at = |i: usize| u16::from_ne_bytes([record[i], record[i + 1]]);
    let value = i32::from_ne_bytes([
        record[tail + 4],
        record[tail + 5],
        record[tail + 6],
        record[tail + 7],
    ]);
    (u16_at(tail), u16_at(tail + 2), value)
}

impl InputEventButton {
    pub async fn open(path: &Path, key: u16) -> Result<InputEventButton, ResetButtonError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ResetButtonError::io(path, e))?;
        Ok(InputEventButton {
            path: path.to_path_buf(),
            file,
            key,
        })
    }
}

impl ResetButton for InputEventButton {
    async fn next_edge(&mut self) -> Result<Edge, ResetButtonError> {
        use tokio::io::AsyncReadExt;
        let mut record = [0u8; INPUT_EVENT_SIZE];
        loop {
            self.file
                .read_exact(&mut record)
                .await
                .map_err(|e| ResetButtonError::io(&self.path, e))?;
            match decode_input_event(&record) {
                (EV_KEY, code, 1) if code == self.key => return Ok(true),
                (EV_KEY, code, 0) if code == self.key => return Ok(false),
                _ => {}
            }
        }
    }
}

/// A GPIO line through the character device (`/dev/gpiochipN`), edges on
/// both sides; `active_low` for a button that pulls the line to ground.
pub struct GpioButton {
    path: PathBuf,
    request: gpiocdev::tokio::AsyncRequest,
}

impl GpioButton {
    pub fn open(chip: &Path, line: u32, active_low: bool) -> Result<GpioButton, ResetButtonError> {
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(chip)
            .with_consumer("ecko-gateway reset button")
            .with_line(line)
            .as_input()
            .with_edge_detection(gpiocdev::line::EdgeDetection::BothEdges);
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| gpio_error(chip, e))?;
        Ok(GpioButton {
            path: chip.to_path_buf(),
            request: gpiocdev::tokio::AsyncRequest::new(request),
        })
    }
}

fn gpio_error(chip: &Path, e: gpiocdev::Error) -> ResetButtonError {
    use gpiocdev::chip::ErrorKind as C;
    let kind = match &e {
        gpiocdev::Error::GpioChip(_, C::NotCharacterDevice | C::NotGpioDevice) => {
            ResetButtonErrorKind::Unsupported
        }
        gpiocdev::Error::Os(errno) if errno.0 == libc::ENOENT => ResetButtonErrorKind::NotFound,
        gpiocdev::Error::Os(errno) if errno.0 == libc::EACCES => ResetButtonErrorKind::Permission,
        gpiocdev::Error::Os(errno) if errno.0 == libc::EBUSY => ResetButtonErrorKind::Unsupported,
        _ => ResetButtonErrorKind::Io,
    };
    ResetButtonError::new(kind, chip, e)
}

impl ResetButton for GpioButton {
    async fn next_edge(&mut self) -> Result<Edge, ResetButtonError> {
        let event = self
            .request
            .read_edge_event()
            .await
            .map_err(|e| gpio_error(&self.path, e))?;
        Ok(event.kind == gpiocdev::line::EdgeKind::Rising)
    }
}

#[cfg(test)]
mod tests;
