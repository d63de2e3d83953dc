//! Where the log goes: standard error, filtered by `ECKO_LOG` (default
//! `info`), in colour only for a person at a terminal.

use ecko_hal::Terminal;

/// Installs the process's log subscriber.
pub fn init(terminal: &dyn Terminal) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECKO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Under systemd stderr goes to the journal, where colour codes are
        // noise in every line a field engineer reads.
        .with_ansi(
            terminal.stderr_is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
}
