//! The command line: one module per subcommand, each with its arguments
//! and what it does. `main.rs` only parses the arguments and calls here.
//!
//! Every subcommand runs on the one tokio runtime the process has, built
//! once by `main`. It prints results on standard output and failures on
//! standard error, as `ecko-gateway: ` and the error followed by its
//! causes, each after `: `. The exit code is 0 when it did what was asked
//! and 1 when it failed; `check-config`, `run` and `trace` answer 2 for a
//! configuration that does not load (and `trace` for an endpoint that is
//! not ASTM), `send` 2 when it could not send at all; `setup-code` 1 when
//! there is no code to show; `codes import` 1 when the file conflicts with
//! the configuration and nothing was written; `template apply` 1 when a
//! value is missing or refused, a name is taken or the file would not load
//! (nothing written); `run` 75 after a factory reset (start it again),
//! `factory-reset` 1 when refused and 2 for a configuration that does not
//! load. Scripts rely on these codes, so each module
//! keeps its own.

pub mod check_config;
pub mod codes;
pub mod factory_reset;
pub mod logging;
pub mod low_ports;
pub mod order;
pub mod resume;
pub mod retry;
pub mod run;
pub mod send;
pub mod setup_code;
pub mod status;
pub mod template;
pub mod trace;
pub mod user;

use std::error::Error;

/// What `--version` prints after the name: the version, the commit, the
/// build date and the target triple (from `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ECKO_GIT_COMMIT"),
    ", built ",
    env!("ECKO_BUILD_DATE"),
    ", ",
    env!("ECKO_TARGET"),
    ")"
);
use std::process::ExitCode;

pub(crate) use crate::with_causes;

/// Prints a failure the way every subcommand does.
pub(crate) fn print_failure(e: &dyn Error) {
    eprintln!("ecko-gateway: {}", with_causes(e));
}

/// Exit code 0, or 1 after printing the failure.
pub(crate) fn report<E: Error>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            print_failure(&e);
            ExitCode::FAILURE
        }
    }
}

/// Whoever runs the command line, as the journal records them: the person
/// behind sudo, not root.
pub(crate) fn actor() -> crate::control::Actor {
    let login = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    crate::control::Actor::command_line(&login)
}

/// A refused action of [`crate::control`] as the command line says it.
#[derive(Debug)]
pub(crate) struct Refused(pub crate::control::Refusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::control::Refusal;
        match &self.0 {
            Refusal::Invalid { field, message } => match *field {
                "name" => write!(f, "user name: {message}"),
                "role" => f.write_str("role must be admin, operator or viewer"),
                "destination" | "analyzer" => f.write_str(message),
                field => write!(f, "{field}: {message}"),
            },
            other => write!(f, "{other}"),
        }
    }
}

impl Error for Refused {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            crate::control::Refusal::Journal(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether `name` is an ASTM endpoint of `config`, for the subcommands
/// about analyzers.
pub(crate) fn is_astm(config: &crate::config::Config, name: &str) -> bool {
    use crate::config::EndpointKind;
    matches!(
        config.endpoint(name).map(|e| &e.kind),
        Some(EndpointKind::AstmSerial(_) | EndpointKind::AstmTcp(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the journal")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_failure_reads_as_the_error_and_its_causes_each_after_a_colon() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(with_causes(&e), "opening the journal: disk on fire");
    }
}
