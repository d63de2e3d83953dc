//! HL7 v2 from python-hl7's `mllp_send` and ASTM from python-astm's analyzer
//! go through the gateway to a real FHIR server (Medplum's router, which
//! validates every resource) over HTTPS with a test CA: once with a client
//! certificate, once with an OAuth token endpoint whose tokens are revoked
//! mid-way. Then the server is stopped, thousands of messages are accepted
//! and acknowledged while it is down, it comes back, the gateway is
//! SIGKILLed and restarted while the backlog drains, and every message
//! arrives once, in order per patient: each patient has a running
//! Observation that every one of its messages updates with a rising
//! sequence number, and the server's `_history` of it must only rise.

mod astm_common;

use ecko_gateway::journal::JournalReader;
use ecko_tests::fhir::{FhirServer, TestPki};
use ecko_tests::{eventually, free_port, peer_tool, Gateway};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PATIENTS: usize = 40;
const LOG_TAIL: usize = 6000;

/// How the gateway proves who it is to the server.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    ClientCertificate,
    OAuth,
}

/// One ORU^R01: sequence `seq` for patient `p`, with a per-message result
/// and the patient's running Observation (OBX-21 keeps its identity).
fn oru(seq: usize, p: usize) -> String {
    format!(
        "MSH|^~\\&|XN-1000|HEMA|LIS|HOSP|20260314093015+0100||ORU^R01^ORU_R01|M{seq:06}|P|2.5.1\r\
PID|1||P{p:03}^^^HOSP^MR||Doe{p}^John||19650412|M\r\
OBR|1|ORD{seq:06}^LIS|F{seq:06}^XN|58410-2^CBC panel^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r\
OBX|1|NM|777-3^PLT^LN||{plt}|10*3/uL^10*3/uL^UCUM|150-400|N|||F\r\
OBX|2|NM|SEQ^Sequence^L||{seq}|||||||F|||||||||RUN-P{p:03}^HOSP\r",
        plt = 150 + seq % 200
    )
}

/// One ASTM result message for analyzer patient `p`, specimen `seq`.
fn astm(seq: usize, p: usize) -> String {
    format!(
        "H|\\^&|||CHEM-9^1.0^SN77|||||||P|LIS2-A2|20260314093015\n\
P|1||A{p:03}||Roe^Ann\n\
O|1|S{seq:06}||^^^GLU|R|20260314090000\n\
R|1|^^^GLU|{v}|mmol/L|3.9-6.1|N||F||||20260314092000\n\
L|1|N\n",
        v = 4 + seq % 5
    )
}

/// A file of HL7 messages as `mllp_send --loose` reads them.
fn hl7_file(dir: &Path, name: &str, messages: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text: Vec<String> = messages.iter().map(|m| m.replace('\r', "\n")).collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    path
}

/// Sends every message of `files` with one `mllp_send` per file, in
/// parallel; returns how many `MSA|AA` came back.
fn mllp_send(port: u16, files: &[PathBuf]) -> usize {
    let children: Vec<_> = files
        .iter()
        .map(|f| {
            Command::new(peer_tool("venv-hl7", "mllp_send"))
                .args(["--loose", "-p", &port.to_string(), "-f"])
                .arg(f)
                .arg("127.0.0.1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "mllp_send: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout)
                .matches("MSA|AA|")
                .count()
        })
        .sum()
}

