//! The integration templates through the real binary.
//!
//! - Every template applied with its example values by `template apply`
//!   to the shipped configuration passes `check-config`; a second apply is
//!   refused for its names and writes nothing.
//! - One message through each, from a peer written by others to a local
//!   stand-in: python-hl7's `mllp_send` (HL7 v2) and python-astm (ASTM, on
//!   TCP and through a socat pty) to Python's http.server stand-in
//!   (`tests/python/rest_standin.py`) as the FHIR server, the FHIR checked
//!   with fhir.resources; pynetdicom to dcmtk's `storescp` as the PACS;
//!   prescriptions to the stand-in as the pharmacy's API (API key) and as
//!   its FHIR server (OAuth 2.0 client credentials); charges as CSV into a
//!   drop folder and as JSON to OpenSSH's SFTP server.

mod astm_common;

use ecko_gateway::config::integrations;
use ecko_gateway::journal::JournalReader;
use ecko_tests::fhir::validate_with_fhir_resources;
use ecko_tests::pacs::{pacs, send_study};
use ecko_tests::rest_standin::StandIn;
use ecko_tests::sshd::{keygen, server};
use ecko_tests::{eventually, free_port, gateway_binary, peer_tool};
use ecko_tests::{wait_for_port, Gateway};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SHIPPED: &str = include_str!("../../config/gateway.toml");

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

/// The environment every secret reference of the templates reads.
const SECRETS: &[(&str, &str)] = &[
    ("ECKO_PHARMACY_API_KEY", "k-1"),
    ("ECKO_PHARMACY_CLIENT_SECRET", "s-1"),
    ("ECKO_ABDM_CLIENT_SECRET", "s-1"),
    ("ECKO_INSURER_CLIENT_SECRET", "s-1"),
    ("ECKO_REGISTRY_API_KEY", "k-1"),
    ("ECKO_CRS_API_KEY", "k-1"),
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/fhir")
        .join(name)
}

