//! The addresses a configuration makes the gateway listen on: the admin
//! page and every source endpoint that binds a port (each type says which,
//! [`crate::endpoints::EndpointType::listen_address`]), as the next start
//! would bind them: enabled endpoints, and those that run while disabled.
//!
//! The unit's generator asks for the ones below 1024 (`ecko-gateway
//! low-ports`), to grant `CAP_NET_BIND_SERVICE` only when one is there.

use crate::config::Config;
use crate::net::low_port::port_of;

/// The name the admin page goes by among the listeners.
pub const ADMIN: &str = "[admin]";

/// One address the gateway binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The endpoint's name, or [`ADMIN`].
    pub name: String,
    pub address: String,
    /// 0: any free port.
    pub port: u16,
}

/// Every address the configuration binds, the admin page first.
pub fn of(config: &Config) -> Vec<Listener> {
    let admin = config
        .admin
        .enabled
        .then(|| (ADMIN.to_string(), config.admin.listen_address()));
    let endpoints = config
        .endpoints
        .iter()
        .filter(|e| crate::endpoints::runs(e))
        .filter_map(|e| {
            let address = crate::endpoints::of(&e.kind).listen_address(&e.kind)?;
            Some((e.name.clone(), address.to_string()))
        });
    admin
        .into_iter()
        .chain(endpoints)
        .filter_map(|(name, address)| {
            let port = port_of(&address)?;
            Some(Listener {
                name,
                address,
                port,
            })
        })
        .collect()
}

/// The listeners on a port below `unprivileged_start` (never port 0).
pub fn below(config: &Config, unprivileged_start: u16) -> Vec<Listener> {
    of(config)
        .into_iter()
        .filter(|l| l.port != 0 && l.port < unprivileged_start)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(
            &format!("[journal]\npath = \"j.db\"\n{text}"),
            "t.toml",
            |_| None,
        )
        .unwrap()
    }

    #[test]
    fn every_listening_type_and_the_admin_page_are_found_and_senders_are_not() {
        let c = config(
            r#"
[[endpoint]]
name = "his"
type = "mllp"
listen = "0.0.0.0:104"
[[endpoint]]
name = "lis"
type = "mllp"
connect = "10.0.0.9:2575"
[[endpoint]]
name = "analyzer"
type = "astm-tcp"
role = "server"
address = "0.0.0.0:5100"
[[endpoint]]
name = "remote-analyzer"
type = "astm-tcp"
role = "client"
address = "10.0.0.8:80"
[[endpoint]]
name = "pacs"
type = "dicom"
listen = "[::]:11112"
[[endpoint]]
name = "api"
type = "rest"
listen = "127.0.0.1:8080"
plain_http = true
[[endpoint.paths]]
path = "/fhir"
[admin]
listen = "0.0.0.0:443"
"#,
        );
        let found: Vec<(String, u16)> = of(&c).into_iter().map(|l| (l.name, l.port)).collect();
        let want = [
            ("[admin]", 443),
            ("his", 104),
            ("analyzer", 5100),
            ("pacs", 11112),
            ("api", 8080),
        ];
        assert_eq!(
            found,
            want.map(|(n, p)| (n.to_string(), p)).to_vec(),
            "{found:?}"
        );
        let low: Vec<u16> = below(&c, 1024).into_iter().map(|l| l.port).collect();
        assert_eq!(low, [443, 104]);
    }

    #[test]
    fn a_disabled_endpoint_binds_only_when_its_type_runs_it_disabled() {
        let c = config(
            r#"
[[endpoint]]
name = "his"
type = "mllp"
listen = "0.0.0.0:104"
enabled = false
[[endpoint]]
name = "analyzer"
type = "astm-tcp"
role = "server"
address = "0.0.0.0:105"
enabled = false
[admin]
enabled = false
"#,
        );
        let low: Vec<String> = below(&c, 1024).into_iter().map(|l| l.name).collect();
        assert_eq!(low, ["his"], "a disabled MLLP listener answers AR");
    }

    #[test]
    fn port_zero_is_any_free_port_and_never_low() {
        let c = config("[admin]\nlisten = \"127.0.0.1:0\"\ntls = false\n");
        assert_eq!(of(&c).len(), 1);
        assert!(below(&c, 1024).is_empty());
    }
}