/// Sends ASTM messages with python-astm's client, one session.
fn astm_send(dir: &Path, port: u16, messages: &[(usize, usize)]) {
    let files: Vec<String> = messages
        .iter()
        .map(|(seq, p)| astm_common::message_file(dir, &format!("a{seq}.astm"), &astm(*seq, *p)))
        .collect();
    let mut args = vec!["send".to_string(), port.to_string()];
    args.extend(files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    astm_common::analyzer(&args);
}

/// Reads the server with curl, authenticated as the test is configured.
struct Reader {
    base: String,
    args: Vec<String>,
}

impl Reader {
    fn get(&self, path: &str) -> Option<serde_json::Value> {
        // A count searches every Observation of the in-memory server (about
        // 50,000 after the outage): on a busy two-core machine that takes
        // longer than 20 s.
        let out = Command::new("curl")
            .args(["-s", "--max-time", "90"])
            .args(&self.args)
            .arg(format!("{}/{path}", self.base))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn count(&self, query: &str) -> Option<u64> {
        let sep = if query.contains('?') { '&' } else { '?' };
        self.get(&format!("{query}{sep}_summary=count"))?["total"].as_u64()
    }

    fn stats(&self) -> serde_json::Value {
        let root = self.base.trim_end_matches("/fhir/R4");
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(&self.args)
            .arg(format!("{root}/_stats"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn revoke(&self) {
        let root = self.base.trim_end_matches("/fhir/R4");
        let out = Command::new("curl")
            .args(["-s", "-X", "POST"])
            .args(&self.args)
            .arg(format!("{root}/_revoke"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
}

fn reader(base: &str, pki: &TestPki, auth: Auth) -> Reader {
    let mut args = vec!["--cacert".to_string(), pki.ca.display().to_string()];
    match auth {
        Auth::ClientCertificate => {
            args.extend([
                "--cert".into(),
                pki.client_cert.display().to_string(),
                "--key".into(),
                pki.client_key.display().to_string(),
            ]);
        }
        Auth::OAuth => {
            let root = base.trim_end_matches("/fhir/R4");
            let out = Command::new("curl")
                .args(["-s", "--cacert"])
                .arg(&pki.ca)
                .args([
                    "-d",
                    "grant_type=client_credentials&client_id=reader&client_secret=r3ad",
                ])
                .arg(format!("{root}/oauth/token"))
                .output()
                .unwrap();
            let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            args.extend([
                "-H".into(),
                format!(
                    "Authorization: Bearer {}",
                    token["access_token"].as_str().unwrap()
                ),
            ]);
        }
    }
    Reader {
        base: base.to_string(),
        args,
    }
}

fn server_env(pki: &TestPki, auth: Auth) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("FHIR_TLS_CERT", pki.server_cert.display().to_string()),
        ("FHIR_TLS_KEY", pki.server_key.display().to_string()),
    ];
    match auth {
        Auth::ClientCertificate => {
            env.push(("FHIR_TLS_CA", pki.ca.display().to_string()));
            env.push(("FHIR_REQUIRE_CLIENT_CERT", "1".to_string()));
        }
        Auth::OAuth => env.push(("FHIR_OAUTH_CLIENT", "gw:s3cret reader:r3ad".to_string())),
    }
    env
}

fn config(dir: &Path, base: &str, pki: &TestPki, auth: Auth, mllp: u16, astm: u16) -> PathBuf {
    let auth_toml = match auth {
        Auth::ClientCertificate => format!(
            "[endpoint.auth]\ntype = \"client-certificate\"\ncert = \"{}\"\nkey = \"{}\"",
            pki.client_cert.display(),
            pki.client_key.display()
        ),
        Auth::OAuth => format!(
            "[endpoint.auth]\ntype = \"oauth2\"\ntoken_url = \"{}/oauth/token\"\nclient_id = \"gw\"\nclient_secret = \"s3cret\"",
            base.trim_end_matches("/fhir/R4")
        ),
    };
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
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "analyzer"
type = "astm-tcp"
address = "127.0.0.1:{astm}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"
ca_file = "{ca}"
max_batch = 20
timeout = "20s"
partition_by = "patient"
lanes = 4
{auth_toml}
# Every failed attempt is a lease and a settlement in the journal: a short
# backoff during the outage would compete with the ingest it is about.
[endpoint.retry]
initial = "500ms"
max = "4s"

[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^R01"]
transform = "hl7v2-fhir"
to = ["hub"]

[[route]]
name = "analyzer-results"
from = ["analyzer"]
message_types = ["ASTM"]
transform = "astm-fhir"
to = ["hub"]
"#,
            d = dir.display(),
            ca = pki.ca.display(),
        ),
    )
    .unwrap();
    path
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(LOG_TAIL);
    text.get(start..).unwrap_or(&text).to_string()
}

/// (delivered, dead, waiting) of the hub in the journal.
fn journal_counts(db: &Path) -> (u64, u64, u64) {
    JournalReader::open(db)
        .and_then(|r| r.counts())
        .ok()
        .and_then(|c| c.into_iter().find(|c| c.destination == "hub"))
        .map_or((0, 0, 0), |c| (c.delivered, c.dead, c.queued + c.leased))
}

/// Messages for `count` sequence numbers starting at `first`, split over
/// `senders` files so that each patient's messages stay in one file, in
/// order.
fn hl7_batches(dir: &Path, tag: &str, first: usize, count: usize, senders: usize) -> Vec<PathBuf> {
    let mut per_sender: Vec<Vec<String>> = vec![Vec::new(); senders];
    for seq in first..first + count {
        let p = seq % PATIENTS;
        per_sender[p % senders].push(oru(seq, p));
    }
    per_sender
        .iter()
        .enumerate()
        .map(|(i, m)| hl7_file(dir, &format!("{tag}-{i}.hl7"), m))
        .collect()
}

/// The two runs share two cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(auth: Auth, backlog_hl7: usize, backlog_astm: usize) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki"));
    let env = server_env(&pki, auth);
    let server = FhirServer::start(0, &env);
    let (port, base) = (server.port, server.base.clone());
    let read = reader(&base, &pki, auth);
    let (mllp, astm_port) = (free_port(), free_port());
    let cfg = config(dir.path(), &base, &pki, auth, mllp, astm_port);
    let log = dir.path().join("gateway.log");
    let db = dir.path().join("journal.db");
    let mut gw = Gateway::start(&cfg, &log, &[]);
    gw.wait_for_log("ASTM endpoint listening", 0, Duration::from_secs(10));

    // While the server is up: HL7 and ASTM arrive; with OAuth the issued
    // tokens are revoked half-way, so the gateway meets a 401 and renews.
    let first = hl7_batches(dir.path(), "live-a", 0, 60, 2);
    assert_eq!(mllp_send(mllp, &first), 60);
    astm_send(dir.path(), astm_port, &[(0, 0), (1, 1), (2, 2)]);
    let delivered = |n: u64| eventually(Duration::from_secs(60), || journal_counts(&db).0 == n);
    assert!(
        delivered(63),
        "live messages: {:?}\n{}",
        journal_counts(&db),
        log_tail(&log)
    );
    if auth == Auth::OAuth {
        read.revoke();
    }
    let second = hl7_batches(dir.path(), "live-b", 60, 60, 2);
    assert_eq!(mllp_send(mllp, &second), 60);
    assert!(
        delivered(123),
        "after the revocation: {:?}\n{}",
        journal_counts(&db),
        log_tail(&log)
    );
    // The revocation took the reader's token too.
    let read = reader(&base, &pki, auth);
    if auth == Auth::OAuth {
        let stats = read.stats();
        assert!(
            stats["refused"].as_u64() >= Some(1) && stats["tokens"].as_u64() >= Some(3),
            "a revoked token is refused once and renewed: {stats}"
        );
    }
    assert_eq!(read.count("Provenance"), Some(123));
    assert_eq!(read.count("Observation?code=777-3"), Some(120));
    assert_eq!(read.count("Observation?code=GLU"), Some(3));

    // The outage: the server goes away (and, being in memory, forgets).
    server.stop();
    let down = Instant::now();
    let seq0 = 1000;
    let files = hl7_batches(dir.path(), "backlog", seq0, backlog_hl7, 8);
    let astm_messages: Vec<(usize, usize)> = (0..backlog_astm).map(|i| (seq0 + i, i % 7)).collect();
    let astm_dir = dir.path().join("astm");
    std::fs::create_dir_all(&astm_dir).unwrap();
    let sender = std::thread::spawn(move || mllp_send(mllp, &files));
    astm_send(&astm_dir, astm_port, &astm_messages);
    let acked = sender.join().unwrap();
    assert_eq!(
        acked, backlog_hl7,
        "every HL7 message got AA while the server was down"
    );
    let total = 123 + backlog_hl7 + backlog_astm;
    let (delivered_now, dead, waiting) = journal_counts(&db);
    assert_eq!((delivered_now, dead), (123, 0));
    assert_eq!(
        waiting as usize,
        backlog_hl7 + backlog_astm,
        "all waiting in the journal"
    );
    eprintln!(
        "{} messages accepted while the server was down in {:?}",
        backlog_hl7 + backlog_astm,
        down.elapsed()
    );

    // Recovery; the gateway is killed while the backlog drains.
    let server = FhirServer::start(port, &env);
    let read = reader(&base, &pki, auth);
    let drain = Instant::now();
    let progress = (backlog_hl7 / 5) as u64;
    assert!(
        eventually(Duration::from_secs(120), || journal_counts(&db).0
            >= 123 + progress),
        "no drain progress: {:?}\n{}",
        journal_counts(&db),
        log_tail(&log)
    );
    let (mid, _, _) = journal_counts(&db);
    assert!((mid as usize) < total, "the SIGKILL lands during the drain");
    gw.kill();
    let gw = Gateway::start(&cfg, &log, &[]);
    assert!(
        eventually(Duration::from_secs(300), || journal_counts(&db).0 as usize
            == total),
        "the backlog did not drain: {:?}\n{}",
        journal_counts(&db),
        log_tail(&log)
    );
    eprintln!(
        "backlog drained in {:?} (SIGKILL at {mid} of {total} delivered)",
        drain.elapsed()
    );
    assert_eq!(journal_counts(&db).1, 0, "nothing dead");

    // Every message arrived, once.
    let backlog = (backlog_hl7 + backlog_astm) as u64;
    assert_eq!(
        read.count("Provenance"),
        Some(backlog),
        "one Provenance per message"
    );
    assert_eq!(read.count("DiagnosticReport"), Some(backlog));
    assert_eq!(
        read.count("Observation?code=777-3"),
        Some(backlog_hl7 as u64),
        "one per HL7 message"
    );
    assert_eq!(
        read.count("Observation?code=GLU"),
        Some(backlog_astm as u64)
    );
    let running = PATIENTS.min(backlog_hl7) as u64;
    assert_eq!(
        read.count("Observation"),
        Some(backlog + running),
        "no duplicate Observation"
    );
    assert_eq!(
        read.count("Patient"),
        Some(running + 7.min(backlog_astm) as u64),
        "no duplicate Patient"
    );

    // In order per patient: the running Observation's versions only rise,
    // and the last is the patient's last message.
    for p in 0..PATIENTS.min(backlog_hl7) {
        let found = read
            .get(&format!(
                "Observation?identifier=urn:ecko-edge:assigner:HOSP:observation|RUN-P{p:03}"
            ))
            .unwrap();
        assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "{found}");
        let id = found["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let history = read
            .get(&format!("Observation/{id}/_history?_count=1000"))
            .unwrap();
        // Newest first, as FHIR history is.
        let values: Vec<u64> = history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|e| e["resource"]["valueQuantity"]["value"].as_u64().unwrap())
            .collect();
        // Each message's value first appears after every older message's.
        // The batch in flight at the SIGKILL is sent again after the
        // restart (at least once, idempotent by id): its values appear a
        // second time, in their order, never a value not seen before out
        // of turn.
        let mut seen = std::collections::BTreeSet::new();
        let mut newest = 0;
        for v in &values {
            if seen.contains(v) {
                continue;
            }
            assert!(*v > newest, "patient {p}: {v} after {newest}: {values:?}");
            newest = *v;
            seen.insert(*v);
        }
        let last_seq = (seq0..seq0 + backlog_hl7)
            .filter(|s| s % PATIENTS == p)
            .max()
            .unwrap();
        assert_eq!(values.last().copied(), Some(last_seq as u64), "patient {p}");
    }
    drop(server);
    assert_eq!(gw.terminate(), Some(0));
    eprintln!("whole run: {:?}", started.elapsed());
}

#[test]
fn hl7_and_astm_reach_the_hub_over_mtls_through_an_outage_of_ten_thousand_messages_and_a_sigkill() {
    run(Auth::ClientCertificate, 9_800, 200);
}

#[test]
fn hl7_and_astm_reach_the_hub_with_oauth_tokens_revoked_mid_way_through_an_outage_and_a_sigkill() {
    run(Auth::OAuth, 1_000, 50);
}