/// `ecko-gateway template apply NAME --config FILE --set k=v ...`.
fn apply(
    config: &Path,
    name: &str,
    values: &BTreeMap<String, String>,
    env: &[(&str, String)],
) -> Output {
    let mut cmd = Command::new(gateway_binary());
    cmd.args(["template", "apply", name, "--config"])
        .arg(config);
    for (k, v) in values {
        cmd.arg("--set").arg(format!("{k}={v}"));
    }
    for (k, v) in SECRETS {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().expect("run ecko-gateway")
}

fn check_config(config: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("check-config").arg(config);
    for (k, v) in SECRETS {
        cmd.env(k, v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ecko-gateway")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A template's example values with `overrides`.
fn values(name: &str, overrides: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut v = integrations::named(name).unwrap().sample_values();
    for (k, value) in overrides {
        v.insert(k.to_string(), value.clone());
    }
    v
}

#[test]
fn a_value_missing_or_refused_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, SHIPPED).unwrap();
    let missing = apply(&config, "lab-hl7-mllp", &BTreeMap::new(), &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("needs `allow` (Analyzer address): give them with --set"),
        "{}",
        text(&missing)
    );
    let mut v = values("accounting-sftp", &[("port", "twenty-two".into())]);
    let refused = apply(&config, "accounting-sftp", &v, &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("`port` must be a whole number"),
        "{}",
        text(&refused)
    );
    v.insert("port".into(), "22".into());
    v.insert("from".into(), "no-such-source".into());
    let invalid = apply(&config, "accounting-sftp", &v, &[]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        text(&invalid).contains("unknown endpoint `no-such-source`"),
        "{}",
        text(&invalid)
    );
    let unknown = apply(&config, "no-such-template", &BTreeMap::new(), &[]);
    assert!(text(&unknown).contains("no integration template `no-such-template`"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), SHIPPED);
}

#[test]
fn every_template_applied_through_the_binary_passes_check_config_and_a_second_apply_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sftp_key");
    keygen(&key);
    let env = vec![(
        "ECKO_DATA_DIR",
        dir.path().join("var").display().to_string(),
    )];
    let listed = text(
        &Command::new(gateway_binary())
            .args(["template", "list"])
            .output()
            .unwrap(),
    );
    assert_eq!(integrations::all().len(), 12);
    for t in integrations::all() {
        assert!(listed.contains(t.name), "{listed}");
        let shown = text(
            &Command::new(gateway_binary())
                .args(["template", "show", t.name])
                .output()
                .unwrap(),
        );
        assert!(
            shown.contains("[[endpoint]]") && shown.contains(&t.maps),
            "{shown}"
        );

        let config = dir.path().join(format!("{}.toml", t.name));
        let base = format!("{SHIPPED}{REST_IN}");
        std::fs::write(&config, &base).unwrap();
        let mut v = t.sample_values();
        if v.contains_key("private_key") {
            v.insert("private_key".into(), key.display().to_string());
        }
        let out = apply(&config, t.name, &v, &env);
        assert!(out.status.success(), "{}: {}", t.name, text(&out));
        let written = std::fs::read_to_string(&config).unwrap();
        for line in base.lines() {
            assert!(written.contains(line), "{}: lost {line:?}", t.name);
        }
        let checked = check_config(&config, &env);
        assert!(
            checked.status.success(),
            "{}: {}\n{written}",
            t.name,
            text(&checked)
        );
        let again = apply(&config, t.name, &v, &env);
        assert_eq!(again.status.code(), Some(1), "{}", t.name);
        assert!(text(&again).contains("exists already"), "{}", text(&again));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    }
}

/// A gateway configuration with an MLLP listener `mllp-in` and a FHIR
/// destination `hub` at `hub_url`, and `template` applied to it.
fn gateway_with(
    dir: &Path,
    mllp: u16,
    hub_url: &str,
    template: &str,
    overrides: &[(&str, String)],
) -> PathBuf {
    let endpoints = format!(
        r#"[[endpoint]]
name = "mllp-in"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "{hub_url}"
retry = {{ initial = "200ms", max = "1s", jitter = 0.0 }}
"#
    );
    gateway_from(dir, &endpoints, template, overrides)
}

/// A gateway configuration with `endpoints` and `template` applied to it.
fn gateway_from(
    dir: &Path,
    endpoints: &str,
    template: &str,
    overrides: &[(&str, String)],
) -> PathBuf {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "# The test gateway.\n[journal]\npath = \"{}/journal.db\"\n\n{endpoints}",
            dir.display()
        ),
    )
    .unwrap();
    let out = apply(&config, template, &values(template, overrides), &[]);
    assert!(out.status.success(), "{}", text(&out));
    config
}

fn start(dir: &Path, config: &Path) -> Gateway {
    let env: Vec<(&str, &str)> = SECRETS.to_vec();
    Gateway::start(config, &dir.join("gateway.log"), &env)
}

/// Sends the HL7 v2 file with python-hl7's `mllp_send`; its output.
fn mllp_send(port: u16, file: &Path) -> String {
    let out = Command::new(peer_tool("venv-hl7", "mllp_send"))
        .args(["--loose", "-p", &port.to_string(), "-f"])
        .arg(file)
        .arg("127.0.0.1")
        .output()
        .expect("mllp_send");
    let said = text(&out);
    assert!(out.status.success(), "mllp_send: {said}");
    // AA, or CA for a message asking for enhanced mode.
    assert!(
        said.contains("MSA|AA|") || said.contains("MSA|CA|"),
        "not accepted: {said}"
    );
    said
}

/// The requests the stand-in saw on `path`, waiting for the first.
fn received(standin: &StandIn, path: &str) -> Vec<Value> {
    let on_path = || {
        standin
            .requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(30), || !on_path().is_empty()),
        "nothing arrived at {path}: {:?}",
        standin.requests()
    );
    on_path()
}

/// Validates `body` (a Bundle's JSON) with fhir.resources.
fn valid_fhir(dir: &Path, name: &str, bundle: &Value) {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, bundle.to_string()).unwrap();
    if let Err(e) = validate_with_fhir_resources(&[file]) {
        panic!("fhir.resources refuses {name}: {e}");
    }
}

