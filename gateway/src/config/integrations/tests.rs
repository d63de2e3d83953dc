use super::*;
use crate::config::edit::{ConfigDocument, EditError};
use crate::config::Config;

const SHIPPED: &str = include_str!("../../../../config/gateway.toml");

/// A REST listener for the templates that take FHIR from the HIS.
const REST_IN: &str = r#"
# The HIS posts FHIR here.
[[endpoint]]
name = "rest-in"
type = "rest"
listen = "127.0.0.1:${ECKO_REST_PORT:-8081}"
plain_http = true

[[endpoint.paths]]
path = "/fhir"
accept = "fhir"

[endpoint.auth]
type = "api-key"
key = "${ECKO_REST_KEY:-k-rest}"
"#;

/// The shipped configuration with [`REST_IN`].
fn base() -> String {
    format!("{SHIPPED}{REST_IN}")
}

/// The secrets the templates reference, set; everything else unset.
fn env(name: &str) -> Option<String> {
    name.ends_with("_KEY")
        .then_some("k-1")
        .or(name.ends_with("_SECRET").then_some("s-1"))
        .or(name.ends_with("_PASSWORD").then_some("p-1"))
        .map(str::to_string)
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_shipped_template_reads_and_declares_exactly_the_placeholders_it_uses() {
    assert_eq!(all().len(), FILES.len(), "a template file does not read");
    for t in all() {
        let used = placeholders(t.text);
        let declared: Vec<String> = t.params.iter().map(|p| p.key.clone()).collect();
        let mut a = used.clone();
        let mut b = declared.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{}: placeholders used vs parameters declared", t.name);
        for p in &t.params {
            if let Some(d) = &p.default {
                assert!(
                    p.choices.is_empty() || p.choices.contains(d),
                    "{}: default of {}",
                    t.name,
                    p.key
                );
            }
        }
    }
}

#[test]
fn every_template_with_its_sample_values_added_to_the_shipped_file_loads() {
    for t in all() {
        let fragment = t.render(&t.sample_values()).unwrap();
        let base = base();
        let mut doc = ConfigDocument::parse(&base).unwrap();
        let (endpoints, routes) = doc
            .add_fragment(&fragment)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert!(!endpoints.is_empty() && !routes.is_empty(), "{}", t.name);
        let text = doc.to_text();
        let config = Config::parse(&text, "t.toml", env)
            .unwrap_or_else(|e| panic!("{}:\n{e}\n{text}", t.name));
        for e in &endpoints {
            assert!(config.endpoint(e).is_some(), "{}: {e}", t.name);
        }
        // The file's comments and the template's own are all kept, and the
        // template's description is not copied in.
        for line in base.lines().filter(|l| l.trim_start().starts_with('#')) {
            assert!(text.contains(line), "{}: lost {line:?}", t.name);
        }
        assert!(
            text.contains(&format!("from the integration template\n# `{}`", t.name))
                || text.contains(&format!("(from the integration template `{}`", t.name))
                || text.contains(&format!("the integration template `{}`", t.name)),
            "{}: its comments are missing\n{text}",
            t.name
        );
        assert!(!text.contains("[template]"), "{}", t.name);
        assert!(!text.contains("@{"), "{}", t.name);
    }
}

#[test]
fn a_text_value_is_written_as_string_content_whatever_it_holds() {
    let t = named("accounting-folder").unwrap();
    let fragment = t
        .render(&values(&[("path", r#"C:\acc "import" ${X:-y}"#)]))
        .unwrap();
    let doc = ConfigDocument::parse(&fragment).unwrap();
    let settings = doc.endpoint_settings("accounting-folder").unwrap();
    let path = settings.iter().find(|(k, _)| k == "path").unwrap();
    assert_eq!(path.1, r#"C:\acc "import" ${X:-y}"#);
}

#[test]
fn values_are_checked_against_the_parameters_and_the_required_ones_are_asked_for() {
    let t = named("accounting-sftp").unwrap();
    let missing: Vec<&str> = t
        .missing(&BTreeMap::new())
        .iter()
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(missing, ["host", "user", "host_key_sha256"]);
    let e = t.render(&values(&[("host", "h")])).unwrap_err();
    assert!(
        matches!(&e, RenderError::Missing { key, .. } if key == "user"),
        "{e}"
    );
    let mut ok = t.sample_values();
    ok.insert("format".into(), "xlsx".into());
    let e = t.render(&ok).unwrap_err();
    assert!(matches!(e, RenderError::NotAChoice { .. }), "{e}");
    let mut ok = t.sample_values();
    ok.insert("port".into(), "22; rm".into());
    let e = t.render(&ok).unwrap_err();
    assert!(matches!(e, RenderError::NotAnInteger { .. }), "{e}");
    ok.insert("port".into(), "${ECKO_SFTP_PORT:-22}".into());
    assert!(t
        .render(&ok)
        .unwrap()
        .contains("port = ${ECKO_SFTP_PORT:-22}"));
    let mut ok = t.sample_values();
    ok.insert("hots".into(), "h".into());
    assert!(matches!(
        t.render(&ok).unwrap_err(),
        RenderError::UnknownParam { .. }
    ));
    let mut ok = t.sample_values();
    ok.insert("user".into(), "a\n[admin]".into());
    assert!(matches!(
        t.render(&ok).unwrap_err(),
        RenderError::Multiline { .. }
    ));
    assert!(matches!(
        named("no-such").unwrap_err(),
        RenderError::Unknown(_)
    ));
}

#[test]
fn a_template_whose_names_are_taken_changes_nothing() {
    let t = named("lab-hl7-mllp").unwrap();
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    let clash = t.render(&values(&[("name", "mllp-in"), ("allow", "10.0.0.1")]));
    assert_eq!(
        doc.add_fragment(&clash.unwrap()).unwrap_err(),
        EditError::Exists("mllp-in".into())
    );
    assert_eq!(doc.to_text(), SHIPPED);
    let once = t.render(&t.sample_values()).unwrap();
    doc.add_fragment(&once).unwrap();
    let after_once = doc.to_text();
    assert!(matches!(
        doc.add_fragment(&once).unwrap_err(),
        EditError::Exists(_)
    ));
    assert_eq!(doc.to_text(), after_once);
}

#[test]
fn an_added_template_sits_after_the_last_endpoint_and_the_last_route() {
    let t = named("pharmacy-rest").unwrap();
    let mut doc = ConfigDocument::parse(SHIPPED).unwrap();
    doc.add_fragment(&t.render(&t.sample_values()).unwrap())
        .unwrap();
    let text = doc.to_text();
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle}"));
    // After the file's last endpoint, before its first route.
    assert!(at("name = \"astm\"") < at("name = \"pharmacy\""));
    assert!(at("name = \"pharmacy\"") < at("type = \"api-key\""));
    assert!(at("type = \"api-key\"") < at("name = \"hl7-results-to-hub\""));
    // After the file's last route.
    assert!(at("name = \"archive-everything\"") < at("name = \"pharmacy-prescriptions\""));
}
