//! One TOML file → a typed, validated configuration.
//!
//! Loading never panics and never fills in a silent default for a typo: every
//! unknown key, wrong type, duplicate name, dangling route and impossible
//! retry policy is reported with `file:line:column` and what was expected.
//! Loading collects as many problems as it can in one pass, so an operator
//! fixes a file in one round trip rather than one error at a time.
//!
//! Endpoints share a few common keys (`name`, `type`, `direction`, `enabled`,
//! `timeout`, `retry`, `partition_by`, `lanes`); every other key belongs to the
//! endpoint's type and is checked against that type's own settings struct.

mod alerts;
mod astm;
mod dicom;
pub mod edit;
mod env;
pub mod environment_file;
pub mod history;
mod hub;
mod hub_commands;
pub mod integrations;
mod load_endpoint;
mod load_route;
mod model;
mod protection;
mod rest;
mod sftp;
mod units;
mod update;

pub use alerts::{
    AlertChannel, AlertKind, AlertRule, AlertsConfig, EmailChannel, QuietHours, SmtpSecurity,
    WebhookChannel,
};
pub use astm::*;
pub use dicom::{DicomConfig, DicomWebConfig, WorklistConfig};
pub use hub::{BrokerAddress, MqttProtocol, PayloadFormat};
pub use hub_commands::{CommandPolicy, COMMAND_NAMES, MAX_AGE_LIMIT};
pub(crate) use load_endpoint::mllp_sender_timeout;
pub use load_endpoint::SettingsInput;
pub use model::*;
pub use protection::{BreakerPolicy, Mode, Protection, RateLimit};
pub use rest::{BundleHandling, RestAuth, RestBody, RestConfig, RestPath};
pub use sftp::SftpConfig;
pub use units::{parse_duration, parse_size, Size, Span};
pub use update::{BootKind, UpdateConfig};

use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// One problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in one configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads and validates a configuration file, expanding `${VAR}` from the
    /// process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read the file: {e}"),
            }])
        })?;
        let mut config = Self::parse(&text, &file, |name| std::env::var(name).ok())?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(
        text: &str,
        file: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut cx = Loader {
            original: text,
            file,
            expanded: None,
            errors: Vec::new(),
        };
        let expanded = match env::expand(text, env) {
            Ok(e) => e,
            Err(errs) => {
                for e in errs {
                    cx.error_at_original(e.offset, e.message);
                }
                return Err(cx.finish());
            }
        };
        cx.expanded = Some(&expanded);
        let root = match DeTable::parse(&expanded.text) {
            Ok(root) => root,
            Err(e) => {
                cx.toml_error(&e, None);
                return Err(cx.finish());
            }
        };
        let config = cx.build(root.into_inner());
        match config {
            Some(c) if cx.errors.is_empty() => Ok(c),
            _ => Err(cx.finish()),
        }
    }
}

struct Loader<'a> {
    original: &'a str,
    file: &'a str,
    expanded: Option<&'a env::Expanded>,
    errors: Vec<ConfigError>,
}

type Value<'i> = Spanned<DeValue<'i>>;

