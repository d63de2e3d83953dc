//! `ecko-gateway codes import` with the real binary: LIVD files (the FHIR
//! Bundle and the spreadsheet CSV) become the analyzer's code map in the
//! FHIR destination's settings; conflicts are listed and nothing is
//! written unless asked; the written file still loads.

use ecko_tests::gateway_binary;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CONFIG: &str = r#"
[journal]
path = "JOURNAL"

[[endpoint]]
name = "c311"
type = "astm-tcp"
address = "127.0.0.1:5100"

# The hub's code map, kept by hand so far.
[[endpoint]]
name = "hub"
type = "fhir"
url = "https://hub.example/fhir"

[endpoint.code_map_by_source.c311]
NA = "2951-2"
K = "6298-4"

[[route]]
name = "results"
from = ["c311"]
message_types = ["ASTM"]
transform = "astm-fhir"
to = ["hub"]
"#;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/livd")
        .join(name)
}

fn import(config: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(gateway_binary())
        .args(["codes", "import"])
        .arg(file)
        .arg("--config")
        .arg(config)
        .args(["--endpoint", "c311"])
        .args(extra)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn loads(config: &Path) -> bool {
    Command::new(gateway_binary())
        .arg("check-config")
        .arg(config)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_conflicting_livd_csv_writes_nothing_until_replace_and_then_the_file_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let original = CONFIG.replace("JOURNAL", &dir.path().join("j.db").display().to_string());
    std::fs::write(&config, &original).unwrap();
    let csv = data("chemistry_analyzer.livd.csv");

    let refused = import(&config, &csv, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let out = text(&refused);
    assert!(
        out.contains("K → 2823-3 (mmol/L): conflicts with 6298-4 in `hub`"),
        "{out}"
    );
    assert!(
        out.contains("NA → 2951-2 (mmol/L): conflicts with 2951-2 in `hub`"),
        "{out}"
    );
    assert!(out.contains("GLU → 14749-6 (mmol/L): added"), "{out}");
    assert!(out.contains("nothing written"), "{out}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    let dry = import(&config, &csv, &["--replace", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    let replaced = import(&config, &csv, &["--replace"]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("# The hub's code map, kept by hand so far."));
    assert!(
        written.contains(r#"K = { code = "2823-3", display = "Potassium [Moles/volume] in Serum or Plasma", unit = "mmol/L" }"#),
        "{written}"
    );
    assert!(loads(&config), "{written}");

    // The same file again changes nothing.
    let again = import(&config, &csv, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("3 codes: 0 to write, 3 unchanged"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_livd_bundle_gives_a_loinc_per_unit_and_names_the_model_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        CONFIG.replace("JOURNAL", &dir.path().join("j.db").display().to_string()),
    )
    .unwrap();
    let bundle = data("chemistry_analyzer.livd.json");
    let unknown = import(&config, &bundle, &["--model", "CHEM 1200"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).contains("no rows for the model `CHEM 1200`; it covers CHEM 400, CHEM 800"),
        "{}",
        text(&unknown)
    );
    let done = import(&config, &bundle, &["--model", "chem 800"]);
    assert!(done.status.success(), "{}", text(&done));
    let out = text(&done);
    assert!(
        out.contains("GLU → 2345-7 (mg/dL), 14749-6 (mmol/L): added"),
        "{out}"
    );
    assert!(out.contains("CREA → 14682-9 (umol/L): added"), "{out}");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains(r#"GLU = [{ code = "2345-7""#), "{written}");
    assert!(loads(&config), "{written}");
}
