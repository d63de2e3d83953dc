//! The gateway is SIGKILLed at random moments while files stream in; after
//! every kill, each file it had taken (removed from the inbox) must be in the
//! journal, and at the end every message is delivered, with exactly one
//! recorded delivery per destination.

use ecko_gateway::journal::{JournalReader, OutboxState};
use ecko_tests::{eventually, Gateway};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PRODUCERS: usize = 4;
const PER_PRODUCER: usize = 400;
const KILLS: usize = 12;

fn config(dir: &Path) -> String {
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
name = "archive"
type = "file"
path = "{d}/outbox"

[[endpoint]]
name = "copy"
type = "file"
path = "{d}/copy"

[[route]]
name = "all"
from = ["inbox"]
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

fn produce(inbox: &Path, producer: usize, produced: Produced, stop: Arc<AtomicBool>) {
    let mut rng = rand::rng();
    for n in 0..PER_PRODUCER {
        if stop.load(Ordering::SeqCst) {
            return;
        }
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
    std::fs::write(&cfg, config(dir)).unwrap();
    let log = dir.join("gateway.log");

    let produced: Produced = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (inbox, produced, stop) = (dir.join("inbox"), produced.clone(), stop.clone());
            std::thread::spawn(move || produce(&inbox, p, produced, stop))
        })
        .collect();

    let mut rng = rand::rng();
    for round in 0..KILLS {
        let gw = Gateway::start(&cfg, &log, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        gw.kill();
        let taken = assert_taken_files_are_journalled(dir, &produced);
        eprintln!("kill {round}: {taken} files taken so far");
    }
    for p in producers {
        p.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);

    // A final, undisturbed run drains the inbox and delivers everything.
    let gw = Gateway::start(&cfg, &log, &[]);
    let total = PRODUCERS * PER_PRODUCER;
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
    assert_eq!(produced.len(), total);
    assert_eq!(
        assert_taken_files_are_journalled(dir, &Arc::new(Mutex::new(produced.clone()))),
        total
    );
    let reader = JournalReader::open(&dir.join("journal.db")).unwrap();
    let ids = reader.message_ids().unwrap();
    assert_eq!(ids.len(), total, "a file was journalled twice");
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
