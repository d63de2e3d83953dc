use super::*;
use crate::config::{Config, EndpointKind};

const SHIPPED: &str = include_str!("../../../../config/gateway.toml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect()
}

fn references(text: &str) -> Vec<&str> {
    text.match_indices("${")
        .map(|(i, _)| &text[i..i + text[i..].find('}').unwrap() + 1])
        .collect()
}

#[test]
fn an_untouched_document_comes_back_byte_for_byte() {
    let doc = ConfigDocument::parse(SHIPPED).unwrap();
    assert_eq!(doc.to_text(), SHIPPED);
}

#[test]
fn an_endpoint_edit_keeps_every_comment_and_environment_reference_of_untouched_values() {
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    doc.edit_endpoint(
        "hub",
        &[
            ("max_batch".into(), Change::Set(EditValue::Integer(5))),
            (
                "timeout".into(),
                Change::Set(EditValue::String("10s".into())),
            ),
        ],
    )
    .unwrap();
    let text = doc.to_text();
    assert_eq!(comments(&text), comments(SHIPPED));
    assert_eq!(references(&text), references(SHIPPED));
    assert!(text.contains("max_batch = 5\n"), "{text}");
    assert!(!text.contains("max_batch = 20"));
    // Only the edited lines differ.
    let changed: Vec<_> = text
        .lines()
        .filter(|l| !SHIPPED.lines().any(|o| o == *l))
        .collect();
    assert_eq!(changed, ["max_batch = 5", "timeout = \"10s\""]);
    let config = Config::parse(&text, "t.toml", no_env).unwrap();
    let hub = config.endpoint("hub").unwrap();
    assert_eq!(hub.timeout, std::time::Duration::from_secs(10));
    let EndpointKind::Fhir(f) = &hub.kind else {
        panic!()
    };
    assert_eq!(f.max_batch, 5);
    assert_eq!(f.url, "http://127.0.0.1:8080/fhir/R4");
}

#[test]
fn values_are_shown_as_written_with_their_references_not_their_expansion() {
    let doc = ConfigDocument::parse(SHIPPED).unwrap();
    let settings = doc.endpoint_settings("mllp-in").unwrap();
    assert!(settings.contains(&("listen".into(), "127.0.0.1:${ECKO_MLLP_PORT:-2575}".into())));
    assert_eq!(
        doc.section_value("site", "time_zone").as_deref(),
        Some("${ECKO_TIME_ZONE:-UTC}")
    );
}

const BARE: &str = r#"[journal]
path = "j.db"
retention_days = ${ECKO_RETENTION:-30} # days

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:2575"
max_connections = ${ECKO_CONNECTIONS:-8}
tls = { cert = "c.pem", key = "k.pem" }
"#;

#[test]
fn a_reference_outside_a_string_survives_an_edit_of_its_neighbours() {
    let mut doc = ConfigDocument::parse(BARE).unwrap();
    let settings = doc.endpoint_settings("lab").unwrap();
    assert!(settings.contains(&("max_connections".into(), "${ECKO_CONNECTIONS:-8}".into())));
    assert!(settings.contains(&("tls.cert".into(), "c.pem".into())));
    doc.edit_endpoint(
        "lab",
        &[
            (
                "tls.key".into(),
                Change::Set(EditValue::String("other.pem".into())),
            ),
            (
                "frame_timeout".into(),
                Change::Set(EditValue::Reference("${FT:-30s}".into())),
            ),
        ],
    )
    .unwrap();
    let text = doc.to_text();
    assert!(
        text.contains("retention_days = ${ECKO_RETENTION:-30} # days\n"),
        "{text}"
    );
    assert!(
        text.contains("max_connections = ${ECKO_CONNECTIONS:-8}\n"),
        "{text}"
    );
    assert!(
        text.contains("tls = { cert = \"c.pem\", key = \"other.pem\" }"),
        "{text}"
    );
    assert!(text.contains("frame_timeout = ${FT:-30s}"), "{text}");
}

#[test]
fn removing_the_last_key_of_a_nested_table_removes_the_table() {
    let mut doc = ConfigDocument::parse(BARE).unwrap();
    doc.edit_endpoint(
        "lab",
        &[
            ("tls.cert".into(), Change::Remove),
            ("tls.key".into(), Change::Remove),
        ],
    )
    .unwrap();
    assert!(!doc.to_text().contains("tls"), "{}", doc.to_text());
}

