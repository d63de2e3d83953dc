//! `ecko-gateway codes import`: a LIVD file (FHIR Bundle or the
//! spreadsheet's CSV) as the code map of one inbound endpoint, written into
//! the configuration file where its FHIR destinations read it.
//!
//! Every code is listed with what the import does to it. Conflicts with
//! what the file maps already are listed and nothing is written (exit 1)
//! unless `--replace`; `--dry-run` writes nothing. The file is checked by
//! the same loader as at start before it replaces the old one atomically,
//! so a running gateway can read it again with `systemctl reload` (SIGHUP),
//! which also keeps the previous version.

use crate::config::edit::{ConfigDocument, EditError};
use crate::config::history::{write_atomically, HistoryError};
use crate::config::{Config, ConfigErrors};
use crate::control::code_maps::{self, ImportError};
use ecko_fhir::livd::{self, LivdError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import a LIVD file (FHIR JSON or CSV) as an endpoint's code map.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The LIVD file.
    pub file: PathBuf,
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The inbound endpoint (the analyzer) whose codes the file maps.
    #[arg(long)]
    pub endpoint: String,
    /// The instrument model to take from a file covering several.
    #[arg(long)]
    pub model: Option<String>,
    /// The FHIR endpoint to write the map to; repeat for several. Default:
    /// every FHIR endpoint a route from the endpoint reaches.
    #[arg(long = "into")]
    pub into: Vec<String>,
    /// Overwrite codes the configuration maps differently.
    #[arg(long)]
    pub replace: bool,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("reading {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a LIVD file")]
    Livd {
        path: String,
        #[source]
        source: LivdError,
    },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("{0} conflicting codes: nothing written (--replace overwrites them)")]
    Conflicts(usize),
    #[error("the edited configuration does not load; nothing written")]
    Invalid(#[source] ConfigErrors),
    #[error(transparent)]
    Write(#[from] HistoryError),
}

pub fn codes(command: &Command) -> ExitCode {
    match command {
        Command::Import(args) => super::report(import(args)),
    }
}

fn import(args: &ImportArgs) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let bytes = read(&args.file)?;
    let rows = livd::read(&bytes).map_err(|source| Error::Livd {
        path: args.file.display().to_string(),
        source,
    })?;
    let plan = code_maps::plan_import(
        &config,
        &rows,
        &args.endpoint,
        args.model.as_deref(),
        &args.into,
    )?;
    for line in plan.lines(args.replace) {
        println!("{line}");
    }
    let writes = plan.writes(args.replace).len();
    println!(
        "{} codes: {} to write, {} unchanged, {} conflicting, {} skipped; into {}",
        plan.codes.len() + plan.skipped.len(),
        writes,
        plan.unchanged.len(),
        plan.conflicts.len(),
        plan.skipped.len(),
        plan.into.join(", ")
    );
    if !plan.conflicts.is_empty() && !args.replace {
        return Err(Error::Conflicts(plan.conflicts.len()));
    }
    if args.dry_run || writes == 0 {
        println!("nothing written");
        return Ok(());
    }
    let text = String::from_utf8_lossy(&read(&args.config)?).into_owned();
    let mut doc = ConfigDocument::parse(&text)?;
    code_maps::apply(&plan, &mut doc, args.replace)?;
    let edited = doc.to_text();
    let name = args.config.display().to_string();
    Config::parse(&edited, &name, |var| std::env::var(var).ok()).map_err(Error::Invalid)?;
    write_atomically(&args.config, &edited)?;
    println!(
        "written to {name}; a running gateway applies it on reload (systemctl reload ecko-gateway, or SIGHUP)"
    );
    Ok(())
}
