//! The handle every service acts through: the journal, the configuration in
//! force, and (when there is one) the running gateway behind [`Gateway`].

use crate::config::Config;
use crate::health::Health;
use crate::journal::Journal;
use crate::service::Service;
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Why a running gateway did not take a configuration; it is left as it was.
pub type ApplyFailed = Box<dyn std::error::Error + Send + Sync>;

/// The running gateway as the services see it; the supervisor implements
/// it.
pub trait Gateway: Send + Sync {
    /// The configuration in force now.
    fn config(&self) -> Arc<Config>;
    /// Applies `config` to the running endpoints without a restart.
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<ApplyReport, ApplyFailed>>;
    /// The endpoints with a running unit.
    fn running(&self) -> Vec<String>;
    fn journal(&self) -> &Journal;
    fn health(&self) -> Health;
    /// Held by a change of the configuration file from reading it to
    /// applying it, so two changes never build on the same version.
    fn lock_edits(&self) -> BoxFuture<'_, tokio::sync::MutexGuard<'_, ()>>;
    /// Metrics, progress, disk and clock of the running gateway.
    fn service(&self) -> Service;
}

impl<G: Gateway + ?Sized> Gateway for Arc<G> {
    fn config(&self) -> Arc<Config> {
        (**self).config()
    }
    fn apply(&self, config: Config) -> BoxFuture<'_, Result<ApplyReport, ApplyFailed>> {
        (**self).apply(config)
    }
    fn running(&self) -> Vec<String> {
        (**self).running()
    }
    fn journal(&self) -> &Journal {
        (**self).journal()
    }
    fn health(&self) -> Health {
        (**self).health()
    }
    fn lock_edits(&self) -> BoxFuture<'_, tokio::sync::MutexGuard<'_, ()>> {
        (**self).lock_edits()
    }
    fn service(&self) -> Service {
        (**self).service()
    }
}

/// What an apply did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyReport {
    /// Endpoints started that were not running.
    pub started: Vec<String>,
    /// Endpoints stopped (removed or disabled).
    pub stopped: Vec<String>,
    /// Endpoints stopped and started again with new settings.
    pub restarted: Vec<String>,
    /// Whether the routes changed.
    pub routes_changed: bool,
    /// Settings saved but only in force after the next start.
    pub needs_restart: Vec<String>,
}

impl ApplyReport {
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (label, names) in [
            ("started", &self.started),
            ("stopped", &self.stopped),
            ("restarted", &self.restarted),
        ] {
            if !names.is_empty() {
                parts.push(format!("{label} {}", names.join(", ")));
            }
        }
        if self.routes_changed {
            parts.push("routes replaced".into());
        }
        if !self.needs_restart.is_empty() {
            parts.push(format!(
                "after the next start: {}",
                self.needs_restart.join(", ")
            ));
        }
        if parts.is_empty() {
            "nothing to change in the running gateway".into()
        } else {
            parts.join("; ")
        }
    }
}

enum Live {
    /// A fixed configuration: it can be shown but not changed.
    Fixed(Arc<Config>),
    /// The running gateway's: changes are applied to it.
    Running(Arc<dyn Gateway>),
}

/// The services' handle on one gateway.
pub struct Operations {
    journal: Journal,
    live: Live,
    health: Health,
    service: Service,
}

impl Operations {
    /// Over a fixed configuration: reads and journal actions work,
    /// configuration changes are refused.
    pub fn fixed(journal: Journal, config: Arc<Config>, health: Health) -> Operations {
        Operations {
            journal,
            live: Live::Fixed(config),
            health,
            // Nothing runs here: no device to report on.
            service: Service::simulated(),
        }
    }

    /// Over a running gateway, able to change it.
    pub fn running(gateway: Arc<dyn Gateway>) -> Operations {
        Operations {
            journal: gateway.journal().clone(),
            health: gateway.health(),
            service: gateway.service(),
            live: Live::Running(gateway),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// What the running endpoints report about their links.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Metrics, progress, disk and clock (of their own for a fixed
    /// configuration).
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// The configuration in force now (it changes when an edit is applied).
    pub fn config(&self) -> Arc<Config> {
        match &self.live {
            Live::Fixed(c) => c.clone(),
            Live::Running(g) => g.config(),
        }
    }

    /// The endpoints with a running unit; `None` without a running gateway.
    pub fn running_endpoints(&self) -> Option<Vec<String>> {
        self.gateway().map(|g| g.running())
    }

    pub(crate) fn gateway(&self) -> Option<&Arc<dyn Gateway>> {
        match &self.live {
            Live::Fixed(_) => None,
            Live::Running(g) => Some(g),
        }
    }
}
