//! `ecko-gateway check-config FILE`: every problem of a configuration file
//! with its location, including the ones only starting it would find
//! (certificates that cannot be read).

use crate::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// 0 and a summary when the file would start; 2 and every problem when not.
pub fn check_config(args: &Args) -> ExitCode {
    let file = &args.file;
    match Config::load(file) {
        Ok(c) => {
            let problems = crate::preflight::check(&c);
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
    }
}
