//! What keeps a destination from flooding the system behind it, and a new
//! integration from reaching it before it is trusted: `rate_limit` (token
//! bucket), `circuit_breaker` (paused after consecutive refusals) and
//! `mode = "sandbox"` (captured or sent to `sandbox_url`, never live).
//!
//! Common keys of every `[[endpoint]]`: a destination takes all four, a
//! REST listener `rate_limit` only (requests per second, 429 above it).

use super::units::Span;
use serde::Deserialize;
use std::time::Duration;

/// A token bucket: `per_second` refilled, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

/// `circuit_breaker = { failures = 20, window = "5m" }`: the destination
/// is paused after `failures` permanent failures in a row, all within
/// `window`. On by default; `failures = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub window: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 20,
            window: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BreakerFile {
    pub failures: Option<u32>,
    pub window: Option<Span>,
}

/// Whether deliveries reach the live system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Live,
    /// Sent to `sandbox_url` when set, otherwise captured without being
    /// sent; either way settled as `captured`, never as delivered.
    Sandbox,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Sandbox => "sandbox",
        }
    }
}

/// An endpoint's flood protection and mode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Protection {
    pub rate_limit: Option<RateLimit>,
    /// `None`: off (`failures = 0`).
    pub breaker: Option<BreakerPolicy>,
    pub mode: Mode,
    /// Sandbox mode of an HTTP destination: where requests go instead of
    /// the live address (a template where the live one is).
    pub sandbox_url: Option<String>,
}

impl Protection {
    /// The default a destination gets: the breaker on, no rate limit, live.
    pub fn destination_default() -> Self {
        Self {
            breaker: Some(BreakerPolicy::default()),
            ..Self::default()
        }
    }

    pub fn is_sandbox(&self) -> bool {
        self.mode == Mode::Sandbox
    }
}

/// The keys as the file has them, for [`read`].
pub(super) struct ProtectionFile {
    pub rate_limit: Option<RateLimit>,
    pub circuit_breaker: Option<BreakerFile>,
    pub mode: Option<Mode>,
    pub sandbox_url: Option<String>,
}

/// What an endpoint's role and type allow.
pub(super) struct Allowed {
    pub destination: bool,
    /// A REST listener: `rate_limit` limits its requests.
    pub rate_limited_source: bool,
    /// Its type sends over HTTP and so can be pointed at a sandbox URL.
    pub sandbox_url: bool,
}

/// The endpoint's protection, or the first problem at its key.
pub(super) fn read(
    file: ProtectionFile,
    allowed: Allowed,
) -> Result<Protection, (&'static str, String)> {
    if let Some(r) = &file.rate_limit {
        if !(allowed.destination || allowed.rate_limited_source) {
            return Err((
                "rate_limit",
                "`rate_limit` limits a destination's deliveries or a REST listener's requests; this endpoint is neither".into(),
            ));
        }
        if !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0 {
            return Err((
                "rate_limit",
                "`rate_limit` needs `per_second` above zero and `burst` of at least 1".into(),
            ));
        }
    }
    if !allowed.destination {
        for (key, set) in [
            ("circuit_breaker", file.circuit_breaker.is_some()),
            ("mode", file.mode.is_some()),
            ("sandbox_url", file.sandbox_url.is_some()),
        ] {
            if set {
                return Err((
                    key,
                    format!("`{key}` is a destination's; this endpoint receives"),
                ));
            }
        }
        return Ok(Protection {
            rate_limit: file.rate_limit,
            ..Protection::default()
        });
    }
    let breaker = match file.circuit_breaker {
        None => Some(BreakerPolicy::default()),
        Some(b) => {
            let d = BreakerPolicy::default();
            let policy = BreakerPolicy {
                failures: b.failures.unwrap_or(d.failures),
                window: b.window.map_or(d.window, |w| w.0),
            };
            if policy.failures > 0 && policy.window.is_zero() {
                return Err((
                    "circuit_breaker",
                    "`circuit_breaker.window` must be longer than zero".into(),
                ));
            }
            (policy.failures > 0).then_some(policy)
        }
    };
    let mode = file.mode.unwrap_or_default();
    if let Some(url) = &file.sandbox_url {
        if !allowed.sandbox_url {
            return Err((
                "sandbox_url",
                "`sandbox_url` is for HTTP destinations (fhir, rest, dicomweb); in sandbox mode this type's deliveries are captured".into(),
            ));
        }
        let url = url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                "sandbox_url",
                format!("`sandbox_url` must be an http:// or https:// URL, not {url:?}"),
            ));
        }
    }
    Ok(Protection {
        rate_limit: file.rate_limit,
        breaker,
        mode,
        sandbox_url: file.sandbox_url.map(|u| u.trim().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Mode};
    use std::time::Duration;

    fn parse(endpoint: &str) -> Result<Config, String> {
        let text = format!("[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"e\"\n{endpoint}\n");
        Config::parse(&text, "t.toml", |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_destination_gets_the_breaker_by_default_and_its_keys_as_written() {
        let c = parse("type = \"file\"\npath = \"out\"").unwrap();
        let p = &c.endpoints[0].protection;
        assert_eq!(p.breaker.unwrap().failures, 20);
        assert_eq!(p.breaker.unwrap().window, Duration::from_secs(300));
        assert_eq!((p.rate_limit, p.mode), (None, Mode::Live));
        let c = parse(
            "type = \"fhir\"\nurl = \"https://h/fhir\"\nrate_limit = { per_second = 10, burst = 5 }\ncircuit_breaker = { failures = 0 }\nmode = \"sandbox\"\nsandbox_url = \"http://127.0.0.1:9/fhir\"",
        )
        .unwrap();
        let p = &c.endpoints[0].protection;
        assert_eq!(p.rate_limit.unwrap().burst, 5);
        assert_eq!(p.breaker, None, "failures = 0 turns it off");
        assert!(p.is_sandbox());
        assert_eq!(p.sandbox_url.as_deref(), Some("http://127.0.0.1:9/fhir"));
    }

    #[test]
    fn keys_that_cannot_work_are_errors_at_their_line() {
        for (keys, line, expected) in [
            (
                "type = \"file\"\npath = \"out\"\nrate_limit = { per_second = 0 }",
                7,
                "`per_second` above zero",
            ),
            (
                "type = \"file\"\npath = \"out\"\ncircuit_breaker = { window = \"0s\" }",
                7,
                "longer than zero",
            ),
            (
                "type = \"file\"\npath = \"out\"\nsandbox_url = \"http://x\"",
                7,
                "for HTTP destinations",
            ),
            (
                "type = \"fhir\"\nurl = \"https://h/fhir\"\nsandbox_url = \"ftp://x\"",
                7,
                "http:// or https://",
            ),
            (
                "type = \"file-drop\"\npath = \"in\"\nmode = \"sandbox\"",
                7,
                "a destination's",
            ),
            (
                "type = \"file-drop\"\npath = \"in\"\nrate_limit = { per_second = 1 }",
                7,
                "neither",
            ),
            (
                "type = \"file\"\npath = \"out\"\nmode = \"trial\"",
                7,
                "unknown variant `trial`",
            ),
        ] {
            let e = parse(keys).unwrap_err();
            assert!(e.contains(expected), "{keys}: {e}");
            assert!(e.contains(&format!("t.toml:{line}")), "{keys}: {e}");
        }
    }
}
