//! Transcripts of three analyzer families, each putting its test code in a
//! different place of R-3 (Sysmex XN `^^^^WBC^1`, Roche cobas `^^^687^1`,
//! Beckman AU `^^^GLU^^5` with a rerun at another dilution), sent by
//! python-astm's analyzer over TCP, reach a real FHIR server (Medplum's
//! router) whole: every R record an Observation, the rerun beside the first
//! run, the O record as the ServiceRequest the results are based on, and
//! the C records as notes. Nothing ends as a dead letter.

mod astm_common;

use astm_common::{analyzer, free_port, message_file};
use ecko_gateway::journal::JournalReader;
use ecko_tests::fhir::{count, http, FhirServer};
use ecko_tests::{eventually, Gateway};
use std::path::Path;
use std::time::Duration;

const TRANSCRIPTS: [&str; 3] = [
    "hematology_sysmex_xn.astm",
    "immuno_cobas_e411.astm",
    "chemistry_beckman_dilution.astm",
];

fn config(dir: &Path, base: &str, astm: u16) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[site]
time_zone = "Europe/Berlin"

[[endpoint]]
name = "analyzer"
type = "astm-tcp"
address = "127.0.0.1:{astm}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"

[endpoint.retry]
initial = "200ms"
max = "1s"

[[route]]
name = "analyzer-results"
from = ["analyzer"]
message_types = ["ASTM"]
transform = "astm-fhir"
to = ["hub"]
"#,
            d = dir.display(),
        ),
    )
    .unwrap();
    path
}

/// (delivered, dead) of the hub.
fn outcome(db: &Path) -> (u64, u64) {
    JournalReader::open(db)
        .and_then(|r| r.counts())
        .ok()
        .and_then(|c| c.into_iter().find(|c| c.destination == "hub"))
        .map_or((0, 0), |c| (c.delivered, c.dead))
}

/// The resources a search finds.
fn search(base: &str, query: &str) -> Vec<serde_json::Value> {
    let (status, body) = http("GET", &format!("{base}/{query}"), None);
    assert_eq!(status, 200, "{query}: {body}");
    let bundle: serde_json::Value = serde_json::from_str(&body).unwrap();
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["resource"].clone()).collect())
        .unwrap_or_default()
}

fn observation(base: &str, key: &str) -> serde_json::Value {
    let found = search(
        base,
        &format!("Observation?identifier=urn:ecko-edge:analyzer:observation|{key}"),
    );
    assert_eq!(found.len(), 1, "Observation {key}: {found:?}");
    found.into_iter().next().unwrap()
}

fn notes(r: &serde_json::Value) -> Vec<&str> {
    r["note"]
        .as_array()
        .map(|n| n.iter().filter_map(|a| a["text"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn every_result_of_three_analyzer_families_reaches_the_fhir_server_with_its_order_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let server = FhirServer::start(0, &[]);
    let base = server.base.clone();
    let port = free_port();
    let cfg = config(dir.path(), &base, port);
    let db = dir.path().join("journal.db");
    let mut gw = Gateway::start(&cfg, &dir.path().join("gateway.log"), &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fhir");
    let mut args = vec!["send".to_string(), port.to_string()];
    for name in TRANSCRIPTS {
        let text = std::fs::read_to_string(data.join(name)).unwrap();
        args.push(message_file(dir.path(), name, &text));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    analyzer(&args);
    assert!(
        eventually(Duration::from_secs(60), || outcome(&db) == (3, 0)),
        "(delivered, dead) = {:?}",
        outcome(&db)
    );

    // Sysmex: the code in component 5; the comment after the last result.
    for code in ["WBC", "RBC", "HGB", "PLT"] {
        let o = observation(&base, &format!("SMP-77120/{code}"));
        assert_eq!(o["code"]["coding"][0]["code"], code);
    }
    assert_eq!(notes(&observation(&base, "SMP-77120/PLT")), ["PLT Clumps?"]);

    // cobas: the code before a dilution; comments after P, O and R.
    let tsh = observation(&base, "0815-1234/687");
    assert_eq!(tsh["valueQuantity"]["value"], 2.35);
    assert_eq!(notes(&tsh), ["Calibration lot 23514"]);
    let requests = search(
        &base,
        "ServiceRequest?identifier=urn:ecko-edge:analyzer:request|0815-1234",
    );
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        notes(request),
        [
            "Sample slightly hemolysed HEM",
            "Dialysis patient, draw before session"
        ]
    );
    let request_ref = format!("ServiceRequest/{}", request["id"].as_str().unwrap());
    assert_eq!(tsh["basedOn"][0]["reference"], request_ref.as_str());

    // Beckman: the rerun at dilution 5 is its own result, not an overwrite.
    let first = observation(&base, "B-5512/GLU");
    let rerun = observation(&base, "B-5512/GLU/2");
    assert_eq!(first["valueQuantity"]["value"], 33.3);
    assert_eq!(first["valueQuantity"]["comparator"], ">");
    assert_eq!(rerun["valueQuantity"]["value"], 41.7);
    assert_eq!(rerun["code"]["text"], "^^^GLU^^5");
    assert_eq!(count(&base, "Observation"), 4 + 2 + 3);
    assert_eq!(count(&base, "ServiceRequest"), 3);
    drop(gw);
    server.stop();
}
