//! Applying a new configuration to a running gateway: only what changed is
//! restarted, and a disabled destination keeps its queue.

use super::*;
use crate::config::Config;
use crate::journal::JournalReader;
use ecko_protocol::mllp;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, a_port: u16, b_port: u16, archive_enabled: bool) -> Config {
    let text = format!(
        r#"
[journal]
path = "{d}/j.db"
[[endpoint]]
name = "a"
type = "mllp"
listen = "127.0.0.1:{a_port}"
[[endpoint]]
name = "b"
type = "mllp"
listen = "127.0.0.1:{b_port}"
[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
poll_interval = "20ms"
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"
enabled = {archive_enabled}
[[route]]
name = "all"
from = ["a", "b", "inbox"]
to = ["archive"]
"#,
        d = dir.display()
    );
    Config::parse(&text, "t.toml", |_| None).unwrap()
}

fn oru(control: &str) -> Vec<u8> {
    format!("MSH|^~\\&|LAB|H|GW|H|20240101120000||ORU^R01|{control}|P|2.5\rPID|||P1\rOBX|1|NM|GLU||5.2|mmol/L\r").into_bytes()
}

/// Sends one message on an open connection and returns its ACK's text.
async fn exchange(stream: &mut TcpStream, control: &str) -> String {
    stream
        .write_all(&mllp::encode(&oru(control)))
        .await
        .unwrap();
    let mut decoder = mllp::Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(event) = decoder.next_event() {
            if let mllp::Event::Frame(f) = event {
                return String::from_utf8_lossy(&f).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed before the ACK");
        decoder.push(&buf[..n], std::time::Instant::now());
    }
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..250 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_answers_on_its_new_port_while_another_listeners_open_connection_keeps_working(
) {
    let dir = tempfile::tempdir().unwrap();
    let (a1, b, a2) = (free_port(), free_port(), free_port());
    let gw = Gateway::start(&config(dir.path(), a1, b, true))
        .await
        .unwrap();
    let mut to_b = TcpStream::connect(("127.0.0.1", b)).await.unwrap();
    assert!(exchange(&mut to_b, "B1").await.contains("MSA|AA|B1"));
    let mut to_a = TcpStream::connect(("127.0.0.1", a1)).await.unwrap();
    assert!(exchange(&mut to_a, "A1").await.contains("MSA|AA|A1"));
    drop(to_a);

    let report = gw
        .supervisor
        .apply(config(dir.path(), a2, b, true))
        .await
        .unwrap();
    assert_eq!(report.restarted, ["a"]);
    assert!(report.started.is_empty() && report.stopped.is_empty());
    assert!(!report.routes_changed);

    let mut moved = TcpStream::connect(("127.0.0.1", a2)).await.unwrap();
    assert!(exchange(&mut moved, "A2").await.contains("MSA|AA|A2"));
    assert!(
        TcpStream::connect(("127.0.0.1", a1)).await.is_err(),
        "the old port is closed"
    );
    // The connection to the unchanged listener was never dropped.
    assert!(exchange(&mut to_b, "B2").await.contains("MSA|AA|B2"));
    drop((moved, to_b));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_destination_keeps_its_queue_and_delivers_it_once_enabled_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let gw = Gateway::start(&config(dir.path(), a, b, true))
        .await
        .unwrap();
    let out = dir.path().join("out");
    let inbox = dir.path().join("inbox");
    std::fs::write(inbox.join("1.hl7"), oru("F1")).unwrap();
    wait_for("the first file delivered", || files_in(&out) == 1).await;

    let report = gw
        .supervisor
        .apply(config(dir.path(), a, b, false))
        .await
        .unwrap();
    assert_eq!(report.stopped, ["archive"]);
    assert!(!gw.supervisor.running().contains(&"archive".into()));

    std::fs::write(inbox.join("2.hl7"), oru("F2")).unwrap();
    wait_for("the second file journalled", || files_in(&inbox) == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(files_in(&out), 1, "nothing is delivered while disabled");
    let counts = JournalReader::open(&dir.path().join("j.db"))
        .unwrap()
        .counts()
        .unwrap();
    let archive = counts.iter().find(|c| c.destination == "archive").unwrap();
    assert_eq!((archive.queued, archive.delivered), (1, 1));

    let report = gw
        .supervisor
        .apply(config(dir.path(), a, b, true))
        .await
        .unwrap();
    assert_eq!(report.started, ["archive"]);
    wait_for("the queued file delivered", || files_in(&out) == 2).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_cannot_start_leaves_the_running_one_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let gw = Gateway::start(&config(dir.path(), a, b, true))
        .await
        .unwrap();
    // `a` moves onto the port `b` holds: the bind fails.
    let err = gw
        .supervisor
        .apply(config(dir.path(), b, b, true))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    assert!(gw
        .supervisor
        .config()
        .endpoint("a")
        .is_some_and(|e| format!("{:?}", e.kind).contains(&format!(":{a}\""))));
    let mut to_a = TcpStream::connect(("127.0.0.1", a)).await.unwrap();
    assert!(exchange(&mut to_a, "A1").await.contains("MSA|AA|A1"));
    drop(to_a);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_settings_change_the_journal_limits_and_the_site_time_zone_live() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_port(), free_port());
    let gw = Gateway::start(&config(dir.path(), a, b, true))
        .await
        .unwrap();
    let mut next = config(dir.path(), a, b, true);
    next.journal.max_size = 3 << 20;
    next.journal.retention = Duration::from_secs(86_400);
    next.site.time_zone = "Europe/Berlin".into();
    let report = gw.supervisor.apply(next).await.unwrap();
    assert!(report.restarted.is_empty() && report.started.is_empty());
    assert_eq!(gw.journal.limits().0, 3 << 20);
    assert_eq!(gw.supervisor.time_zone().iana_name(), Some("Europe/Berlin"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_retention_purges_on_the_new_schedule_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let clock = Arc::new(crate::journal::ManualClock::new(1_700_000_000_000));
    let mut options = JournalOptions::new(dir.path().join("j.db"));
    options.clock = clock.clone();
    let journal = Journal::open(options).unwrap();
    let (a, b) = (free_port(), free_port());
    let gw = Gateway::start_with(&config(dir.path(), a, b, true), journal)
        .await
        .unwrap();
    std::fs::write(dir.path().join("inbox/1.hl7"), oru("R1")).unwrap();
    wait_for("the file delivered", || {
        files_in(&dir.path().join("out")) == 1
    })
    .await;
    // Settled rows are in the journal once the file exists; give the commit
    // a moment before moving the clock.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let kept = |j: &Journal| {
        let j = j.clone();
        async move { j.message(1).await.unwrap().is_some() }
    };
    assert!(kept(&gw.journal).await);
    clock.advance(2 * 86_400_000);
    // 90 days of retention keep a two-day-old message.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(kept(&gw.journal).await);

    let mut next = config(dir.path(), a, b, true);
    next.journal.retention = Duration::from_secs(86_400);
    gw.supervisor.apply(next).await.unwrap();
    for _ in 0..250 {
        if !kept(&gw.journal).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!kept(&gw.journal).await, "purged with the new retention");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_endpoint_resume_also_resets_a_tripped_circuit_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[journal]\npath = \"{d}/j.db\"\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"{d}/out\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&Config::load(&path).unwrap()).await.unwrap();
    gw.journal
        .trip_breaker("archive", 20, "HTTP 400 twenty times", vec![])
        .await
        .unwrap();
    let hub = crate::config::HubConfig::default();
    let d = crate::hub::Dispatcher::new(&hub, gw.supervisor.clone());
    let command = serde_json::json!({
        "v": 1, "id": "c-1", "issued_at": gw.journal.now_ms(),
        "cmd": "endpoint.resume", "body": {"endpoint": "archive"},
    });
    let bytes = crate::hub::payload::encode(hub.format, &command);
    let reply = crate::hub::payload::decode(hub.format, &d.answer("c-1", &bytes).await).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(reply["result"]["breaker_reset"], true, "{reply}");
    assert!(gw.journal.breaker("archive").await.unwrap().is_none());
    let audit = gw.journal.audit_log(None, 20).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "endpoint.resume"),
        "{audit:?}"
    );
    gw.shutdown().await;
}
