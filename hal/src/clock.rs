//! Whether the system clock can be trusted: synchronised by NTP (or PTP),
//! and whether a battery-backed real-time clock keeps time across power
//! cuts.
//!
//! Result timestamps the gateway adds (receipt times, acknowledgements) are
//! only as good as this clock, so an unsynchronised clock is shown on the
//! dashboard and in `/readyz`.
//!
//! The kernel's view comes from `adjtimex(2)` with no modes set (a read):
//! the clock is unsynchronised when the call returns `TIME_ERROR` or the
//! status has `STA_UNSYNC`. nix has no wrapper for it; this is the one
//! direct libc call. RTCs are the entries of `<root>/sys/class/rtc`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the clock state (adjtimex): {0}")]
pub struct ClockError(#[source] std::io::Error);

/// The clock as the kernel sees it.
pub trait Clock: Send + Sync + 'static {
    /// Whether time is synchronised to a reference now.
    fn synchronised(&self) -> Result<bool, ClockError>;
    /// Whether the machine has a real-time clock.
    fn rtc_present(&self) -> bool;
}

/// The kernel's clock; RTCs looked up under `root` (`/` on the device, a
/// temporary directory in tests).
#[derive(Debug, Clone)]
pub struct LinuxClock {
    root: PathBuf,
}

impl Default for LinuxClock {
    fn default() -> Self {
        Self::new("/")
    }
}

impl LinuxClock {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

/// What `adjtimex` said: its return value (the clock state) and the status
/// bits.
fn is_synchronised(state: libc::c_int, status: libc::c_int) -> bool {
    state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

impl Clock for LinuxClock {
    fn synchronised(&self) -> Result<bool, ClockError> {
        // SAFETY: an all-zero `timex` is valid; with `modes == 0` the call
        // only fills it in.
        let mut timex: libc::timex = unsafe { std::mem::zeroed() };
        timex.modes = 0;
        // SAFETY: `timex` is a valid, exclusively borrowed struct.
        let state = unsafe { libc::adjtimex(&mut timex) };
        if state == -1 {
            return Err(ClockError(std::io::Error::last_os_error()));
        }
        Ok(is_synchronised(state, timex.status))
    }

    fn rtc_present(&self) -> bool {
        std::fs::read_dir(self.root.join("sys/class/rtc"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }
}

/// A clock whose state the test sets.
#[derive(Debug, Clone)]
pub struct SimClock {
    synchronised: Arc<AtomicBool>,
    rtc: bool,
}

impl SimClock {
    pub fn new(synchronised: bool, rtc: bool) -> Self {
        Self {
            synchronised: Arc::new(AtomicBool::new(synchronised)),
            rtc,
        }
    }

    pub fn set_synchronised(&self, yes: bool) {
        self.synchronised.store(yes, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn synchronised(&self) -> Result<bool, ClockError> {
        Ok(self.synchronised.load(Ordering::SeqCst))
    }
    fn rtc_present(&self) -> bool {
        self.rtc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_unsynchronised_on_time_error_or_sta_unsync() {
        assert!(is_synchronised(libc::TIME_OK, 0));
        assert!(!is_synchronised(libc::TIME_ERROR, 0));
        assert!(!is_synchronised(libc::TIME_OK, libc::STA_UNSYNC));
        assert!(is_synchronised(libc::TIME_OK, libc::STA_PLL));
    }

    #[test]
    fn the_kernel_answers_the_read_only_adjtimex() {
        // Synchronised or not depends on the machine; the call must work.
        LinuxClock::default().synchronised().unwrap();
    }

    #[test]
    fn an_rtc_is_present_when_the_rtc_class_has_an_entry() {
        let root = tempfile::tempdir().unwrap();
        let clock = LinuxClock::new(root.path());
        assert!(!clock.rtc_present());
        std::fs::create_dir_all(root.path().join("sys/class/rtc")).unwrap();
        assert!(!clock.rtc_present());
        std::fs::create_dir_all(root.path().join("sys/class/rtc/rtc0")).unwrap();
        assert!(clock.rtc_present());
    }

    #[test]
    fn the_simulated_clock_reports_what_the_test_set() {
        let clock = SimClock::new(true, false);
        assert!(clock.synchronised().unwrap());
        clock.set_synchronised(false);
        assert!(!clock.synchronised().unwrap());
        assert!(!clock.rtc_present());
    }
}
