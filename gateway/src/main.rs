//! `ecko-gateway`: the command line. Parses arguments and calls the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use ecko_gateway::app::{shutdown_signal, Gateway, StartOptions};
use ecko_gateway::config::{Config, EndpointKind};
use ecko_gateway::journal::{orders, JournalReader, NewOrder};
use ecko_gateway::sources::astm::live_trace;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ecko-gateway", version, about = "Ecko Edge hospital gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file; print every problem with its location.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show queue depth and totals per destination from the journal.
    Status {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print one ASTM endpoint's line traffic, with timestamps in the site's
    /// time zone and control characters made visible: attaches to the
    /// running gateway, or runs one when none is running.
    Trace {
        #[arg(value_name = "ENDPOINT")]
        endpoint: String,
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Send HL7 v2 messages from files to an MLLP receiver and show each
    /// answer, exactly as the gateway's MLLP sender would deliver them.
    Send {
        /// The receiver, `host:port`.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Use TLS, verifying the receiver against this CA bundle (PEM).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// Client certificate (PEM) for mutual TLS; needs `--key` and `--ca`.
        #[arg(long, value_name = "FILE", requires_all = ["key", "ca"])]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// The name the receiver's certificate must carry (default: the host).
        #[arg(long, requires = "ca")]
        server_name: Option<String>,
        /// How long to wait to connect and for each answer, e.g. `10s`.
        #[arg(long, default_value = "30s", value_parser = parse_span)]
        timeout: std::time::Duration,
        /// Files of one or more messages (MSH-delimited; MLLP frames and
        /// batch envelopes are tolerated).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Put dead deliveries back in the queue; works while the gateway runs.
    Retry {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Only deliveries to this destination endpoint.
        #[arg(long, value_name = "ENDPOINT")]
        destination: Option<String>,
        /// Only this message's deliveries (its id in the journal).
        #[arg(long, value_name = "ID")]
        message: Option<i64>,
        /// List what would be requeued; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Orders kept for ASTM analyzers (host query, download).
    Order {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// Manage the admin page's users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum OrderCommand {
    /// Add an order for an analyzer; works while the gateway runs.
    Add {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The ASTM endpoint the order is for.
        #[arg(long)]
        analyzer: String,
        #[arg(long)]
        specimen: String,
        /// A test code as the analyzer knows it; repeat for several.
        #[arg(long = "test", required = true)]
        tests: Vec<String>,
        #[arg(long, default_value = "")]
        patient: String,
        /// Patient name as `family^given`.
        #[arg(long, default_value = "")]
        name: String,
        /// `R` routine, `S` stat.
        #[arg(long, default_value = "R")]
        priority: String,
        /// Only for the analyzer whose H record names this sender (H-5),
        /// when several share the endpoint.
        #[arg(long)]
        sender: Option<String>,
    },
    /// List orders (of one analyzer, or all).
    List {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        analyzer: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (asked for,
    /// without echo, on a terminal).
    Add {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, default_value = "viewer", value_parser = ["admin", "operator", "viewer"])]
        role: String,
        name: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECKO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Under systemd stderr goes to the journal, where colour codes are
        // noise in every line a field engineer reads.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                let problems = ecko_gateway::preflight::check(&c);
                if !problems.is_empty() {
                    for p in problems {
                        eprintln!("{}: {p}", file.display());
                    }
                    return ExitCode::from(2);
                }
                println!(
                    "{}: ok ({} endpoints, {} routes)",
                    file.display(),
                    c.endpoints.len(),
                    c.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ecko-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::User {
            command: UserCommand::Add { config, role, name },
        } => report(user_add(&config, &role, &name)),
        Command::Status { config } => report(status(&config)),
        Command::Trace { endpoint, config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(2);
                }
            };
            if !matches!(
                config.endpoint(&endpoint).map(|e| &e.kind),
                Some(EndpointKind::AstmSerial(_) | EndpointKind::AstmTcp(_))
            ) {
                eprintln!(
                    "ecko-gateway: `{endpoint}` is not an ASTM endpoint of this configuration"
                );
                return ExitCode::from(2);
            }
            report(trace(config, &endpoint))
        }
        Command::Order { command } => report(order(command)),
        Command::Send {
            to,
            ca,
            cert,
            key,
            server_name,
            timeout,
            files,
        } => {
            let tls = ca.map(|ca| ecko_gateway::config::TlsSettings {
                cert,
                key,
                ca: Some(ca),
                require_client_cert: false,
                server_name,
            });
            let target = ecko_gateway::send::Target {
                connect: to,
                tls,
                timeout,
            };
            match send(&target, &files) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("ecko-gateway: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Retry {
            config,
            destination,
            message,
            dry_run,
        } => report(retry(&config, destination, message, dry_run)),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ecko-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn order(command: OrderCommand) -> anyhow::Result<()> {
    let load = |path: &std::path::Path| Config::load(path).map_err(|e| anyhow::anyhow!("{e}"));
    match command {
        OrderCommand::Add {
            config,
            analyzer,
            specimen,
            tests,
            patient,
            name,
            priority,
            sender,
        } => {
            let config = load(&config)?;
            if !matches!(
                config.endpoint(&analyzer).map(|e| &e.kind),
                Some(EndpointKind::AstmSerial(_) | EndpointKind::AstmTcp(_))
            ) {
                anyhow::bail!("`{analyzer}` is not an ASTM endpoint of this configuration");
            }
            let path = ecko_gateway::config::resolve(&config.journal.path);
            let order = NewOrder {
                analyzer,
                specimen_id: specimen,
                patient_id: patient,
                patient_name: name
                    .split('^')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                tests,
                priority,
                sender,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let id = runtime.block_on(orders::add_order_at(&path, order))?;
            println!("order {id} added");
            Ok(())
        }
        OrderCommand::List { config, analyzer } => {
            let config = load(&config)?;
            let path = ecko_gateway::config::resolve(&config.journal.path);
            println!(
                "{:>6} {:<16} {:<16} {:<16} {:<10} {:<9} tests",
                "id", "analyzer", "sender", "specimen", "patient", "state"
            );
            for o in orders::read_orders(&path, analyzer.as_deref())? {
                println!(
                    "{:>6} {:<16} {:<16} {:<16} {:<10} {:<9} {}",
                    o.id,
                    o.analyzer,
                    o.sender.as_deref().unwrap_or("*"),
                    o.specimen_id,
                    o.patient_id,
                    o.state.as_str(),
                    o.tests.join(",")
                );
            }
            Ok(())
        }
    }
}

fn parse_span(s: &str) -> Result<std::time::Duration, String> {
    ecko_gateway::config::parse_duration(s)
}

/// Sends every message of `files`; `Ok(true)` when all were accepted.
fn send(target: &ecko_gateway::send::Target, files: &[PathBuf]) -> anyhow::Result<bool> {
    use ecko_gateway::sinks::Outcome;
    let mut messages = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        let found = ecko_gateway::send::split_messages(&bytes);
        anyhow::ensure!(
            !found.is_empty(),
            "{}: no MSH segment, no message",
            f.display()
        );
        messages.extend(found);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let sent = runtime.block_on(ecko_gateway::send::send(target, messages))?;
    let mut accepted = 0;
    for s in &sent {
        let (verdict, text) = match &s.outcome {
            Outcome::Delivered { response } => {
                accepted += 1;
                ("accepted", response.clone().unwrap_or_default())
            }
            Outcome::Retryable { error, .. } => ("not accepted", error.clone()),
            Outcome::Permanent { error } => ("refused", error.clone()),
            Outcome::NotAttempted => ("not sent", String::new()),
        };
        println!(
            "{:<20} {:<12} {:>6} ms  {text}",
            s.control_id,
            verdict,
            s.took.as_millis()
        );
    }
    println!(
        "{accepted} of {} messages accepted by {}",
        sent.len(),
        target.connect
    );
    Ok(accepted == sent.len())
}

fn retry(
    config: &std::path::Path,
    destination: Option<String>,
    message_id: Option<i64>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(d) = &destination {
        anyhow::ensure!(
            config.endpoint(d).is_some_and(|e| e.direction.sends()),
            "`{d}` is not a destination endpoint of this configuration"
        );
    }
    let actor = format!(
        "cli:{}",
        std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into())
    );
    let selection = ecko_gateway::journal::external::DeadSelection {
        destination,
        message_id,
    };
    let path = ecko_gateway::config::resolve(&config.journal.path);
    let rows = ecko_gateway::journal::external::retry_dead_at(&path, &selection, &actor, dry_run)?;
    for r in &rows {
        println!(
            "message {:>8}  delivery {:>8}  to {}",
            r.message_id, r.outbox_id, r.destination
        );
    }
    let verb = if dry_run {
        "would be requeued"
    } else {
        "requeued"
    };
    println!("{} dead deliveries {verb}", rows.len());
    Ok(())
}

fn run(config: Config) -> anyhow::Result<()> {
    run_with(config, None)
}

/// `trace`: attach to the running gateway's line trace; without one, run a
/// gateway here and print its trace.
fn trace(config: Config, endpoint: &str) -> anyhow::Result<()> {
    let socket = live_trace::socket_path(&ecko_gateway::config::resolve(&config.journal.path));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    eprintln!("tracing `{endpoint}` (Ctrl-C to stop)");
    match runtime.block_on(live_trace::follow(
        &socket,
        endpoint,
        &mut tokio::io::stdout(),
    )) {
        Ok(()) => {
            eprintln!("the gateway stopped");
            Ok(())
        }
        Err(live_trace::TraceError::NoGateway(_)) => {
            drop(runtime);
            eprintln!("no gateway is running on this journal; starting one to trace `{endpoint}`");
            run_with(config, Some(endpoint.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the gateway until a signal; `trace` also prints that endpoint's
/// line trace to standard output.
fn run_with(config: Config, trace: Option<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let gateway = Gateway::start_with_options(&config, StartOptions::default()).await?;
        if let Some(endpoint) = trace {
            let socket = live_trace::socket_path(gateway.journal.path());
            tokio::spawn(async move {
                if let Err(e) =
                    live_trace::follow(&socket, &endpoint, &mut tokio::io::stdout()).await
                {
                    tracing::error!(error = %e, "cannot show the line trace");
                }
            });
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            journal = %gateway.journal.path().display(),
            endpoints = config.endpoints.len(),
            "gateway running"
        );
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        gateway.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

fn status(config: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = ecko_gateway::config::resolve(&config.journal.path);
    let reader =
        JournalReader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    println!(
        "{:<24} {:>9} {:>9} {:>11} {:>7}",
        "destination", "queued", "in flight", "delivered", "dead"
    );
    for c in reader.counts()? {
        println!(
            "{:<24} {:>9} {:>9} {:>11} {:>7}",
            c.destination, c.queued, c.leased, c.delivered, c.dead
        );
    }
    Ok(())
}

fn user_add(config: &std::path::Path, role: &str, name: &str) -> anyhow::Result<()> {
    let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let password = read_password()?;
    ecko_gateway::admin::add_user(&config, name, role, &password)?;
    println!("user {name} added with role {role}");
    Ok(())
}

/// One line from stdin; on a terminal, asked for without echo.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        eprint!("password: ");
        let saved = tcgetattr(&stdin).context("reading terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
        let read = stdin.lock().read_line(&mut line);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
        eprintln!();
        read.context("reading the password")?;
    } else {
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