fn resource_types(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["resource"]["resourceType"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A FHIR server stand-in; its base URL.
fn fhir_standin(dir: &Path, args: &[&str]) -> (StandIn, String) {
    let port = free_port();
    let standin = StandIn::start(dir, port, args, "{}");
    (standin, format!("http://127.0.0.1:{port}/fhir"))
}

#[test]
fn an_hl7_result_reaches_the_fhir_server_through_the_lab_mllp_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hub, url) = fhir_standin(d, &[]);
    let listen = free_port();
    let config = gateway_with(
        d,
        free_port(),
        &url,
        "lab-hl7-mllp",
        &[
            ("listen", format!("127.0.0.1:{listen}")),
            ("allow", "127.0.0.1".into()),
        ],
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(listen, Duration::from_secs(10)));
    mllp_send(listen, &data("oru_r01_chemistry_v25.hl7"));
    let posted = received(&hub, "/fhir");
    let bundle: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(bundle["type"], "transaction");
    let types = resource_types(&bundle);
    assert!(types.contains(&"DiagnosticReport".to_string()), "{types:?}");
    assert!(types.contains(&"Observation".to_string()), "{types:?}");
    valid_fhir(d, "oru", &bundle);
}

const ASTM: &str = "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405\rP|1||PID1||Doe^Jane\rO|1|SPEC1||^^^GLU|R\rR|1|^^^GLU|5.4|mmol/L|3.9-6.1|N||F\rL|1|N\r";

fn an_astm_result_arrives_as_fhir(hub: &StandIn, d: &Path) {
    let posted = received(hub, "/fhir");
    let bundle: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    let types = resource_types(&bundle);
    assert!(types.contains(&"Observation".to_string()), "{types:?}");
    assert!(bundle.to_string().contains("SPEC1"), "{bundle}");
    valid_fhir(d, "astm", &bundle);
}

#[test]
fn an_astm_result_over_tcp_reaches_the_fhir_server_through_the_lab_astm_tcp_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hub, url) = fhir_standin(d, &[]);
    let port = free_port();
    let config = gateway_with(
        d,
        free_port(),
        &url,
        "lab-astm-tcp",
        &[("address", format!("127.0.0.1:{port}"))],
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let file = astm_common::message_file(d, "r.astm", ASTM);
    astm_common::analyzer(&["send", &port.to_string(), &file]);
    an_astm_result_arrives_as_fhir(&hub, d);
}

#[test]
fn an_astm_result_over_a_serial_line_reaches_the_fhir_server_through_the_lab_astm_serial_template()
{
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hub, url) = fhir_standin(d, &[]);
    let tty = d.join("tty");
    let port = free_port();
    let mut line = astm_common::socat(&tty, port);
    let config = gateway_with(
        d,
        free_port(),
        &url,
        "lab-astm-serial",
        &[("device", tty.display().to_string())],
    );
    let mut gw = start(d, &config);
    gw.wait_for_log("serial line open", 0, Duration::from_secs(20));
    let file = astm_common::message_file(d, "r.astm", ASTM);
    astm_common::analyzer(&["send", &port.to_string(), &file]);
    an_astm_result_arrives_as_fhir(&hub, d);
    let _ = line.kill();
    let _ = line.wait();
}

#[test]
fn an_image_reaches_the_pacs_through_the_pacs_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_hub, url) = fhir_standin(d, &[]);
    let (scp, pacs_port) = (free_port(), free_port());
    let pacs_log = d.join("pacs.log");
    let _pacs = pacs(pacs_port, &d.join("pacs"), &pacs_log);
    let config = gateway_with(
        d,
        free_port(),
        &url,
        "pacs-dicom",
        &[
            ("listen", format!("127.0.0.1:{scp}")),
            ("pacs", format!("127.0.0.1:{pacs_port}")),
        ],
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(scp, Duration::from_secs(10)));
    let acked = send_study(
        scp,
        1,
        "1.2.826.0.1.3680043.10.1234.20",
        &d.join("acked.txt"),
    );
    assert_eq!(acked.len(), 1, "the SCP did not take the image");
    assert!(
        eventually(Duration::from_secs(30), || std::fs::read_to_string(
            &pacs_log
        )
        .unwrap_or_default()
        .contains("1.2.826.0.1.3680043.10.1234.20.1")),
        "the PACS received nothing: {}",
        std::fs::read_to_string(&pacs_log).unwrap_or_default()
    );
}

