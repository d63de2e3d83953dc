//! `ecko-gateway order`: orders kept for ASTM analyzers (host query,
//! download), added and listed beside a running gateway or not.

use super::Refused;
use crate::config::{Config, ConfigErrors};
use crate::control::orders;
use crate::journal::NewOrder;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add an order for an analyzer; works while the gateway runs.
    Add(AddArgs),
    /// List orders (of one analyzer, or all).
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The ASTM endpoint the order is for.
    #[arg(long)]
    pub analyzer: String,
    #[arg(long)]
    pub specimen: String,
    /// A test code as the analyzer knows it; repeat for several.
    #[arg(long = "test", required = true)]
    pub tests: Vec<String>,
    #[arg(long, default_value = "")]
    pub patient: String,
    /// Patient name as `family^given`.
    #[arg(long, default_value = "")]
    pub name: String,
    /// `R` routine, `S` stat.
    #[arg(long, default_value = "R")]
    pub priority: String,
    /// Only for the analyzer whose H record names this sender (H-5),
    /// when several share the endpoint.
    #[arg(long)]
    pub sender: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    #[arg(long)]
    pub analyzer: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Refused(#[from] Refused),
}

pub async fn order(command: &Command) -> ExitCode {
    super::report(match command {
        Command::Add(args) => add(args).await,
        Command::List(args) => list(args),
    })
}

async fn add(args: &AddArgs) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let order = NewOrder {
        analyzer: args.analyzer.clone(),
        specimen_id: args.specimen.clone(),
        patient_id: args.patient.clone(),
        patient_name: args
            .name
            .split('^')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect(),
        tests: args.tests.clone(),
        priority: args.priority.clone(),
        sender: args.sender.clone(),
    };
    let id = orders::add(&config, &super::actor(), order)
        .await
        .map_err(Refused)?;
    println!("order {id} added");
    Ok(())
}

fn list(args: &ListArgs) -> Result<(), Error> {
    let config = Config::load(&args.config)?;
    let orders =
        orders::list(&config, &super::actor(), args.analyzer.as_deref()).map_err(Refused)?;
    println!(
        "{:>6} {:<16} {:<16} {:<16} {:<10} {:<9} tests",
        "id", "analyzer", "sender", "specimen", "patient", "state"
    );
    for o in orders {
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
