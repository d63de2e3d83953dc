//! Reading one `[[endpoint]]`: the common keys here, the type's own keys by
//! its module in `crate::endpoints`, every problem located in the file.

use super::*;

/// An endpoint's type-specific settings as its type reads them: errors
/// land at the endpoint, located in the file like every other.
pub struct SettingsInput<'l, 'a> {
    loader: &'l mut Loader<'a>,
    value: &'l Value<'l>,
    context: &'l str,
    at: usize,
}

impl SettingsInput<'_, '_> {
    /// The settings as `T`; `None` after reporting why not.
    pub fn read<T: DeserializeOwned>(&mut self) -> Option<T> {
        self.loader.de(self.value, self.context)
    }

    /// Reports `problem`, if any, and then gives `None`.
    pub fn check(&mut self, problem: Option<String>) -> Option<()> {
        match problem {
            None => Some(()),
            Some(p) => {
                let message = format!("{}: {p}", self.context);
                self.loader.error_at(self.at, message);
                None
            }
        }
    }
}

const ENDPOINT_COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "direction",
    "enabled",
    "timeout",
    "retry",
    "partition_by",
    "lanes",
    "rate_limit",
    "circuit_breaker",
    "mode",
    "sandbox_url",
];

impl Loader<'_> {
    pub(super) fn endpoint(&mut self, item: &Value<'_>) -> Option<Endpoint> {
        let Some(table) = item.get_ref().as_table() else {
            self.error_at(item.span().start, "an [[endpoint]] must be a table".into());
            return None;
        };
        let name = table
            .get("name")
            .and_then(|v| v.get_ref().as_str())
            .unwrap_or("?")
            .to_string();
        let mut common = DeTable::new();
        let mut specific = DeTable::new();
        for (k, v) in table.iter() {
            if ENDPOINT_COMMON_KEYS.contains(&k.get_ref().as_ref()) {
                common.insert(k.clone(), v.clone());
            } else {
                specific.insert(k.clone(), v.clone());
            }
        }
        let span = item.span();
        let context = format!("endpoint `{name}`");
        let common: EndpointCommon = self.de(
            &Spanned::new(span.clone(), DeValue::Table(common)),
            &context,
        )?;
        let specific = Spanned::new(span.clone(), DeValue::Table(specific));
        let context = format!("endpoint `{name}` (type {})", common.kind);
        let Some(ty) = crate::endpoints::named(&common.kind) else {
            let at = table.get("type").map_or(span.start, |v| v.span().start);
            self.error_at(
                at,
                format!(
                    "endpoint `{name}`: unknown type `{}`, expected one of {}",
                    common.kind,
                    crate::endpoints::type_names().join(", ")
                ),
            );
            return None;
        };
        let kind = ty.parse(&mut SettingsInput {
            loader: self,
            value: &specific,
            context: &context,
            at: span.start,
        })?;
        let at = |key: &str| table.get(key).map_or(span.start, |v| v.span().start);
        let problems = ty.problems(&kind);
        for (key, problem) in &problems {
            self.error_at(at(key), format!("endpoint `{name}`: {problem}"));
        }
        if !problems.is_empty() {
            return None;
        }
        let direction = match (common.direction, ty.directions(&kind)) {
            (Some(d), allowed) if allowed.contains(&d) => d,
            (Some(d), allowed) => {
                self.error_at(
                    at("direction"),
                    format!(
                        "endpoint `{name}`: a {} endpoint cannot be {d}, expected {}",
                        common.kind,
                        allowed
                            .iter()
                            .map(|d| format!("`{d}`"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                );
                return None;
            }
            (None, allowed) => allowed[0],
        };
        if !is_name(&common.name) {
            self.error_at(
                at("name"),
                format!(
                    "endpoint name `{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                    common.name
                ),
            );
            return None;
        }
        let retry = match common.retry {
            Some(r) => self.retry(r, &name, at("retry"))?,
            None => RetryPolicy::default(),
        };
        if common.timeout.is_some_and(|t| t.0.is_zero()) {
            self.error_at(
                at("timeout"),
                format!("endpoint `{name}`: `timeout` must be longer than zero"),
            );
            return None;
        }
        if common.lanes == Some(0) {
            self.error_at(
                at("lanes"),
                format!("endpoint `{name}`: `lanes` must be at least 1"),
            );
            return None;
        }
        if common.lanes.is_some_and(|l| l > 1) && common.partition_by.is_none() {
            self.error_at(
                at("lanes"),
                format!("endpoint `{name}`: several `lanes` need a `partition_by` key to keep order within each lane"),
            );
            return None;
        }
        let destination = ty.role(&kind) == crate::endpoints::Role::Destination;
        let protection = match super::protection::read(
            super::protection::ProtectionFile {
                rate_limit: common.rate_limit,
                circuit_breaker: common.circuit_breaker,
                mode: common.mode,
                sandbox_url: common.sandbox_url,
            },
            super::protection::Allowed {
                destination,
                // A listener named directly: the only source that can
                // answer "too many" (429) to a sender that keeps its copy.
                rate_limited_source: !destination && ty.name() == "rest",
                sandbox_url: matches!(ty.name(), "fhir" | "rest" | "dicomweb"),
            },
        ) {
            Ok(p) => p,
            Err((key, problem)) => {
                self.error_at(at(key), format!("endpoint `{name}`: {problem}"));
                return None;
            }
        };
        let timeout = match ty.timeout(&kind, common.timeout.map(|t| t.0)) {
            Ok(t) => t,
            Err(problem) => {
                self.error_at(at("timeout"), format!("endpoint `{name}`: {problem}"));
                return None;
            }
        };
        Some(Endpoint {
            name: common.name,
            direction,
            enabled: common.enabled,
            timeout,
            retry,
            partition_by: common.partition_by,
            lanes: common
                .lanes
                .unwrap_or(if common.partition_by.is_some() { 8 } else { 1 }),
            protection,
            kind,
            line: self.line_of(span.start),
        })
    }

    fn retry(&mut self, r: RetryFile, name: &str, at: usize) -> Option<RetryPolicy> {
        let policy = RetryPolicy {
            initial: r.initial.map_or(RetryPolicy::default().initial, |s| s.0),
            max: r.max.map_or(RetryPolicy::default().max, |s| s.0),
            multiplier: r.multiplier.unwrap_or(RetryPolicy::default().multiplier),
            jitter: r.jitter.unwrap_or(RetryPolicy::default().jitter),
            max_attempts: r.max_attempts,
            max_age: r.max_age.map(|s| s.0),
        };
        let problem = if policy.initial.is_zero() {
            Some("`initial` must be longer than zero".to_string())
        } else if policy.max < policy.initial {
            Some(format!(
                "`max` ({:?}) is shorter than `initial` ({:?})",
                policy.max, policy.initial
            ))
        } else if !(1.0..=16.0).contains(&policy.multiplier) {
            Some(format!(
                "`multiplier` {} must be between 1 and 16",
                policy.multiplier
            ))
        } else if !(0.0..=1.0).contains(&policy.jitter) {
            Some(format!(
                "`jitter` {} must be between 0 and 1",
                policy.jitter
            ))
        } else if policy.max_attempts == Some(0) {
            Some(
                "`max_attempts` must be at least 1 (leave it out to retry without a count limit)"
                    .into(),
            )
        } else if policy.max_age.is_some_and(|a| a < policy.initial) {
            Some(
                "`max_age` is shorter than the first backoff, so no retry could ever happen".into(),
            )
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.error_at(
                    at,
                    format!("endpoint `{name}`: impossible retry policy: {p}"),
                );
                None
            }
            None => Some(policy),
        }
    }
}

/// An MLLP sender's endpoint `timeout`: longer than its own connect, send
/// and ACK timeouts together (default: those plus 5 s, at least the common
/// default).
pub(crate) fn mllp_sender_timeout(
    m: &MllpConfig,
    given: Option<std::time::Duration>,
) -> Result<std::time::Duration, String> {
    let budget = m.sender_budget();
    match given {
        None => Ok((budget + std::time::Duration::from_secs(5)).max(DEFAULT_TIMEOUT)),
        Some(t) if t > budget => Ok(t),
        Some(t) => Err(format!(
            "`timeout` ({}) must be longer than `connect_timeout` + `send_timeout` + `ack_timeout` ({}), or the sender's own timeout errors are never seen",
            humantime(t),
            humantime(budget)
        )),
    }
}
