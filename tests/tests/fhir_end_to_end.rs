//! HL7 files dropped into the gateway reach a real FHIR server over HTTPS with
//! a test CA and a client certificate; while the server is down, messages
//! wait in the journal, survive a SIGKILL of the gateway, and all arrive once
//! the server is back, with no duplicate resource.

use ecko_tests::fhir::{FhirServer, TestPki};
use ecko_tests::{eventually, Gateway};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn oru(i: usize) -> String {
    format!(
        "MSH|^~\\&|XN-1000|HEMA|LIS|HOSP|20260314093015+0100||ORU^R01^ORU_R01|MSG{i:05}|P|2.5.1\r\
PID|1||P{p:03}^^^HOSP^MR||Doe{p}^John||19650412|M\r\
OBR|1|ORD{i:05}^LIS|SPC{i:05}^XN|58410-2^CBC panel^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r\
OBX|1|NM|6690-2^WBC^LN||7.8|10*3/uL^10*3/uL^UCUM|4.0-10.0|N|||F\r\
OBX|2|NM|789-8^RBC^LN||4.52|10*6/uL^10*6/uL^UCUM|4.50-5.90|N|||F\r\
OBX|3|NM|718-7^HGB^LN||13.9|g/dL^g/dL^UCUM|13.5-17.5|N|||F\r\
OBX|4|NM|777-3^PLT^LN||{plt}|10*3/uL^10*3/uL^UCUM|150-400|N|||F\r",
        p = i % 7,
        plt = 150 + i
    )
}

fn drop_file(inbox: &Path, i: usize) {
    let tmp = inbox.join(format!(".m{i}.tmp"));
    std::fs::write(&tmp, oru(i)).unwrap();
    std::fs::rename(&tmp, inbox.join(format!("m{i:05}.hl7"))).unwrap();
}

fn count(server_base: &str, pki: &TestPki, query: &str) -> Option<u64> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--cacert"])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key)
        .arg(format!("{server_base}/{query}&_summary=count"))
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["total"].as_u64()
}

#[test]
fn results_survive_an_outage_and_a_sigkill_and_arrive_once_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let tls_env = vec![
        ("FHIR_TLS_CERT", pki.server_cert.display().to_string()),
        ("FHIR_TLS_KEY", pki.server_key.display().to_string()),
        ("FHIR_TLS_CA", pki.ca.display().to_string()),
        ("FHIR_REQUIRE_CLIENT_CERT", "1".to_string()),
    ];
    let server = FhirServer::start(0, &tls_env);
    let port = server.port;
    let base = server.base.clone();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[site]
time_zone = "Europe/Berlin"

[[endpoint]]
name = "lab"
type = "file-drop"
path = "{d}/inbox"
message_type = "ORU^R01"
poll_interval = "50ms"

[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"
ca_file = "{ca}"
max_batch = 10
timeout = "10s"
partition_by = "patient"
lanes = 4
[endpoint.auth]
type = "client-certificate"
cert = "{cert}"
key = "{key}"
[endpoint.retry]
initial = "100ms"
max = "500ms"

[[route]]
name = "lab-to-hub"
from = ["lab"]
transform = "hl7v2-fhir"
to = ["hub"]
"#,
            d = dir.path().display(),
            ca = pki.ca.display(),
            cert = pki.client_cert.display(),
            key = pki.client_key.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let gw = Gateway::start(&config, &log, &[]);

    for i in 0..5 {
        drop_file(&inbox, i);
    }
    assert!(
        eventually(Duration::from_secs(30), || count(
            &base,
            &pki,
            "Observation?code=777-3"
        ) == Some(5)),
        "the first results did not arrive:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Outage: the server goes away (and, being in memory, forgets everything).
    server.stop();
    let backlog = 300;
    for i in 100..100 + backlog {
        drop_file(&inbox, i);
    }
    assert!(eventually(Duration::from_secs(60), || std::fs::read_dir(
        &inbox
    )
    .unwrap()
    .filter(|e| !e
        .as_ref()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with('.'))
    .count()
        == 0));
    gw.kill();
    let gw = Gateway::start(&config, &log, &[]);
    let server = FhirServer::start(port, &tls_env);

    assert!(
        eventually(Duration::from_secs(120), || count(
            &base,
            &pki,
            "Observation?code=777-3"
        ) == Some(backlog as u64)),
        "the backlog did not drain: {:?}\n{}",
        count(&base, &pki, "Observation?code=777-3"),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(&base, &pki, "Observation?_count=0"),
        Some(4 * backlog as u64),
        "no duplicate Observation"
    );
    assert_eq!(
        count(&base, &pki, "DiagnosticReport?_count=0"),
        Some(backlog as u64)
    );
    assert_eq!(count(&base, &pki, "Patient?_count=0"), Some(7));
    assert_eq!(
        count(&base, &pki, "Provenance?_count=0"),
        Some(backlog as u64)
    );
    drop(server);
    gw.terminate();
}