/// A stand-in started with `args` on a free port; a gateway whose MLLP
/// listener feeds `template`, applied with the values `overrides` makes of
/// the stand-in's address (`127.0.0.1:PORT`); one HL7 v2 file sent with
/// `mllp_send`. The requests that arrived at `path`.
fn hl7_through(
    d: &Path,
    template: &str,
    args: &[&str],
    overrides: impl Fn(&str) -> Vec<(&'static str, String)>,
    file: &str,
    path: &str,
) -> Vec<Value> {
    let port = free_port();
    let standin = StandIn::start(d, port, args, "{}");
    let mllp = free_port();
    let config = gateway_with(
        d,
        mllp,
        "http://127.0.0.1:9/unused",
        template,
        &overrides(&format!("127.0.0.1:{port}")),
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(mllp, Duration::from_secs(10)));
    mllp_send(mllp, &data(file));
    received(&standin, path)
}

fn assert_bearer(request: &Value) {
    assert!(
        request["headers"]["authorization"]
            .as_str()
            .is_some_and(|a| a.starts_with("Bearer tok-")),
        "no token of the stand-in's: {request}"
    );
}

#[test]
fn a_prescription_reaches_the_pharmacy_api_as_a_medication_request_through_the_rest_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let posted = hl7_through(
        d,
        "pharmacy-rest",
        &["--api-key", "X-API-Key=k-1"],
        |at| vec![("url", format!("http://{at}/prescriptions"))],
        "orders/rde_o11_orbis.hl7",
        "/prescriptions",
    );
    assert_eq!(posted[0]["headers"]["x-api-key"], "k-1");
    let body: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    let prescription = &body["prescription"];
    assert_eq!(prescription["resourceType"], "MedicationRequest");
    assert_eq!(prescription["status"], "active");
    assert_eq!(body["patient"]["resourceType"], "Patient");
    assert!(body["message_id"].is_u64(), "{body}");
    let collection = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": prescription}, {"resource": body["patient"]}],
    });
    valid_fhir(d, "prescription", &collection);
}

#[test]
fn a_prescription_reaches_the_pharmacy_fhir_server_with_oauth_through_the_fhir_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let posted = hl7_through(
        d,
        "pharmacy-fhir",
        &["--client", "ecko-gw:s-1"],
        |at| {
            vec![
                ("url", format!("http://{at}/fhir")),
                ("token_url", format!("http://{at}/token")),
            ]
        },
        "orders/rde_o11_orbis.hl7",
        "/fhir",
    );
    assert_bearer(&posted[0]);
    let bundle: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    let types = resource_types(&bundle);
    assert!(
        types.contains(&"MedicationRequest".to_string()),
        "{types:?}"
    );
    valid_fhir(d, "prescription-bundle", &bundle);
}

#[test]
fn charges_arrive_as_a_csv_file_in_the_folder_through_the_accounting_folder_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = d.join("charges");
    std::fs::create_dir_all(&folder).unwrap();
    let mllp = free_port();
    let config = gateway_with(
        d,
        mllp,
        "http://127.0.0.1:9/unused",
        "accounting-folder",
        &[("path", folder.display().to_string())],
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(mllp, Duration::from_secs(10)));
    mllp_send(mllp, &data("financial/dft_p03_medico.hl7"));
    let csv = || {
        std::fs::read_dir(&folder)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"))
    };
    assert!(
        eventually(Duration::from_secs(30), || csv().is_some()),
        "no CSV file in {}",
        folder.display()
    );
    let text = std::fs::read_to_string(csv().unwrap()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[..3],
        [
            "date,transaction,patient_id,patient_name,visit,code,description,quantity,amount,currency,performer",
            "2026-04-03,MED-F-4001/1,P-20931,\"van der Berg, Tom\",,TAR-39.0010,\"Radiology, thorax 2 views\",1,,,",
            "2026-04-03,MED-F-4001/2,P-20931,\"van der Berg, Tom\",,,\"Plaster cast, forearm\",1,85.0,CHF,",
        ],
        "{text}"
    );
}

