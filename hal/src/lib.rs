//! Hardware access for the Ecko Edge gateway.
//!
//! The gateway never touches device files, sysfs or ioctls itself: it sees the
//! small traits defined here. Each trait has a Linux implementation (`linux`)
//! and a simulated one (`sim`) so the gateway's logic can be tested without the
//! hardware, including the failures the hardware produces (a full disk, a
//! USB-serial adapter that disappears).

pub mod clock;
pub mod leds;
pub mod net_links;
pub mod reset_button;
pub mod serial;
pub mod storage;
pub mod storage_wear;
pub mod sysfs;
pub mod terminal;
pub mod watchdog;

pub use clock::{Clock, ClockError, LinuxClock, SimClock};
pub use leds::{LedError, LedState, LinuxLeds, SimLeds, StatusLeds};
pub use net_links::{LinuxNetLinks, NetLink, NetLinks, SimNetLinks};
pub use reset_button::{
    long_press, GpioButton, InputEventButton, Press, PressTiming, ResetButton, ResetButtonError,
    ResetButtonErrorKind, SimButton, SimButtonHandle, KEY_RESTART,
};
pub use serial::{
    FlowControl, LinuxSerial, Parity, SerialError, SerialErrorKind, SerialLine, SerialPorts,
    SerialSettings, SimSerial,
};
pub use storage::{Storage, StorageError};
pub use storage_wear::{LinuxStorageWear, PreEol, SimStorageWear, StorageWear, Wear};
pub use sysfs::Sysfs;
pub use terminal::{LinuxTerminal, SimTerminal, Terminal, TerminalError};
pub use watchdog::{
    DevWatchdog, SimWatchdog, SystemdNotify, Watchdog, WatchdogError, WatchdogErrorKind,
    WatchdogEvent,
};
