//! The site the gateway serves, as every room sees it while it runs.

use std::sync::{Arc, RwLock};

/// The site's time zone, shared by sources, delivery workers and the admin
/// page, and replaceable while they run. UTC until the configuration names
/// one.
#[derive(Clone, Debug)]
pub struct SiteTimeZone(Arc<RwLock<jiff::tz::TimeZone>>);

impl SiteTimeZone {
    pub fn new(tz: jiff::tz::TimeZone) -> Self {
        Self(Arc::new(RwLock::new(tz)))
    }

    pub fn get(&self) -> jiff::tz::TimeZone {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, tz: jiff::tz::TimeZone) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tz;
    }
}

impl From<jiff::tz::TimeZone> for SiteTimeZone {
    fn from(tz: jiff::tz::TimeZone) -> Self {
        Self::new(tz)
    }
}

impl Default for SiteTimeZone {
    fn default() -> Self {
        Self::new(jiff::tz::TimeZone::UTC)
    }
}