#[test]
fn charges_arrive_as_a_json_file_on_the_sftp_server_through_the_accounting_sftp_template() {
    let (dir, files, port, _sshd) = server();
    let d = dir.path();
    let remote = d.join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let mllp = free_port();
    let config = gateway_with(
        d,
        mllp,
        "http://127.0.0.1:9/unused",
        "accounting-sftp",
        &[
            ("format", "json".into()),
            ("host", "127.0.0.1".into()),
            ("port", port.to_string()),
            ("user", "root".into()),
            ("host_key_sha256", files.fingerprint.clone()),
            ("private_key", files.user_key.display().to_string()),
            ("path", remote.display().to_string()),
        ],
    );
    let _gw = start(d, &config);
    assert!(wait_for_port(mllp, Duration::from_secs(10)));
    mllp_send(mllp, &data("financial/dft_p03_medico.hl7"));
    let file = remote.join("charges-MED-F-4001.json");
    assert!(
        eventually(Duration::from_secs(30), || file.exists()),
        "nothing uploaded: {:?} {}",
        std::fs::read_dir(&remote).map(|r| r.count()),
        files.log()
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["message"], "MED-F-4001");
    assert_eq!(v["charges"][1]["amount"], serde_json::json!(85.0));
    assert_eq!(v["charges"][1]["currency"], "CHF");
    assert_eq!(v["charges"][0]["code"], "TAR-39.0010");
}

#[test]
fn a_result_reaches_the_abdm_gateway_as_a_diagnostic_report_record_through_the_abdm_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let posted = hl7_through(
        d,
        "abdm-health-information",
        &["--client", "ecko-hip:s-1"],
        |at| {
            vec![
                ("url", format!("http://{at}/health-information")),
                ("token_url", format!("http://{at}/token")),
            ]
        },
        "oru_r01_chemistry_v25.hl7",
        "/health-information",
    );
    assert_bearer(&posted[0]);
    let headers = &posted[0]["headers"];
    assert_eq!(headers["x-cm-id"], "sbx");
    assert!(
        headers["request-id"]
            .as_str()
            .is_some_and(|r| r.len() == 36),
        "{headers}"
    );
    assert_eq!(headers["content-type"], "application/fhir+json");
    let document: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(document["type"], "document");
    let composition = &document["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert!(composition["meta"]["profile"][0]
        .as_str()
        .is_some_and(|p| p.ends_with("/DiagnosticReportRecord")));
    let types = resource_types(&document);
    assert!(types.contains(&"DiagnosticReport".to_string()), "{types:?}");
    valid_fhir(d, "abdm-document", &document);
}

#[test]
fn a_reportable_result_reaches_the_registry_fhir_server_through_the_notifiable_disease_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let posted = hl7_through(
        d,
        "registry-notifiable-disease",
        &["--api-key", "X-API-Key=k-1"],
        |at| vec![("url", format!("http://{at}/fhir"))],
        "oru_r01_micro_two_orders_v251.hl7",
        "/fhir",
    );
    assert_eq!(posted[0]["headers"]["x-api-key"], "k-1");
    let bundle: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    assert!(resource_types(&bundle).contains(&"Observation".to_string()));
    valid_fhir(d, "notifiable", &bundle);
}

