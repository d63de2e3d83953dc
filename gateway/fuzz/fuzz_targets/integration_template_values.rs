//! Fuzz an integration template filled with values a user typed (the
//! admin page's form, `template apply --set`): the first byte picks the
//! template, the rest split on NUL are its parameters' values in order.
//! Rendering answers with a fragment or a refusal, never a panic; a
//! fragment the editor adds to the shipped configuration keeps it TOML
//! the editor reads again, and the loader judges it without panicking.

#![no_main]

use ecko_gateway::config::edit::ConfigDocument;
use ecko_gateway::config::integrations;
use ecko_gateway::config::Config;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const SHIPPED: &str = include_str!("../../../config/gateway.toml");

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let all = integrations::all();
    let template = &all[pick as usize % all.len()];
    let text = String::from_utf8_lossy(rest);
    let values: BTreeMap<String, String> = template
        .params
        .iter()
        .zip(text.split('\0'))
        .map(|(p, v)| (p.key.clone(), v.to_string()))
        .collect();
    let Ok(fragment) = template.render(&values) else {
        return;
    };
    let Ok(mut doc) = ConfigDocument::parse(SHIPPED) else {
        return;
    };
    if doc.add_fragment(&fragment).is_ok() {
        let edited = doc.to_text();
        assert!(
            ConfigDocument::parse(&edited).is_ok(),
            "the edited file is no longer TOML"
        );
        let _ = Config::parse(&edited, "fuzz.toml", |_| None);
    }
});
