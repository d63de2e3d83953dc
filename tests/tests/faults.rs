//! The fault suite: the gateway SIGKILLed at random moments, some while it
//! is still starting, under mixed traffic from real peers — MLLP senders
//! waiting for each ACK, python-astm sessions over TCP, files dropped into
//! its inbox — while it delivers every result to the Medplum-based FHIR
//! server and every HL7 message to hl7apy's MLLP server.
//!
//! After every kill, whatever it had acknowledged (an `AA`, the ASTM
//! session's last frame, a file taken from the inbox) must be in the
//! journal. At the end every message is delivered: one Observation per
//! message on the FHIR server (a resend updates, never duplicates), every
//! HL7 message at the MLLP receiver, a second copy there only for a message
//! whose delivery was cut by a kill before its ACK was recorded (so no more
//! second copies than kills), and one recorded delivery per outbox row.
//!
//! The short form (10 kills) runs with the suite; `scripts/faults` runs the
//! long form (`ECKO_FAULTS=long`: 200 kills).

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::fhir::{count, FhirServer};
use ecko_tests::{eventually, free_port, peer_python, python_script, wait_for_port, Gateway};
use rand::Rng;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MLLP_SENDERS: usize = 3;
const FILE_PRODUCERS: usize = 2;

/// (kills, of which while starting) for the form asked for.
fn kills() -> (usize, usize) {
    match std::env::var("ECKO_FAULTS").as_deref() {
        Ok("long") => (200, 50),
        _ => (10, 3),
    }
}

fn config(dir: &Path, fhir: &str, mllp: u16, astm: u16, receiver: u16) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
poll_interval = "20ms"

[[endpoint]]
name = "lis"
type = "mllp"
listen = "127.0.0.1:{mllp}"

[[endpoint]]
name = "analyzer"
type = "astm-tcp"
address = "127.0.0.1:{astm}"

[[endpoint]]
name = "hub"
type = "fhir"
url = "{fhir}"
[endpoint.retry]
initial = "200ms"
max = "1s"

[[endpoint]]
name = "copy"
type = "mllp"
connect = "127.0.0.1:{receiver}"
ack_timeout = "5s"
[endpoint.retry]
initial = "100ms"
max = "1s"

[[route]]
name = "hl7-results"
from = ["inbox", "lis"]
transform = "hl7v2-fhir"
to = ["hub"]

[[route]]
name = "hl7-copy"
from = ["inbox", "lis"]
to = ["copy"]

[[route]]
name = "astm-results"
from = ["analyzer"]
message_types = ["ASTM"]
transform = "astm-fhir"
to = ["hub"]
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    path
}

/// An ORU^R01 with one glucose result; `id` is its control id and order.
fn oru(id: &str, value: u32) -> String {
    format!(
        "MSH|^~\\&|ANALYZER|LAB|LIS|HOSP|20261201120000||ORU^R01|{id}|P|2.5.1\r\
         PID|1||P-{id}^^^HOSP^MR||Doe^Jane\r\
         OBR|1|ORD-{id}|FIL-{id}|GLU^Glucose^L\r\
         OBX|1|NM|GLU^Glucose^L||{value}|mg/dL|||||F\r"
    )
}

/// What the senders had acknowledged, by control id or specimen.
type Acknowledged = Arc<Mutex<BTreeSet<String>>>;

/// One MLLP sender: one message at a time, each resent (on a new
/// connection when the old one died) until the gateway answers `AA`, as an
/// analyzer's interface does; it stops between messages once `stop` is set.
fn send_over_mllp(port: u16, sender: usize, stop: Arc<AtomicBool>, acked: Acknowledged) {
    let mut rng = rand::rng();
    let mut connection: Option<TcpStream> = None;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("S{sender}-{n:05}");
        n += 1;
        let mut frame = vec![0x0b];
        frame.extend_from_slice(oru(&id, rng.random_range(50..400)).as_bytes());
        frame.extend_from_slice(&[0x1c, 0x0d]);
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < give_up, "{id} was never acknowledged");
            if connection.is_none() {
                connection = TcpStream::connect(("127.0.0.1", port)).ok();
                if let Some(c) = &connection {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                }
            }
            let Some(c) = connection.as_mut() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            match exchange(c, &frame) {
                Some(ack) if ack.contains(&format!("MSA|AA|{id}")) => {
                    acked.lock().unwrap().insert(id.clone());
                    break;
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
                None => {
                    connection = None;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..30)));
    }
}

fn exchange(c: &mut TcpStream, frame: &[u8]) -> Option<String> {
    c.write_all(frame).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(&[0x1c, 0x0d]) {
        let n = c.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// The control ids of the files produced.
type Produced = Arc<Mutex<BTreeSet<String>>>;

/// Files written aside and renamed into the inbox, as a LIS export does.
fn produce(inbox: &Path, producer: usize, stop: Arc<AtomicBool>, produced: Produced) {
    let mut rng = rand::rng();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("F{producer}-{n:05}");
        n += 1;
        let body = oru(&id, rng.random_range(50..400)).into_bytes();
        let tmp = inbox.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, &body).unwrap();
        std::fs::rename(&tmp, inbox.join(format!("{id}.hl7"))).unwrap();
        produced.lock().unwrap().insert(id);
        std::thread::sleep(Duration::from_millis(rng.random_range(10..60)));
    }
}

