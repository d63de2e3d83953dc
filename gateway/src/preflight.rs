//! Checks that need more than the configuration text: certificate and key
//! files that must be readable, TLS settings that must build, before a
//! gateway is started with them.
//!
//! `check-config` runs these so that a file it passes does not fail when
//! `run` starts its endpoints. Nothing here binds a port, opens the journal
//! or writes a file.

use crate::config::Config;

/// One endpoint (or section) that would not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// An endpoint name, or `[admin]`.
    pub part: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.part, self.reason)
    }
}

/// Every enabled endpoint's start-up preconditions, in file order.
pub fn check(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    for endpoint in config.endpoints.iter().filter(|e| e.enabled) {
        let reason = crate::endpoints::of(&endpoint.kind).preflight(endpoint);
        if let Some(reason) = reason {
            problems.push(Problem {
                part: format!("endpoint `{}`", endpoint.name),
                reason,
            });
        }
    }
    if config.admin.enabled && config.admin.tls {
        // The generated device certificate is made on first start; only an
        // operator's files can be missing or unreadable now.
        for file in [&config.admin.cert, &config.admin.key]
            .into_iter()
            .flatten()
        {
            let path = crate::config::resolve(file);
            if let Err(e) = std::fs::File::open(&path) {
                problems.push(Problem {
                    part: "[admin]".into(),
                    reason: format!("{}: {e}", path.display()),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[journal]
path = "/tmp/never-opened/journal.db"
{extra}
"#
        );
        Config::parse(&text, "t.toml", |_| None).unwrap()
    }

    #[test]
    fn a_fhir_endpoint_with_a_missing_ca_file_would_not_start_and_says_which_file() {
        let c = config(
            r#"
[[endpoint]]
name = "hub"
type = "fhir"
url = "https://hub.example/fhir"
ca_file = "/nonexistent/ca.pem"
"#,
        );
        let problems = check(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].part, "endpoint `hub`");
        assert!(
            problems[0].reason.contains("/nonexistent/ca.pem"),
            "{problems:?}"
        );
    }

    #[test]
    fn an_mllp_listener_with_an_unreadable_certificate_would_not_start() {
        let c = config(
            r#"
[[endpoint]]
name = "lis"
type = "mllp"
listen = "127.0.0.1:0"
tls = { cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }
"#,
        );
        let problems = check(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].reason.contains("/nonexistent/cert.pem"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_disabled_endpoint_is_not_checked() {
        let c = config(
            r#"
[[endpoint]]
name = "hub"
type = "fhir"
enabled = false
url = "https://hub.example/fhir"
ca_file = "/nonexistent/ca.pem"
"#,
        );
        assert!(check(&c).is_empty());
    }

    #[test]
    fn an_operators_admin_certificate_must_be_readable() {
        let c = config(
            r#"
[admin]
cert = "/nonexistent/admin.pem"
key = "/nonexistent/admin.key"
"#,
        );
        let problems = check(&c);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.part == "[admin]"));
    }

    #[test]
    fn the_shipped_default_configuration_passes() {
        let text = include_str!("../../config/gateway.toml");
        let c = Config::parse(text, "config/gateway.toml", |_| None).unwrap();
        assert_eq!(check(&c), vec![]);
    }
}
