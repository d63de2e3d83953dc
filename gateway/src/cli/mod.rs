//! The command line: one module per subcommand, each with its arguments
//! and what it does. `main.rs` only parses the arguments and calls here.
//!
//! Every subcommand runs on the one tokio runtime the process has, built
//! once by `main`. It prints results on standard output and failures on
//! standard error, as `ecko-gateway: ` and the error followed by its
//! causes, each after `: `. The exit code is 0 when it did what was asked
//! and 1 when it failed; `check-config`, `run` and `trace` answer 2 for a
//! configuration that does not load (and `trace` for an endpoint that is
//! not ASTM), `send` 2 when it could not send at all. Scripts rely on
//! these codes, so each module keeps its own.

pub mod check_config;
pub mod logging;
pub mod order;
pub mod retry;
pub mod run;
pub mod send;
pub mod status;
pub mod trace;
pub mod user;

use std::error::Error;
use std::process::ExitCode;

/// The error and every cause below it, `: ` between them.
pub(crate) fn with_causes(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

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