/// A configuration with the REST listener `rest-in` on `port` (FHIR at
/// `/fhir`, API key `k-rest`).
fn rest_listener(port: u16) -> String {
    format!(
        r#"[[endpoint]]
name = "rest-in"
type = "rest"
listen = "127.0.0.1:{port}"
plain_http = true

[[endpoint.paths]]
path = "/fhir"
accept = "fhir"

[endpoint.auth]
type = "api-key"
key = "k-rest"
"#
    )
}

/// POSTs FHIR JSON to the REST listener with curl; the message id.
fn post_fhir(port: u16, path: &str, body: &Value) -> i64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-H", "X-API-Key: k-rest"])
        .args(["-H", "Content-Type: application/fhir+json", "--data-binary"])
        .arg(body.to_string())
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let answer: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    answer["message_ids"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("{answer}"))
}

/// The delivered response the journal keeps for `message`, once there.
fn kept_response(db: &Path, message: i64, needle: &str) -> String {
    let mut found = None;
    eventually(Duration::from_secs(30), || {
        found = JournalReader::open(db)
            .ok()
            .and_then(|j| j.events_of(message).ok())
            .and_then(|events| {
                events
                    .into_iter()
                    .filter_map(|e| e.detail)
                    .find(|d| d.contains(needle))
            });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no response with {needle} kept for message {message}"))
}

#[test]
fn a_claim_reaches_the_insurer_and_its_claim_response_is_kept_through_the_claims_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let script = r#"{"/fhir/Claim": [[201, {}, {"resourceType": "ClaimResponse", "id": "CR-9", "status": "active", "outcome": "queued", "disposition": "received"}]]}"#;
    let insurer = StandIn::start(d, port, &["--client", "ecko-hospital:s-1"], script);
    let rest = free_port();
    let config = gateway_from(
        d,
        &rest_listener(rest),
        "insurance-claims",
        &[
            ("url", format!("http://127.0.0.1:{port}/fhir/Claim")),
            ("token_url", format!("http://127.0.0.1:{port}/token")),
        ],
    );
    let _gw = start(d, &config);
    let claim = serde_json::json!({
        "resourceType": "Claim",
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
        "use": "claim",
        "patient": {"reference": "Patient/p-1"},
        "created": "2026-04-05",
        "provider": {"display": "City Hospital"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": true, "coverage": {"display": "Policy 123"}}],
        "identifier": [{"system": "urn:hospital:claims", "value": "CL-1"}]
    });
    let id = post_fhir(rest, "/fhir/Claim", &claim);
    let posted = received(&insurer, "/fhir/Claim");
    assert_bearer(&posted[0]);
    let sent: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, claim, "the claim is sent as received");
    let kept = kept_response(&d.join("journal.db"), id, "CR-9");
    assert!(
        kept.contains(r#""/id":"CR-9""#) && kept.contains(r#""/outcome":"queued""#),
        "{kept}"
    );
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": sent}]});
    valid_fhir(d, "claim", &bundle);
}

#[test]
fn a_birth_reaches_the_civil_registry_and_its_number_is_kept_through_the_birth_death_template() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let script = r#"{"/registrations": [[201, {}, {"registrationNumber": "B-2026-77", "status": "registered"}]]}"#;
    let registry = StandIn::start(d, port, &["--api-key", "X-API-Key=k-1"], script);
    let rest = free_port();
    let config = gateway_from(
        d,
        &rest_listener(rest),
        "registry-birth-death",
        &[("url", format!("http://127.0.0.1:{port}/registrations"))],
    );
    let _gw = start(d, &config);
    let newborn = serde_json::json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:hospital:mrn", "value": "NB-1"}],
        "gender": "female",
        "birthDate": "2026-04-05"
    });
    let id = post_fhir(rest, "/fhir/Patient", &newborn);
    let posted = received(&registry, "/registrations");
    assert_eq!(posted[0]["headers"]["x-api-key"], "k-1");
    let sent: Value = serde_json::from_str(posted[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, newborn);
    let kept = kept_response(&d.join("journal.db"), id, "B-2026-77");
    assert!(
        kept.contains(r#""/registrationNumber":"B-2026-77""#),
        "{kept}"
    );
}
