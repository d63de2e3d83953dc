//! What `ecko-gateway low-ports` reads, fed arbitrary text: the service's
//! environment file and a configuration (split at the first NUL byte; the
//! configuration's `${NAME}` taken from the file), then the listeners below
//! 1024 found in it, and the same text as a `/proc/self/status` for the
//! capability check. Never a panic; every listener found is on a port from
//! 1 to 1023.
#![no_main]

use ecko_gateway::config::{environment_file, Config};
use ecko_gateway::listeners;
use ecko_gateway::net::low_port;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = low_port::effective_has_net_bind_service(text);
    let (environment, config) = text.split_once('\0').unwrap_or((text, ""));
    let vars = environment_file::parse(environment);
    for (name, _) in &vars {
        assert!(!name.is_empty() && !name.contains('='), "{name:?}");
    }
    let Ok(config) = Config::parse(config, "fuzz.toml", |n| vars.get(n).cloned()) else {
        return;
    };
    for l in listeners::below(&config, 1024) {
        assert!((1..1024).contains(&l.port), "{l:?}");
        assert_eq!(low_port::port_of(&l.address), Some(l.port));
    }
});