impl<'a> Loader<'a> {
    fn finish(mut self) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| (e.line, e.column, e.message.clone()));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }

    fn error_at_original(&mut self, offset: usize, message: String) {
        let offset = offset.min(self.original.len());
        let before = &self.original[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let column = self.original[line_start..offset].chars().count() + 1;
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message,
        });
    }

    fn error_at(&mut self, expanded_offset: usize, message: String) {
        let offset = match self.expanded {
            Some(e) => e.original_offset(expanded_offset),
            None => expanded_offset,
        };
        self.error_at_original(offset, message);
    }

    fn toml_error(&mut self, e: &toml::de::Error, context: Option<&str>) {
        let at = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_string();
        let message = match context {
            Some(c) => format!("{c}: {message}"),
            None => message,
        };
        self.error_at(at, message);
    }

    fn de<T: DeserializeOwned>(&mut self, value: &Value<'_>, context: &str) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                self.toml_error(&e, Some(context));
                None
            }
        }
    }

    fn build(&mut self, root: DeTable<'_>) -> Option<Config> {
        let mut journal = None;
        let mut admin = Some(AdminConfig::default());
        let mut hub = Some(HubConfig::default());
        let mut site = Some(SiteConfig::default());
        let mut service = Some(ServiceConfig::default());
        let mut alerts = Some(AlertsConfig::default());
        let mut update: Option<Option<UpdateConfig>> = Some(None);
        let mut endpoints = Vec::new();
        // Endpoints with errors of their own: routes naming them are not
        // reported again as naming unknown endpoints.
        let mut broken = Vec::new();
        let mut routes = Vec::new();
        // Where each accepted endpoint's and route's `name` is written, for
        // duplicate-name errors that point at the name itself.
        let mut endpoint_names_at = Vec::new();
        let mut route_names_at = Vec::new();
        let mut ok = true;

        for (key, value) in root.iter() {
            match key.get_ref().as_ref() {
                "journal" => journal = self.de::<JournalFile>(value, "[journal]"),
                "admin" => admin = self.de::<AdminConfig>(value, "[admin]"),
                "hub" => hub = self.de::<HubConfig>(value, "[hub]"),
                "site" => site = self.de::<SiteConfig>(value, "[site]"),
                "service" => service = self.de::<ServiceConfig>(value, "[service]"),
                "alerts" => alerts = self.de::<AlertsConfig>(value, "[alerts]"),
                "update" => update = self.de::<UpdateConfig>(value, "[update]").map(Some),
                "endpoint" => match value.get_ref().as_array() {
                    Some(items) => {
                        for item in items.iter() {
                            match self.endpoint(item) {
                                Some(e) => {
                                    endpoints.push(e);
                                    endpoint_names_at.push(name_at(item));
                                }
                                None => {
                                    ok = false;
                                    if let Some(name) = item
                                        .get_ref()
                                        .get("name")
                                        .and_then(|n| n.get_ref().as_str())
                                    {
                                        broken.push(name.to_string());
                                    }
                                }
                            }
                        }
                    }
                    None => {
                        self.error_at(
                            value.span().start,
                            "`endpoint` must be written as [[endpoint]] tables".into(),
                        );
                        ok = false;
                    }
                },
                "route" => match value.get_ref().as_array() {
                    Some(items) => {
                        for item in items.iter() {
                            match self.route(item) {
                                Some(r) => {
                                    routes.push(r);
                                    route_names_at.push(name_at(item));
                                }
                                None => ok = false,
                            }
                        }
                    }
                    None => {
                        self.error_at(
                            value.span().start,
                            "`route` must be written as [[route]] tables".into(),
                        );
                        ok = false;
                    }
                },
                other => {
                    self.error_at(
                        key.span().start,
                        format!("unknown section `{other}`, expected one of `journal`, `site`, `endpoint`, `route`, `admin`, `hub`, `service`, `alerts`, `update`"),
                    );
                    ok = false;
                }
            }
        }

        let journal = match (journal, root.get("journal")) {
            (Some(j), Some(v)) => self.journal(j, v),
            (None, Some(_)) => None,
            (_, None) => {
                self.error_at(0, "missing [journal] section (at least `path`)".into());
                None
            }
        };
        if let Some(h) = &hub {
            if !self.section_problems(&root, "hub", h.problems()) {
                hub = None;
            }
        }
        if let Some(a) = &admin {
            if !self.section_problems(&root, "admin", a.problems()) {
                admin = None;
            }
        }
        if let Some(Some(u)) = &update {
            if !self.section_problems(&root, "update", u.problems()) {
                update = None;
            }
        }
        if let (Some(site), Some(v)) = (&site, root.get("site")) {
            if jiff::tz::TimeZone::get(&site.time_zone).is_err() {
                self.error_at(
                    v.span().start,
                    format!("[site]: unknown time zone `{}` (expected an IANA name such as \"Europe/Berlin\")", site.time_zone),
                );
            }
        }
        if let (Some(a), Some(v)) = (&alerts, root.get("alerts")) {
            let names: Vec<&str> = endpoints
                .iter()
                .map(|e| e.name.as_str())
                .chain(broken.iter().map(String::as_str))
                .collect();
            let hub_on = hub.as_ref().is_some_and(|h| h.enabled);
            let mut problems = a.problems(&names, hub_on);
            if root.get("update").is_none() {
                for (i, rule) in a.rules.iter().enumerate() {
                    if rule.when == AlertKind::UpdateFailed {
                        problems.push((
                            alerts::At::Rule(i, "when"),
                            format!("rule `{}`: `update_failed` watches the firmware slots, which needs an [update] section", rule.name),
                        ));
                    }
                }
            }
            for (at, message) in &problems {
                let at = alerts_at(v, at);
                self.error_at(at, format!("[alerts]: {message}"));
            }
            if !problems.is_empty() {
                alerts = None;
            }
        }
        self.check_endpoint_names(&endpoints, &endpoint_names_at);
        self.check_routes(&routes, &route_names_at, &endpoints, &broken);
        self.check_code_maps(&endpoints);
        self.check_worklists(&endpoints, &endpoint_names_at, &broken);

        Some(Config {
            source: None,
            journal: journal?,
            site: site?,
            endpoints: if ok { endpoints } else { return None },
            routes,
            admin: admin?,
            hub: hub?,
            service: service?,
            alerts: alerts?,
            update: update?,
        })
    }

    /// Reports `problems` of section `name` at their keys (or the section
    /// when a key is not written); `true` when there are none.
    fn section_problems(
        &mut self,
        root: &DeTable<'_>,
        name: &str,
        problems: Vec<(&'static str, String)>,
    ) -> bool {
        let Some(v) = root.get(name) else {
            return true;
        };
        for (key, message) in &problems {
            let at = v
                .get_ref()
                .as_table()
                .and_then(|t| t.get(*key))
                .map_or(v.span().start, |k| k.span().start);
            self.error_at(at, format!("[{name}]: {message}"));
        }
        problems.is_empty()
    }

    fn journal(&mut self, file: JournalFile, value: &Value<'_>) -> Option<JournalConfig> {
        let at = |key: &str| {
            value
                .get_ref()
                .as_table()
                .and_then(|t| t.get(key))
                .map_or(value.span().start, |v| v.span().start)
        };
        let mut ok = true;
        if file.retention_days == 0 {
            self.error_at(
                at("retention_days"),
                "[journal]: `retention_days` must be at least 1".into(),
            );
            ok = false;
        }
        if file.max_size.0 < 1 << 20 {
            self.error_at(
                at("max_size"),
                "[journal]: `max_size` must be at least 1 MiB".into(),
            );
            ok = false;
        }
        if file.purge_interval.0.is_zero() {
            self.error_at(
                at("purge_interval"),
                "[journal]: `purge_interval` must be longer than zero".into(),
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(JournalConfig {
            path: file.path,
            max_size: file.max_size.0,
            min_free_disk: file.min_free_disk.0,
            retention: std::time::Duration::from_secs(u64::from(file.retention_days) * 86400),
            purge_interval: file.purge_interval.0,
        })
    }

    fn line_of(&self, expanded_offset: usize) -> usize {
        let offset = self
            .expanded
            .map_or(expanded_offset, |e| e.original_offset(expanded_offset))
            .min(self.original.len());
        self.original[..offset].matches('\n').count() + 1
    }

    fn check_endpoint_names(&mut self, endpoints: &[Endpoint], names_at: &[usize]) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (e, &at) in endpoints.iter().zip(names_at) {
            if let Some(first) = seen.insert(&e.name, e.line) {
                self.error_at(
                    at,
                    format!(
                        "duplicate endpoint name `{}` (first defined on line {first})",
                        e.name
                    ),
                );
            }
        }
    }

    /// A per-source code map must name an endpoint that sends messages.
    fn check_code_maps(&mut self, endpoints: &[Endpoint]) {
        for e in endpoints {
            let EndpointKind::Fhir(f) = &e.kind else {
                continue;
            };
            for source in f.code_map_by_source.keys() {
                if !endpoints
                    .iter()
                    .any(|s| &s.name == source && s.direction.receives())
                {
                    self.errors.push(ConfigError {
                        file: self.file.to_string(),
                        line: e.line,
                        column: 1,
                        message: format!(
                            "endpoint `{}`: `code_map_by_source` names `{source}`, which is not an inbound endpoint",
                            e.name
                        ),
                    });
                }
            }
        }
    }
}

/// Where a problem of `[alerts]` is written: the key when it is there, else
/// the table holding it.
fn alerts_at(section: &Value<'_>, at: &alerts::At) -> usize {
    let table = |v: &Value<'_>, key: &str| -> usize {
        v.get_ref()
            .as_table()
            .and_then(|t| t.get(key))
            .map_or(v.span().start, |k| k.span().start)
    };
    match at {
        alerts::At::Section(key) => table(section, key),
        alerts::At::Channel(name, key) => section
            .get_ref()
            .as_table()
            .and_then(|t| t.get("channels"))
            .and_then(|c| c.get_ref().as_table().and_then(|t| t.get(name.as_str())))
            .map_or(section.span().start, |c| table(c, key)),
        alerts::At::Rule(i, key) => section
            .get_ref()
            .as_table()
            .and_then(|t| t.get("rule"))
            .and_then(|r| r.get_ref().as_array().and_then(|a| a.get(*i)))
            .map_or(section.span().start, |r| table(r, key)),
    }
}

/// Where an endpoint's or route's `name` is written, else the table itself.
fn name_at(item: &Value<'_>) -> usize {
    item.get_ref()
        .as_table()
        .and_then(|t| t.get("name"))
        .map_or(item.span().start, |v| v.span().start)
}

fn humantime(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `text` with its `${NAME:-default}` references expanded from the process
/// environment (what the running gateway reads), or why it cannot be.
pub fn expand_references(text: &str) -> Result<String, String> {
    env::expand(text, |name| std::env::var(name).ok())
        .map(|e| e.text)
        .map_err(|errors| {
            errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// Where relative paths in the configuration are resolved: the working
/// directory, as the operator's shell would.
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path))
    }
}

#[cfg(test)]
mod mllp_tests;
#[cfg(test)]
mod tests;
