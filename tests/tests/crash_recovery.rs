//! The gateway is SIGKILLed at random moments, some while it is still
//! starting, while files stream into its drop folder and MLLP senders on
//! their own connections wait for each ACK. After every kill, each file it
//! had taken (removed from the inbox) and each message it had acknowledged
//! must be in the journal; at the end every message is delivered, with
//! exactly one recorded delivery per destination, and no resent message was
//! journalled twice.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::{eventually, Gateway};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 400;
const MLLP_SENDERS: usize = 3;
const PER_SENDER: usize = 300;
const KILLS: usize = 12;
const KILLS_WHILE_STARTING: usize = 4;

fn config(dir: &Path, mllp_port: u16) -> String {
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
listen = "127.0.0.1:{mllp_port}"

[[endpoint]]
name = "archive"
type = "file"
path = "{d}/outbox"

[[endpoint]]
name = "copy"
type = "file"
path = "{d}/copy"

[[route]]
name = "all"
from = ["inbox", "lis"]
to = ["archive", "copy"]
"#,
        d = dir.display()
    )
}

fn key(name: &str, body: &[u8]) -> String {
    format!("{name}:{}", hex::encode(Sha256::digest(body)))
}

/// Files produced so far, recorded only once renamed into the inbox.
type Produced = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

fn produce(inbox: &Path, producer: usize, produced: Produced) {
    let mut rng = rand::rng();
    for n in 0..PER_PRODUCER {
        let name = format!("m-{producer}-{n:05}.hl7");
        let body = format!(
            "MSH|^~\\&|LAB|P{producer}|||20261125||ORU^R01|{producer}-{n}|P|2.5.1\rOBX|1|NM|GLU||{}|mg/dL\r{}",
            rng.random_range(50..400),
            "x".repeat(1500)
        )
        .into_bytes();
        let tmp = inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &body).unwrap();
        std::fs::rename(&tmp, inbox.join(&name)).unwrap();
        produced.lock().unwrap().insert(name, body);
        std::thread::sleep(Duration::from_micros(rng.random_range(2000..14000)));
    }
}

/// Control ids the gateway answered `AA` for.
type Acknowledged = Arc<Mutex<BTreeSet<String>>>;

