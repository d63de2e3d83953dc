//! `ecko-gateway low-ports --config FILE`: the listeners of a configuration
//! on a port below 1024, which need `CAP_NET_BIND_SERVICE`; with
//! `--systemd-drop-in`, the unit drop-in granting it (nothing when no port
//! is that low). The unit's generator (`ecko-gateway-generator`) runs this
//! at boot and at every `systemctl daemon-reload`: it reads the file and the
//! service's environment file only, binds nothing and opens no journal.

use crate::config::{environment_file, Config, ConfigErrors};
use crate::listeners::{self, Listener};
use crate::net::low_port::DEFAULT_UNPRIVILEGED_START;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration the next start runs on.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The service's `EnvironmentFile=`, whose variables `${NAME}` in the
    /// configuration may name (a port); a missing file sets nothing.
    #[arg(long, value_name = "FILE")]
    pub environment_file: Option<PathBuf>,
    /// Print the `[Service]` drop-in that grants the capability instead of
    /// the list.
    #[arg(long)]
    pub systemd_drop_in: bool,
}

/// 0 with the listeners (or the drop-in, or nothing); 2 when the
/// configuration does not load, with its problems.
pub fn low_ports(args: &Args) -> ExitCode {
    let config = match load(&args.config, args.environment_file.as_deref()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let low = listeners::below(&config, DEFAULT_UNPRIVILEGED_START);
    if args.systemd_drop_in {
        if !low.is_empty() {
            print!("{}", drop_in(&args.config, &low));
        }
    } else {
        for l in &low {
            println!("{}\t{}\t{}", l.port, l.name, l.address);
        }
    }
    ExitCode::SUCCESS
}

/// The configuration with `${NAME}` taken from the environment file first,
/// then from this process's environment.
fn load(path: &Path, environment_file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let vars = environment_file
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| environment_file::parse(&t))
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![crate::config::ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    Config::parse(&text, &file, |name| {
        vars.get(name).cloned().or_else(|| std::env::var(name).ok())
    })
}

/// The drop-in: both capability lines, after comments naming the file and
/// each port. An empty `CapabilityBoundingSet=` in the unit then this
/// assignment leaves exactly this capability.
pub fn drop_in(config: &Path, low: &[Listener]) -> String {
    let mut text = format!(
        "# Written by ecko-gateway-generator from {} at boot or daemon-reload:\n\
         # these listeners need CAP_NET_BIND_SERVICE (ports below {DEFAULT_UNPRIVILEGED_START}).\n",
        config.display()
    );
    for l in low {
        text.push_str(&format!(
            "#   port {} ({}, {})\n",
            l.port, l.name, l.address
        ));
    }
    text.push_str(
        "[Service]\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_names_each_port_and_grants_only_the_bind_capability() {
        let low = [Listener {
            name: "pacs".into(),
            address: "0.0.0.0:104".into(),
            port: 104,
        }];
        let text = drop_in(Path::new("/var/lib/ecko/gateway.toml"), &low);
        assert!(
            text.contains("#   port 104 (pacs, 0.0.0.0:104)\n"),
            "{text}"
        );
        let settings: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            settings,
            [
                "[Service]",
                "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                "CapabilityBoundingSet=CAP_NET_BIND_SERVICE"
            ]
        );
    }

    #[test]
    fn a_port_from_the_environment_file_is_seen_as_the_service_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            "[journal]\npath = \"j.db\"\n[admin]\nlisten = \"0.0.0.0:${ECKO_TEST_ADMIN_PORT:-8443}\"\n",
        )
        .unwrap();
        let env = dir.path().join("environment");
        std::fs::write(&env, "ECKO_TEST_ADMIN_PORT=443\n").unwrap();
        let with = load(&config, Some(&env)).unwrap();
        let ports: Vec<u16> = listeners::below(&with, 1024)
            .iter()
            .map(|l| l.port)
            .collect();
        assert_eq!(ports, [443]);
        let without = load(&config, Some(&dir.path().join("missing"))).unwrap();
        assert!(listeners::below(&without, 1024).is_empty());
    }
}
