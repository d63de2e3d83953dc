//! `ecko-gateway`: the command line. Parses the arguments and calls the
//! subcommand in [`ecko_gateway::cli`] on the process's one async runtime.

use clap::{Parser, Subcommand};
use ecko_gateway::cli;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ecko-gateway", version = cli::VERSION, about = "Ecko Edge hospital gateway")]
struct Cli {
    /// How log lines look: `auto` is text on a terminal and
    /// syslog-prefixed lines without timestamps for the service manager.
    #[arg(long, global = true, value_enum, default_value_t = cli::logging::LogFormat::Auto)]
    log_format: cli::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run(cli::run::Args),
    /// Check a configuration file; print every problem with its location.
    CheckConfig(cli::check_config::Args),
    /// The listeners on a port below 1024 (which need CAP_NET_BIND_SERVICE),
    /// or the systemd drop-in that grants it: what the unit's generator runs.
    LowPorts(cli::low_ports::Args),
    /// Show queue depth and totals per destination from the journal.
    Status(cli::status::Args),
    /// Print one ASTM endpoint's line traffic, with timestamps in the site's
    /// time zone and control characters made visible: attaches to the
    /// running gateway, or runs one when none is running.
    Trace(cli::trace::Args),
    /// Send HL7 v2 messages from files to an MLLP receiver and show each
    /// answer, exactly as the gateway's MLLP sender would deliver them.
    Send(cli::send::Args),
    /// Put dead deliveries back in the queue; works while the gateway runs.
    Retry(cli::retry::Args),
    /// Resume a destination its circuit breaker paused; works while the
    /// gateway runs.
    Resume(cli::resume::Args),
    /// Orders kept for ASTM analyzers (host query, download).
    Order {
        #[command(subcommand)]
        command: cli::order::Command,
    },
    /// Code maps: vendor test codes to LOINC (LIVD files).
    Codes {
        #[command(subcommand)]
        command: cli::codes::Command,
    },
    /// Wipe the journal and the configuration back to the defaults,
    /// keeping the device's identity (hub certificate, site and device
    /// names, update keys and slots); the gateway must be stopped.
    FactoryReset(cli::factory_reset::Args),
    /// Print the admin page's one-time first-run setup code (made at the
    /// first start with no user; gone once the first administrator exists).
    SetupCode(cli::setup_code::Args),
    /// Integration templates: ready endpoints and routes for common
    /// integrations (lab analyzers, PACS, pharmacy, accounting, ...).
    Template {
        #[command(subcommand)]
        command: cli::template::Command,
    },
    /// Manage the admin page's users.
    User {
        #[command(subcommand)]
        command: cli::user::Command,
    },
}

fn main() -> ExitCode {
    let args = Cli::parse();
    cli::logging::init(&ecko_hal::LinuxTerminal, args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ecko-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match &args.command {
            Command::Run(a) => cli::run::run(a).await,
            Command::CheckConfig(a) => cli::check_config::check_config(a),
            Command::LowPorts(a) => cli::low_ports::low_ports(a),
            Command::Status(a) => cli::status::status(a),
            Command::Trace(a) => cli::trace::trace(a).await,
            Command::Send(a) => cli::send::send(a).await,
            Command::Retry(a) => cli::retry::retry(a),
            Command::Resume(a) => cli::resume::resume(a),
            Command::Codes { command } => cli::codes::codes(command),
            Command::FactoryReset(a) => {
                cli::factory_reset::factory_reset(a, &ecko_hal::LinuxTerminal)
            }
            Command::SetupCode(a) => cli::setup_code::setup_code(a),
            Command::Order { command } => cli::order::order(command).await,
            Command::Template { command } => {
                cli::template::template(command, &ecko_hal::LinuxTerminal)
            }
            Command::User { command } => cli::user::user(command, &ecko_hal::LinuxTerminal).await,
        }
    });
    // Whatever still blocks a thread of the pool (a read of the reset
    // button's device, which only a press ends) is not waited for: the
    // work that matters was awaited above.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}