/// One MLLP sender: one message at a time, each resent (on a new connection
/// when the old one died) until the gateway answers `AA`, as a real
/// analyzer's interface does.
fn send_over_mllp(port: u16, sender: usize, acknowledged: Acknowledged) {
    let mut rng = rand::rng();
    let mut connection: Option<TcpStream> = None;
    let give_up = Instant::now() + Duration::from_secs(240);
    for n in 0..PER_SENDER {
        let id = format!("S{sender}-{n:05}");
        let message = format!(
            "MSH|^~\\&|ANALYZER|LAB{sender}|LIS|HOSP|20261201120000||ORU^R01|{id}|P|2.5.1\rPID|1||P{sender}\rOBX|1|NM|GLU||{}|mg/dL\r",
            rng.random_range(50..400)
        );
        let mut frame = vec![0x0b];
        frame.extend_from_slice(message.as_bytes());
        frame.extend_from_slice(&[0x1c, 0x0d]);
        loop {
            assert!(
                Instant::now() < give_up,
                "sender {sender} never got {id} acknowledged"
            );
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
                    acknowledged.lock().unwrap().insert(id.clone());
                    break;
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
                None => {
                    connection = None;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Sends one frame and reads one answer frame; `None` when the connection
/// failed on the way.
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

/// Every acknowledged MLLP message is in the journal.
fn assert_acknowledged_messages_are_journalled(dir: &Path, acknowledged: &Acknowledged) -> usize {
    let snapshot = acknowledged.lock().unwrap().clone();
    let reader = JournalReader::open(&dir.join("journal.db")).unwrap();
    let mut stored = BTreeSet::new();
    for id in reader.message_ids().unwrap() {
        let m = reader.message(id).unwrap().unwrap();
        if m.source == "lis" {
            stored.insert(m.envelope.control_id.unwrap_or_default());
        }
    }
    let missing: Vec<_> = snapshot.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the journal: {missing:?}"
    );
    snapshot.len()
}

/// Every file that left the inbox is a message in the journal.
fn assert_taken_files_are_journalled(dir: &Path, produced: &Produced) -> usize {
    let snapshot = produced.lock().unwrap().clone();
    let still_there: std::collections::HashSet<String> = std::fs::read_dir(dir.join("inbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let reader = JournalReader::open(&dir.join("journal.db")).unwrap();
    let mut taken = 0;
    for (name, body) in &snapshot {
        if still_there.contains(name) {
            continue;
        }
        taken += 1;
        let found = reader.find_by_key("inbox", &key(name, body)).unwrap();
        assert!(
            found.is_some(),
            "{name} left the inbox but is not in the journal"
        );
    }
    taken
}

#[test]
fn every_taken_message_survives_repeated_sigkills_and_is_delivered_exactly_once_on_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let cfg = dir.join("gateway.toml");
    let mllp_port = ecko_tests::free_port();
    std::fs::write(&cfg, config(dir, mllp_port)).unwrap();
    let log = dir.join("gateway.log");

    let produced: Produced = Arc::default();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (inbox, produced) = (dir.join("inbox"), produced.clone());
            std::thread::spawn(move || produce(&inbox, p, produced))
        })
        .collect();
    let acknowledged: Acknowledged = Arc::default();
    let senders: Vec<_> = (0..MLLP_SENDERS)
        .map(|s| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || send_over_mllp(mllp_port, s, acknowledged))
        })
        .collect();

    let mut rng = rand::rng();
    let mut while_starting = 0;
    for round in 0..KILLS + KILLS_WHILE_STARTING {
        // Some kills land while the journal is opened, leases are released
        // and ports are bound.
        let gw = if round % 4 == 1 && while_starting < KILLS_WHILE_STARTING {
            while_starting += 1;
            let gw = Gateway::spawn(&cfg, &log, &[]);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
            gw
        } else {
            let gw = Gateway::start(&cfg, &log, &[]);
            std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
            gw
        };
        gw.kill();
        let taken = assert_taken_files_are_journalled(dir, &produced);
        let acked = assert_acknowledged_messages_are_journalled(dir, &acknowledged);
        eprintln!("kill {round}: {taken} files taken, {acked} MLLP messages acknowledged so far");
    }
    for p in producers {
        p.join().unwrap();
    }

    // A final, undisturbed run takes the rest and delivers everything.
    let gw = Gateway::start(&cfg, &log, &[]);
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(
        assert_acknowledged_messages_are_journalled(dir, &acknowledged),
        MLLP_SENDERS * PER_SENDER
    );
    let total = PRODUCERS * PER_PRODUCER + MLLP_SENDERS * PER_SENDER;
    let drained = eventually(Duration::from_secs(60), || {
        let Ok(reader) = JournalReader::open(&dir.join("journal.db")) else {
            return false;
        };
        let counts = reader.counts().unwrap_or_default();
        counts.len() == 2 && counts.iter().all(|c| c.delivered as usize == total)
    });
    assert_eq!(gw.terminate(), Some(0), "graceful shutdown");
    assert!(
        drained,
        "not everything was delivered: see {}",
        log.display()
    );

    let produced = produced.lock().unwrap();
    assert_eq!(produced.len(), PRODUCERS * PER_PRODUCER);
    assert_eq!(
        assert_taken_files_are_journalled(dir, &Arc::new(Mutex::new(produced.clone()))),
        PRODUCERS * PER_PRODUCER
    );
    let reader = JournalReader::open(&dir.join("journal.db")).unwrap();
    let ids = reader.message_ids().unwrap();
    assert_eq!(ids.len(), total, "a message was journalled twice");
    for id in ids {
        let message = reader.message(id).unwrap().unwrap();
        for row in reader.outbox_of(id).unwrap() {
            assert_eq!(row.state, OutboxState::Delivered);
            let sink_dir = if row.destination == "archive" {
                "outbox"
            } else {
                "copy"
            };
            let file = dir.join(sink_dir).join(format!("{id:012}-{}.msg", row.id));
            assert_eq!(
                std::fs::read(&file).unwrap(),
                message.payload,
                "{}",
                file.display()
            );
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
                "outbox row {} recorded as delivered {recorded} times",
                row.id
            );
        }
    }
}