/// python-astm's client, one session per result, each resent until the
/// session ends well (the gateway acknowledges the last frame only once
/// the message is committed); a resend is recognised as a duplicate.
fn send_over_astm(dir: &Path, port: u16, stop: Arc<AtomicBool>, acked: Acknowledged) {
    let helper = python_script("astm_analyzer.py");
    let python = peer_python("astm-venv");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let specimen = format!("A-{n:05}");
        n += 1;
        let file = dir.join(format!("{specimen}.astm"));
        std::fs::write(
            &file,
            format!(
                "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20261201120000\n\
                 P|1||PID-{specimen}||Doe^Jane\n\
                 O|1|{specimen}||^^^GLU|R\n\
                 R|1|^^^GLU|{}|mg/dL|70-110|N||F\n\
                 L|1|N\n",
                60 + n % 300
            ),
        )
        .unwrap();
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < give_up,
                "{specimen} was never acknowledged"
            );
            let status = Command::new("timeout")
                .arg("20")
                .arg(&python)
                .arg(&helper)
                .args(["send", &port.to_string()])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if status.success() {
                acked.lock().unwrap().insert(specimen.clone());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What the journal holds, by source and by the message's own name (HL7:
/// MSH-10; ASTM: the O record's specimen), read incrementally: each check
/// loads only the messages journalled since the last, so the checks after
/// 200 kills cost what the first did.
#[derive(Default)]
struct Journalled {
    last_id: i64,
    keys: BTreeSet<(String, String)>,
}

impl Journalled {
    fn update(&mut self, db: &Path) {
        let reader = JournalReader::open(db).unwrap();
        for id in reader.message_ids().unwrap() {
            if id <= self.last_id {
                continue;
            }
            self.last_id = id;
            let m = reader.message(id).unwrap().unwrap();
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            let (record, field) = if m.source == "analyzer" {
                ("O|", 2)
            } else {
                ("MSH|", 9)
            };
            let key = text
                .split(['\r', '\n'])
                .find(|r| r.starts_with(record))
                .and_then(|r| r.split('|').nth(field))
                .unwrap_or_default()
                .to_string();
            assert!(
                self.keys.insert((m.source.clone(), key.clone())),
                "{key} from {} was journalled twice",
                m.source
            );
        }
    }

    fn of(&self, source: &str) -> BTreeSet<&str> {
        self.keys
            .iter()
            .filter(|(s, _)| s == source)
            .map(|(_, k)| k.as_str())
            .collect()
    }

    /// Every acknowledged message of `source` is journalled.
    fn assert_holds(&mut self, db: &Path, source: &str, acked: &BTreeSet<String>) -> usize {
        self.update(db);
        let stored = self.of(source);
        let missing: Vec<_> = acked
            .iter()
            .filter(|k| !stored.contains(k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{source}: acknowledged but not journalled: {missing:?}"
        );
        acked.len()
    }
}

/// The files that have left the inbox (taken by the gateway). The list of
/// files produced is read before the inbox: a file renamed into it in
/// between is not counted, where the other order would count it taken.
fn taken_files(inbox: &Path, produced: &Produced) -> BTreeSet<String> {
    let produced = produced.lock().unwrap().clone();
    let waiting: BTreeSet<String> = ecko_tests::file_names(inbox).into_iter().collect();
    produced
        .into_iter()
        .filter(|id| !waiting.contains(&format!("{id}.hl7")))
        .collect()
}

/// How many copies of each control id the MLLP receiver stored.
fn received_copies(dir: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut copies = std::collections::BTreeMap::new();
    for name in ecko_tests::file_names(dir) {
        if let Some(stem) = name.strip_suffix(".hl7") {
            let id = stem.split('.').next().unwrap().to_string();
            *copies.entry(id).or_insert(0) += 1;
        }
    }
    copies
}

/// A peer process that goes with the test, failed or not.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_messages_from_three_kinds_of_sender_survive_sigkills_and_reach_both_peers_once() {
    let (kills, while_starting) = kills();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let received = dir.join("received");
    std::fs::create_dir_all(&received).unwrap();
    let astm_files = dir.join("astm");
    std::fs::create_dir_all(&astm_files).unwrap();

    let fhir = FhirServer::start(0, &[]);
    let receiver_port = free_port();
    let _receiver = KilledOnDrop(
        Command::new(peer_python("venv-hl7"))
            .arg(python_script("hl7apy_server.py"))
            .arg(receiver_port.to_string())
            .arg(&received)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for_port(receiver_port, Duration::from_secs(10)),
        "hl7apy server did not start"
    );
    let (mllp, astm) = (free_port(), free_port());
    let cfg = config(dir, &fhir.base, mllp, astm, receiver_port);
    let log = dir.join("gateway.log");
    let db = dir.join("journal.db");

    let stop = Arc::new(AtomicBool::new(false));
    let (mllp_acked, astm_acked): (Acknowledged, Acknowledged) = Default::default();
    let produced: Produced = Arc::default();
    let mut load = Vec::new();
    for s in 0..MLLP_SENDERS {
        let (stop, acked) = (stop.clone(), mllp_acked.clone());
        load.push(std::thread::spawn(move || {
            send_over_mllp(mllp, s, stop, acked)
        }));
    }
    for p in 0..FILE_PRODUCERS {
        let (inbox, stop, produced) = (dir.join("inbox"), stop.clone(), produced.clone());
        load.push(std::thread::spawn(move || {
            produce(&inbox, p, stop, produced)
        }));
    }
    {
        let (files, stop, acked) = (astm_files.clone(), stop.clone(), astm_acked.clone());
        load.push(std::thread::spawn(move || {
            send_over_astm(&files, astm, stop, acked)
        }));
    }

    let mut rng = rand::rng();
    let mut journal = Journalled::default();
    let inbox = dir.join("inbox");
    let started = Instant::now();
    for round in 0..kills {
        // Some kills land while the journal is opened, leases are released
        // and ports are bound.
        let gw = if round % (kills / while_starting) == 1 {
            let gw = Gateway::spawn(&cfg, &log, &[]);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
            gw
        } else {
            let gw = Gateway::start(&cfg, &log, &[]);
            std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
            gw
        };
        gw.kill();
        let taken = journal.assert_holds(&db, "inbox", &taken_files(&inbox, &produced));
        let m = journal.assert_holds(&db, "lis", &mllp_acked.lock().unwrap().clone());
        let a = journal.assert_holds(&db, "analyzer", &astm_acked.lock().unwrap().clone());
        eprintln!("kill {round}: {taken} files taken, {m} MLLP and {a} ASTM messages acknowledged");
    }
    let kill_phase = started.elapsed();

    // A final, undisturbed run takes the rest and delivers everything.
    let gw = Gateway::start(&cfg, &log, &[]);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let hl7: BTreeSet<String> = mllp_acked
        .lock()
        .unwrap()
        .iter()
        .chain(produced.lock().unwrap().iter())
        .cloned()
        .collect();
    let astm_count = astm_acked.lock().unwrap().len();
    let total = hl7.len() + astm_count;
    assert!(
        eventually(Duration::from_secs(60), || {
            std::fs::read_dir(dir.join("inbox")).unwrap().count() == 0
        }),
        "the inbox was not emptied"
    );
    // The FHIR server takes some hundreds of Bundles a second here.
    let drain_time = Duration::from_secs(60 + total as u64 / 20);
    let drained = eventually(drain_time, || {
        let Ok(reader) = JournalReader::open(&db) else {
            return false;
        };
        let counts = reader.counts().unwrap_or_default();
        let of = |d: &str| {
            counts
                .iter()
                .find(|c| c.destination == d)
                .map_or(0, |c| c.delivered as usize)
        };
        of("hub") == total && of("copy") == hl7.len()
    });
    assert_eq!(gw.terminate(), Some(0), "graceful shutdown");
    assert!(
        drained,
        "not everything was delivered: see {}",
        log.display()
    );

    // Nothing lost, nothing journalled twice.
    let files: BTreeSet<String> = produced.lock().unwrap().clone();
    assert_eq!(taken_files(&inbox, &produced), files, "every file taken");
    journal.assert_holds(&db, "inbox", &files);
    journal.assert_holds(&db, "lis", &mllp_acked.lock().unwrap().clone());
    journal.assert_holds(&db, "analyzer", &astm_acked.lock().unwrap().clone());
    let reader = JournalReader::open(&db).unwrap();
    let ids = reader.message_ids().unwrap();
    assert_eq!(ids.len(), total, "a message was journalled twice");
    for id in ids {
        for row in reader.outbox_of(id).unwrap() {
            assert_eq!(row.state, OutboxState::Delivered);
            let recorded = reader
                .events_of(id)
                .unwrap()
                .into_iter()
                .filter(|e| {
                    e.outbox_id == Some(row.id) && e.outcome.as_deref() == Some("delivered")
                })
                .count();
            assert_eq!(
                recorded, 1,
                "outbox row {} delivered {recorded} times",
                row.id
            );
        }
    }

    // Upstream: one Observation per message, every HL7 message received.
    assert_eq!(
        count(&fhir.base, "Observation?code=GLU"),
        total as u64,
        "Observations on the FHIR server"
    );
    let copies = received_copies(&received);
    let missing: Vec<_> = hl7.iter().filter(|id| !copies.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "never reached the MLLP receiver: {missing:?}"
    );
    let second_copies: usize = copies.values().map(|n| n - 1).sum();
    assert!(
        second_copies <= kills,
        "{second_copies} second copies at the MLLP receiver for {kills} kills"
    );
    eprintln!(
        "{kills} kills ({while_starting} while starting) in {:.1} s: {} MLLP, {} files, {astm_count} ASTM acknowledged; \
         {total} Observations upstream, {} HL7 messages at the receiver with {second_copies} second copies",
        kill_phase.as_secs_f64(),
        mllp_acked.lock().unwrap().len(),
        produced.lock().unwrap().len(),
        hl7.len(),
    );
}
