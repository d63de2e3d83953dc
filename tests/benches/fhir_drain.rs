//! Backlog drain to the local FHIR server: Observations/s after recovery.
//!
//! `cargo build --release --bins && cargo bench -p ecko-tests --bench fhir_drain [-- --quick]`
//! (`ECKO_BENCH_MESSAGES` sets the backlog, default 2,000; `--quick` 300)
//!
//! The journal is filled with a backlog of ORU^R01 messages (a full blood
//! count with differential: 20 results each, for 200 patients) queued for a
//! FHIR endpoint, as an outage leaves it. Then the Medplum test server
//! (`tests/fhir-server`) and the release gateway start, and the time until
//! the journal has every message delivered gives Observations/s. It runs
//! twice: with the server validating every resource against the R4
//! StructureDefinitions (as in the tests) and with validation off
//! (`FHIR_VALIDATE=0`), which shows how much of the time is the server's.
//! The endpoint: 4 lanes by patient, 20 messages per lease merged into
//! transactions of up to 50 entries (Medplum's limit), PUT by id.

use ecko_gateway::journal::{Destination, Journal, JournalOptions, JournalReader};
use ecko_message::Envelope;
use ecko_tests::fhir::{count, FhirServer};
use ecko_tests::{eventually, Gateway};
use std::path::Path;
use std::time::{Duration, Instant};

const RESULTS: usize = 20;
const PATIENTS: usize = 200;

fn oru(seq: usize) -> Envelope {
    let p = seq % PATIENTS;
    let mut m = format!(
        "MSH|^~\\&|XN-1000|HEMA|LIS|HOSP|20260314093015+0100||ORU^R01^ORU_R01|D{seq:07}|P|2.5.1\r\
PID|1||P{p:04}^^^HOSP^MR||Doe{p}^John||19650412|M\r\
OBR|1|ORD{seq:07}^LIS|F{seq:07}^XN|58410-2^CBC panel^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r"
    );
    for i in 0..RESULTS {
        m.push_str(&format!(
            "OBX|{n}|NM|{code}-{i}^Result {n}^LN||{v}.{d}|10*3/uL^10*3/uL^UCUM|4.0-10.0|N|||F\r",
            n = i + 1,
            code = 6690 + i,
            v = 4 + seq % 7,
            d = i % 10
        ));
    }
    Envelope {
        source: "lab".into(),
        dedup_key: Some(format!("D{seq:07}")),
        message_type: "ORU^R01".into(),
        content_type: "x-application/hl7-v2+er7".into(),
        control_id: Some(format!("D{seq:07}")),
        patient_id: Some(format!("P{p:04}")),
        payload: m.into_bytes(),
        ack: None,
        ..Default::default()
    }
}

fn fill(db: &Path, messages: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let j = Journal::open(JournalOptions::new(db)).unwrap();
        for seq in 0..messages {
            let m = oru(seq);
            let lane = m.patient_id.clone().unwrap_or_default();
            j.ingest(
                m,
                vec![Destination {
                    endpoint: "hub".into(),
                    transform: "hl7v2-fhir".into(),
                    lane,
                    reply_to: None,
                }],
            )
            .await
            .unwrap();
        }
    });
}

fn delivered(db: &Path) -> u64 {
    JournalReader::open(db)
        .and_then(|r| r.counts())
        .ok()
        .and_then(|c| c.into_iter().find(|c| c.destination == "hub"))
        .map_or(0, |c| c.delivered)
}

fn run(messages: usize, validate: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    fill(&db, messages);
    let server = FhirServer::start(
        0,
        &[(
            "FHIR_VALIDATE",
            if validate { "1" } else { "0" }.to_string(),
        )],
    );
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[journal]
path = "{db}"
[[endpoint]]
name = "lab"
type = "file-drop"
path = "{d}/inbox"
[[endpoint]]
name = "hub"
type = "fhir"
url = "{url}"
max_batch = 20
max_entries = 50
partition_by = "patient"
lanes = 4
timeout = "60s"
[[route]]
name = "results"
from = ["lab"]
transform = "hl7v2-fhir"
to = ["hub"]
"#,
            db = db.display(),
            d = dir.path().display(),
            url = server.base
        ),
    )
    .unwrap();
    let start = Instant::now();
    let gw = Gateway::start(&config, &dir.path().join("gateway.log"), &[]);
    let done = eventually(Duration::from_secs(900), || {
        delivered(&db) as usize == messages
    });
    let secs = start.elapsed().as_secs_f64();
    assert!(
        done,
        "the backlog did not drain: {} of {messages}",
        delivered(&db)
    );
    let observations = count(&server.base, "Observation");
    assert_eq!(observations as usize, messages * RESULTS);
    println!(
        "drain, server validating {:<5} {messages:>6} messages in {secs:>6.1} s: {:>7.0} Observations/s, {:>6.0} messages/s",
        validate,
        (messages * RESULTS) as f64 / secs,
        messages as f64 / secs
    );
    gw.terminate();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let messages = std::env::var("ECKO_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 300 } else { 2_000 });
    run(messages, true);
    run(messages, false);
}
