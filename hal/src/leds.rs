//! Status LEDs on the box, through the kernel's LED class:
//! `<root>/sys/class/leds/<name>/brightness` (0 off, otherwise on) and
//! `trigger` (`timer` blinks, `none` hands control back to `brightness`).
//!
//! Which LED shows what (power/ready, uplink, analyzer link, error) is
//! configuration; this module only sets a named LED to a state.

use crate::sysfs::Sysfs;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// What an LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedState {
    Off,
    On,
    /// Blinks with the kernel's timer trigger.
    Blinking,
}

#[derive(Debug, thiserror::Error)]
#[error("LED `{led}`: {source}")]
pub struct LedError {
    pub led: String,
    #[source]
    source: std::io::Error,
}

/// The box's LEDs, by kernel name.
pub trait StatusLeds: Send + Sync + 'static {
    fn set(&self, led: &str, state: LedState) -> Result<(), LedError>;
}

/// LEDs of the kernel's LED class under a sysfs root.
#[derive(Debug, Clone, Default)]
pub struct LinuxLeds {
    sysfs: Sysfs,
}

impl LinuxLeds {
    pub fn new(sysfs: Sysfs) -> Self {
        Self { sysfs }
    }
}

impl StatusLeds for LinuxLeds {
    fn set(&self, led: &str, state: LedState) -> Result<(), LedError> {
        let err = |source| LedError {
            led: led.to_string(),
            source,
        };
        // A name with a slash would leave the LED class.
        if led.is_empty() || led.contains('/') || led.starts_with('.') {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an LED name",
            )));
        }
        let dir = format!("sys/class/leds/{led}");
        match state {
            LedState::Blinking => self.sysfs.write(format!("{dir}/trigger"), "timer"),
            LedState::On | LedState::Off => {
                // A blinking LED ignores brightness until its trigger goes.
                self.sysfs
                    .write(format!("{dir}/trigger"), "none")
                    .and_then(|()| {
                        let level = if state == LedState::On {
                            // Brightest the LED can be.
                            self.sysfs
                                .read(format!("{dir}/max_brightness"))
                                .unwrap_or_else(|_| "1".into())
                        } else {
                            "0".into()
                        };
                        self.sysfs.write(format!("{dir}/brightness"), &level)
                    })
            }
        }
        .map_err(err)
    }
}

/// LEDs whose states the test reads back.
#[derive(Debug, Clone, Default)]
pub struct SimLeds {
    states: Arc<Mutex<BTreeMap<String, LedState>>>,
}

impl SimLeds {
    pub fn state(&self, led: &str) -> Option<LedState> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(led)
            .copied()
    }
}

impl StatusLeds for SimLeds {
    fn set(&self, led: &str, state: LedState) -> Result<(), LedError> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(led.to_string(), state);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(root: &std::path::Path, name: &str) -> std::path::PathBuf {
        let dir = root.join("sys/class/leds").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("brightness"), "0\n").unwrap();
        std::fs::write(dir.join("max_brightness"), "255\n").unwrap();
        std::fs::write(dir.join("trigger"), "[none] timer heartbeat\n").unwrap();
        dir
    }

    #[test]
    fn on_off_and_blinking_are_written_to_trigger_and_brightness() {
        let root = tempfile::tempdir().unwrap();
        let dir = led(root.path(), "ecko:green:ready");
        let leds = LinuxLeds::new(Sysfs::new(root.path()));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();

        leds.set("ecko:green:ready", LedState::Blinking).unwrap();
        assert_eq!(read("trigger"), "timer");
        leds.set("ecko:green:ready", LedState::On).unwrap();
        assert_eq!(
            (read("trigger").as_str(), read("brightness").as_str()),
            ("none", "255")
        );
        leds.set("ecko:green:ready", LedState::Off).unwrap();
        assert_eq!(read("brightness"), "0");
    }

    #[test]
    fn a_missing_led_or_a_name_outside_the_led_class_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let leds = LinuxLeds::new(Sysfs::new(root.path()));
        let err = leds.set("ecko:red:error", LedState::On).unwrap_err();
        assert!(err.to_string().contains("ecko:red:error"), "{err}");
        assert!(leds.set("../../etc", LedState::On).is_err());
    }

    #[test]
    fn the_simulated_leds_remember_their_states() {
        let sim = SimLeds::default();
        sim.set("uplink", LedState::Blinking).unwrap();
        assert_eq!(sim.state("uplink"), Some(LedState::Blinking));
        assert_eq!(sim.state("error"), None);
    }
}
