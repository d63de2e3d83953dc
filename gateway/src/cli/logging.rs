//! Where the log goes and how its lines look: standard error, filtered by
//! `ECKO_LOG` (default `info`).
//!
//! - For a person at a terminal: text with a timestamp, in colour (unless
//!   `NO_COLOR`).
//! - For the service manager (standard error is not a terminal: journald,
//!   a pipe): each line starts with its syslog priority, `<3>` error, `<4>`
//!   warning, `<6>` info, `<7>` debug and trace, as `sd-daemon(3)` asks, and
//!   carries no timestamp of its own (journald adds one) and no colour.
//! - `--log-format json`: one JSON object per line, for log shippers.
//!
//! Every line also goes to the process's recent log
//! ([`recent_log`](crate::service::recent_log)), which a log
//! bundle for the hub is made from.

use crate::service::recent_log::Tee;
use ecko_hal::Terminal;
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for a terminal, syslog-prefixed text otherwise.
    #[default]
    Auto,
    /// Text with timestamps.
    Text,
    /// Syslog priority prefix, no timestamp.
    Syslog,
    /// One JSON object per line.
    Json,
}

/// The syslog priority of a level (`<3>` … `<7>`).
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Puts the syslog priority in front of what `inner` writes.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

fn syslog_format() -> SyslogPrefix<Format<tracing_subscriber::fmt::format::Full, ()>> {
    SyslogPrefix(Format::default().without_time().with_level(false))
}

/// `Auto` as what it means where standard error goes.
fn resolve(format: LogFormat, on_terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if on_terminal => LogFormat::Text,
        LogFormat::Auto => LogFormat::Syslog,
        f => f,
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("ECKO_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the process's log subscriber.
pub fn init(terminal: &dyn Terminal, format: LogFormat) {
    install(terminal, format, || Tee {
        inner: std::io::stderr(),
    });
}

fn install<W>(terminal: &dyn Terminal, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let on_terminal = terminal.stderr_is_terminal();
    let format = resolve(format, on_terminal);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Syslog => builder
            .with_ansi(false)
            .fmt_fields(DefaultFields::new())
            .event_format(syslog_format())
            .try_init(),
        LogFormat::Text | LogFormat::Auto => builder
            // Colour codes are noise in a file or the journal.
            .with_ansi(on_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(format: impl FnOnce(Captured) -> tracing::Dispatch) -> Vec<String> {
        let captured = Captured::default();
        let dispatch = format(captured.clone());
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::error!(endpoint = "hub", "cannot deliver");
            tracing::warn!("disk low");
            tracing::info!("gateway running");
            tracing::debug!("lease taken");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn lines_for_the_service_manager_start_with_their_syslog_priority_and_carry_no_timestamp() {
        let lines = lines_of(|w| {
            tracing_subscriber::fmt()
                .with_max_level(Level::DEBUG)
                .with_writer(move || w.clone())
                .with_ansi(false)
                .event_format(syslog_format())
                .into()
        });
        let prefixes: Vec<&str> = lines.iter().map(|l| &l[..3]).collect();
        assert_eq!(prefixes, ["<3>", "<4>", "<6>", "<7>"], "{lines:#?}");
        assert!(
            lines[0].contains("cannot deliver endpoint=\"hub\""),
            "{lines:#?}"
        );
        for line in &lines {
            // A timestamp would start with the year.
            assert!(!line[3..].starts_with("20"), "{line}");
            assert!(!line.contains("INFO") && !line.contains("ERROR"), "{line}");
        }
    }

    #[test]
    fn the_automatic_format_is_text_on_a_terminal_and_syslog_elsewhere() {
        assert_eq!(resolve(LogFormat::Auto, true), LogFormat::Text);
        assert_eq!(resolve(LogFormat::Auto, false), LogFormat::Syslog);
        assert_eq!(resolve(LogFormat::Json, true), LogFormat::Json);
    }

    #[test]
    fn the_json_format_gives_one_object_per_line() {
        let lines = lines_of(|w| {
            tracing_subscriber::fmt()
                .with_writer(move || w.clone())
                .json()
                .into()
        });
        assert_eq!(lines.len(), 3, "debug is filtered out: {lines:#?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "ERROR");
        assert_eq!(first["fields"]["message"], "cannot deliver");
        assert_eq!(first["fields"]["endpoint"], "hub");
    }
}
