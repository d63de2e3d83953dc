//! `ecko-gateway template list|show|apply`: the integration templates
//! embedded in the binary ([`crate::config::integrations`]).
//!
//! `apply` fills a template with `--set key=value` values (asking on the
//! terminal for those still needed, never guessing them when there is no
//! terminal), adds it to the configuration file with its comments and the
//! file's own kept, checks the result with the loader as at start, and
//! replaces the file atomically; a name in use, a value the template
//! refuses or a file that would not load writes nothing (exit 1).

use crate::config::integrations::{self, Param, RenderError, Template};
use crate::control::integrations::{apply_to_file, FileError};
use ecko_hal::{Terminal, TerminalError};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the integration templates.
    List,
    /// Print a template: what it adds and maps, its parameters, and the
    /// commented configuration fragment.
    Show { name: String },
    /// Add a template to a configuration file.
    Apply(ApplyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    pub name: String,
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// A parameter's value; repeat for each (`--set url=https://…`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("`--set {0}`: expected KEY=VALUE")]
    Set(String),
    #[error("template `{template}` needs {missing}: give them with --set KEY=VALUE")]
    Missing { template: String, missing: String },
    #[error("reading a value")]
    Ask(#[source] std::io::Error),
    #[error(transparent)]
    Secret(#[from] TerminalError),
    #[error(transparent)]
    File(#[from] FileError),
}

pub fn template(command: &Command, terminal: &dyn Terminal) -> ExitCode {
    let result = match command {
        Command::List => {
            list();
            Ok(())
        }
        Command::Show { name } => show(name),
        Command::Apply(args) => apply(args, terminal),
    };
    super::report(result)
}

fn list() {
    let templates = integrations::all();
    let width = templates.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in templates {
        println!("{:width$}  {}", t.name, t.title);
    }
}

fn show(name: &str) -> Result<(), Error> {
    let t = integrations::named(name)?;
    println!(
        "{} — {}\n\n{}\n\nMaps: {}\n",
        t.name, t.title, t.summary, t.maps
    );
    println!("Parameters (--set KEY=VALUE):");
    for p in &t.params {
        let default = match &p.default {
            Some(d) => format!("default {d}"),
            None => "required".to_string(),
        };
        let choices = if p.choices.is_empty() {
            String::new()
        } else {
            format!("; one of {}", p.choices.join(", "))
        };
        println!(
            "  {}  {} ({default}{choices}; e.g. {})\n      {}",
            p.key, p.label, p.example, p.help
        );
    }
    println!("\n{}", t.text.trim_end());
    Ok(())
}

fn apply(args: &ApplyArgs, terminal: &dyn Terminal) -> Result<(), Error> {
    let t = integrations::named(&args.name)?;
    let mut values = BTreeMap::new();
    for s in &args.set {
        let (k, v) = s.split_once('=').ok_or_else(|| Error::Set(s.clone()))?;
        values.insert(k.trim().to_string(), v.to_string());
    }
    ask_missing(t, &mut values, terminal)?;
    let added = apply_to_file(&args.config, t.name, &values, |var| std::env::var(var).ok())?;
    println!(
        "added to {}: endpoints {}; routes {}",
        args.config.display(),
        added.endpoints.join(", "),
        added.routes.join(", ")
    );
    println!("a running gateway applies it on reload (systemctl reload ecko-gateway, or SIGHUP)");
    Ok(())
}

/// Asks on the terminal for every value the template still needs; without
/// a terminal, names them.
fn ask_missing(
    t: &Template,
    values: &mut BTreeMap<String, String>,
    terminal: &dyn Terminal,
) -> Result<(), Error> {
    let missing: Vec<Param> = t.missing(values).into_iter().cloned().collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !terminal.stderr_is_terminal() {
        return Err(Error::Missing {
            template: t.name.to_string(),
            missing: missing
                .iter()
                .map(|p| format!("`{}` ({})", p.key, p.label))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let stdin = std::io::stdin();
    for p in missing {
        let prompt = format!("{} ({}; e.g. {}): ", p.label, p.help, p.example);
        let value = if p.secret {
            terminal.read_secret(&prompt)?
        } else {
            eprint!("{prompt}");
            let mut line = String::new();
            stdin.lock().read_line(&mut line).map_err(Error::Ask)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        };
        values.insert(p.key.clone(), value);
    }
    Ok(())
}