#[test]
fn a_new_endpoint_follows_the_last_one_and_can_join_a_route() {
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    doc.add_endpoint(
        "lab-2",
        "mllp",
        &[(
            "listen".into(),
            Change::Set(EditValue::String("127.0.0.1:2600".into())),
        )],
    )
    .unwrap();
    doc.attach_to_route("archive-everything", "from", "lab-2")
        .unwrap();
    let text = doc.to_text();
    let new = text.find("name = \"lab-2\"").unwrap();
    assert!(new > text.find("name = \"astm\"").unwrap());
    assert!(new < text.find("[[route]]").unwrap());
    assert!(
        text.contains(
            "from = [\"mllp-in\", \"inbox\", \"hl7-inbox\", \"astm\", \"astm-inbox\", \"lab-2\"]"
        ),
        "{text}"
    );
    assert_eq!(comments(&text), comments(SHIPPED));
    let config = Config::parse(&text, "t.toml", no_env).unwrap();
    assert!(config.endpoint("lab-2").is_some());
    assert_eq!(
        doc.add_endpoint("lab-2", "mllp", &[]),
        Err(EditError::Exists("lab-2".into()))
    );
}

#[test]
fn disabling_writes_enabled_false_and_enabling_again_writes_true() {
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    doc.set_enabled("archive", true).unwrap();
    assert_eq!(
        doc.to_text(),
        SHIPPED,
        "enabled is the default: nothing written"
    );
    doc.set_enabled("archive", false).unwrap();
    let config = Config::parse(&doc.to_text(), "t.toml", no_env).unwrap();
    assert!(!config.endpoint("archive").unwrap().enabled);
    doc.set_enabled("archive", true).unwrap();
    let config = Config::parse(&doc.to_text(), "t.toml", no_env).unwrap();
    assert!(config.endpoint("archive").unwrap().enabled);
    assert_eq!(
        doc.set_enabled("nope", false),
        Err(EditError::UnknownEndpoint("nope".into()))
    );
}

#[test]
fn settings_are_set_in_their_section_and_the_section_is_made_when_missing() {
    let mut doc = ConfigDocument::parse(BARE).unwrap();
    doc.set_section_value(
        "site",
        "time_zone",
        &Change::Set(EditValue::String("Europe/Berlin".into())),
    )
    .unwrap();
    doc.set_section_value(
        "journal",
        "max_size",
        &Change::Set(EditValue::String("1 GiB".into())),
    )
    .unwrap();
    let text = doc.to_text();
    assert!(
        text.contains("[site]\ntime_zone = \"Europe/Berlin\""),
        "{text}"
    );
    assert!(
        text.contains("retention_days = ${ECKO_RETENTION:-30} # days\nmax_size = \"1 GiB\""),
        "{text}"
    );
}

#[test]
fn routes_can_be_replaced_as_a_toml_fragment_in_place() {
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    let routes = doc.routes_text();
    assert!(routes.starts_with("# HL7 v2 results"), "{routes}");
    let edited = routes.replace("to = [\"archive\"]", "to = [\"archive\"] # all of it");
    doc.replace_routes(&edited).unwrap();
    let text = doc.to_text();
    assert_eq!(
        text,
        SHIPPED.replace("to = [\"archive\"]", "to = [\"archive\"] # all of it")
    );
    assert!(matches!(
        doc.replace_routes("[journal]\npath = \"x\""),
        Err(EditError::Shape(_))
    ));
}

#[test]
fn key_spans_say_on_which_line_each_setting_is_written() {
    let spans = endpoint_key_spans(BARE, "lab");
    let line = |k: &str| spans.iter().find(|s| s.key == k).map(|s| s.start.0);
    assert_eq!(line("listen"), Some(8));
    assert_eq!(line("max_connections"), Some(9));
    assert_eq!(line("tls.key"), Some(10));
}

#[test]
fn text_that_is_not_toml_even_with_references_protected_is_refused() {
    assert!(matches!(
        ConfigDocument::parse("[journal\npath = 1"),
        Err(EditError::Unreadable(_))
    ));
}
