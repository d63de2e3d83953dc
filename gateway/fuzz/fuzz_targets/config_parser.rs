//! Fuzz the configuration loader: any text (with any environment) must give
//! a configuration or located errors, never a panic, and every error must
//! point inside the text it came from.

#![no_main]

use ecko_gateway::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "SET" => Some("2575".to_string()),
        "QUOTED" => Some("a\"b\\c'".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Err(errors) = Config::parse(text, "fuzz.toml", env) {
        assert!(!errors.0.is_empty(), "an error result without errors");
        let lines = text.matches('\n').count() + 1;
        for e in &errors.0 {
            assert!(e.line <= lines, "error on line {} of {lines}: {e}", e.line);
        }
    }
});
