//! The ASTM source against a scripted analyzer on an in-memory line, with a
//! real journal underneath.

use super::*;
use crate::config::Config;
use crate::journal::{Journal, JournalOptions, JournalReader, NewOrder, OrderState};
use crate::router::Router;
use ecko_hal::storage::SimStorage;
use ecko_hal::{SerialSettings, SimSerial};
use ecko_protocol::astm::frame::{encode_records, ACK, ENQ, EOT, NAK, STX};
use ecko_protocol::astm::link::IncompleteReason;
use ecko_protocol::astm::message::{content_hash, Message, ParseOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[journal]
path = "unused.db"

[[endpoint]]
name = "chem"
type = "astm-tcp"
address = "127.0.0.1:0"
orders = "broadcast"
order_poll = "100ms"
busy_retry = "300ms"
sender_name = "LAB-LIS^2.1"

[[endpoint]]
name = "archive"
type = "file"
path = "/tmp/unused"

[[route]]
name = "astm-results"
from = ["chem"]
message_types = ["ASTM"]
to = ["archive"]
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    journal: Journal,
    disk: SimStorage,
    cx: SourceContext,
    setup: Arc<Setup>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let disk = SimStorage::new(u64::MAX);
    let mut o = JournalOptions::new(&path);
    o.storage = Arc::new(disk.clone());
    o.min_free_disk = 1000;
    let journal = Journal::open(o).unwrap();
    let config = Config::parse(CONFIG, "t.toml", |_| None).unwrap();
    let crate::config::EndpointKind::AstmTcp(c) = &config.endpoints[0].kind else {
        panic!("astm-tcp expected")
    };
    let setup = Arc::new(Setup::new("chem", c.profile()));
    let cx = SourceContext {
        journal: journal.clone(),
        router: Arc::new(Router::new(&config)),
        shutdown: CancellationToken::new(),
        time_zone: jiff::tz::TimeZone::UTC.into(),
        health: crate::health::Health::new(),
        counters: Default::default(),
        heartbeat: Default::default(),
    };
    Fixture {
        _dir: dir,
        path,
        journal,
        disk,
        cx,
        setup,
    }
}

impl Fixture {
    /// Starts a session on an in-memory line; returns the analyzer's end.
    fn connect(&self) -> (DuplexStream, tokio::task::JoinHandle<End>) {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let setup = self.setup.clone();
        let cx = self.cx.clone();
        let task = tokio::spawn(async move { session::drive(ours, &setup, &cx).await });
        (theirs, task)
    }

    fn stored(&self) -> Vec<ecko_message::StoredMessage> {
        let r = JournalReader::open(&self.path).unwrap();
        r.message_ids()
            .unwrap()
            .into_iter()
            .filter_map(|id| r.message(id).unwrap())
            .collect()
    }
}

fn records(text: &str) -> Vec<Vec<u8>> {
    text.split('\r')
        .filter(|r| !r.is_empty())
        .map(|r| r.as_bytes().to_vec())
        .collect()
}

const RESULT: &str = "H|\\^&|||CHEM-9^1.0|||||||P|LIS2-A2|20240102030405\rP|1||PID1||Doe^Jane\rO|1|SPEC1||^^^GLU|R\rR|1|^^^GLU|5.4|mmol/L|3.9-6.1|N||F\rL|1|N\r";

async fn read_byte(line: &mut DuplexStream) -> u8 {
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), line.read_exact(&mut b))
        .await
        .expect("an answer within 5 s")
        .expect("the line is open");
    b[0]
}

/// Sends a whole session as the analyzer: ENQ, every frame, EOT; returns
/// the answer to each (ENQ first, then per frame).
async fn send_session(line: &mut DuplexStream, recs: &[Vec<u8>]) -> Vec<u8> {
    let mut answers = Vec::new();
    line.write_all(&[ENQ]).await.unwrap();
    answers.push(read_byte(line).await);
    for frame in encode_records(recs, 240) {
        line.write_all(&frame).await.unwrap();
        answers.push(read_byte(line).await);
    }
    line.write_all(&[EOT]).await.unwrap();
    answers
}

/// Receives one session from the gateway as the analyzer: answers its ENQ
/// and every frame with ACK; returns the records.
async fn receive_session(line: &mut DuplexStream) -> Vec<Vec<u8>> {
    assert_eq!(read_byte(line).await, ENQ);
    line.write_all(&[ACK]).await.unwrap();
    let mut text = Vec::new();
    loop {
        match read_byte(line).await {
            STX => {
                let mut frame = Vec::new();
                loop {
                    let b = read_byte(line).await;
                    frame.push(b);
                    if b == b'\n' {
                        break;
                    }
                }
                // FN, text, ETX/ETB, C1, C2, CR, LF
                text.extend_from_slice(&frame[1..frame.len() - 5]);
                line.write_all(&[ACK]).await.unwrap();
            }
            EOT => break,
            other => panic!("unexpected byte {other:#04x}"),
        }
    }
    records(&String::from_utf8(text).unwrap())
}

#[tokio::test]
async fn a_result_is_journalled_once_and_its_last_frame_acknowledged_after_the_commit() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    let recs = records(RESULT);
    let answers = send_session(&mut line, &recs).await;
    assert!(answers.iter().all(|&a| a == ACK), "{answers:?}");
    // The last ACK came after the commit: the row is there now.
    let stored = f.stored();
    assert_eq!(stored.len(), 1);
    let m = &stored[0];
    assert_eq!(m.source, "chem");
    assert_eq!(m.message_type, "ASTM");
    assert_eq!(m.content_type, "application/x-astm");
    assert_eq!(m.payload, RESULT.as_bytes());
    assert_eq!(m.dedup_key.as_deref(), Some(content_hash(&recs).as_str()));
    assert_eq!(m.patient_id.as_deref(), Some("PID1"));
    let reparsed = Message::parse(
        &records(std::str::from_utf8(&m.payload).unwrap()),
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(reparsed.patients[0].orders[0].results[0].value(), "5.4");
}

#[tokio::test]
async fn a_resent_message_is_acknowledged_and_not_queued_twice() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    let recs = records(RESULT);
    send_session(&mut line, &recs).await;
    let again = send_session(&mut line, &recs).await;
    assert!(again.iter().all(|&a| a == ACK), "{again:?}");
    assert_eq!(f.stored().len(), 1);
    let r = JournalReader::open(&f.path).unwrap();
    assert_eq!(r.outbox_of(f.stored()[0].id).unwrap().len(), 1);
}

#[tokio::test]
async fn a_full_disk_naks_the_last_frame_and_refuses_sessions_until_there_is_room() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    f.disk.set_available(10);
    tokio::time::sleep(Duration::from_millis(300)).await; // the journal re-measures
    let recs = records(RESULT);
    let answers = send_session(&mut line, &recs).await;
    assert_eq!(*answers.last().unwrap(), NAK, "{answers:?}");
    assert!(answers[..answers.len() - 1].iter().all(|&a| a == ACK));
    assert!(f.stored().is_empty());
    assert_eq!(f.cx.counters.received.get(), 1);
    assert_eq!(f.cx.counters.acknowledged.get(), 0);
    // While the journal refuses, a new session is refused.
    line.write_all(&[ENQ]).await.unwrap();
    assert_eq!(read_byte(&mut line).await, NAK);
    for _ in 0..100 {
        if f.cx.counters.refused.get() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        f.cx.counters.refused.get(),
        2,
        "the message NAKed and the session refused are both counted"
    );

    f.disk.set_available(u64::MAX);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let answers = send_session(&mut line, &recs).await;
    assert!(answers.iter().all(|&a| a == ACK), "{answers:?}");
    assert_eq!(f.stored().len(), 1);
    assert_eq!(f.cx.counters.acknowledged.get(), 1);
    assert_eq!(f.cx.counters.received.get(), 2);
}

#[tokio::test]
async fn a_transmission_without_its_terminator_is_kept_for_inspection_not_as_a_result() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    let recs = records(RESULT);
    let answers = send_session(&mut line, &recs[..3]).await;
    assert!(answers.iter().all(|&a| a == ACK));
    let mut kept = Vec::new();
    for _ in 0..100 {
        kept = f.journal.incomplete_transmissions("chem").await.unwrap();
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, "EndedWithoutTerminator");
    assert!(kept[0].records.starts_with(b"H|\\^&"));
    assert!(f.stored().is_empty());
}

fn order(specimen: &str, tests: &[&str]) -> NewOrder {
    NewOrder {
        analyzer: "chem".into(),
        specimen_id: specimen.into(),
        patient_id: "PID1".into(),
        patient_name: vec!["Doe".into(), "Jane".into()],
        tests: tests.iter().map(|t| t.to_string()).collect(),
        priority: "R".into(),
        sender: None,
    }
}

/// The same fixture without broadcast: orders only on query.
fn query_only() -> Fixture {
    let mut f = fixture();
    let mut profile = f.setup.profile.clone();
    profile.orders = crate::config::AstmOrderMode::Query;
    f.setup = Arc::new(Setup::new("chem", profile));
    f
}

#[tokio::test]
async fn a_host_query_is_answered_in_a_new_session_with_the_matching_orders() {
    let f = query_only();
    f.journal
        .add_order(order("SPEC7", &["GLU", "NA"]))
        .await
        .unwrap();
    f.journal.add_order(order("OTHER", &["K"])).await.unwrap();
    let (mut line, _task) = f.connect();
    let query = records("H|\\^&|||CHEM-9\rQ|1|^SPEC7||^^^ALL||||||||O\rL|1|N\r");
    let answers = send_session(&mut line, &query).await;
    assert!(answers.iter().all(|&a| a == ACK));
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert_eq!(m.patients.len(), 1);
    assert_eq!(m.patients[0].orders.len(), 1);
    assert_eq!(m.patients[0].orders[0].specimen_id(), "SPEC7");
    let tests: Vec<String> = m.patients[0].orders[0]
        .universal_test_ids()
        .iter()
        .map(|t| t.code().to_string())
        .collect();
    assert_eq!(tests, ["GLU", "NA"]);
    // Acknowledged, so marked sent; the other order is untouched.
    let mut states = Vec::new();
    for _ in 0..100 {
        states = f.journal.orders(Some("chem")).await.unwrap();
        if states[0].state == OrderState::Sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(states[0].state, OrderState::Sent);
    assert_eq!(states[1].state, OrderState::Pending);
    // A query is not a result.
    assert!(f.stored().iter().all(|m| m.message_type != "ASTM"));
}

#[tokio::test]
async fn a_host_query_for_an_unknown_specimen_gets_the_no_information_answer() {
    let f = query_only();
    let (mut line, _task) = f.connect();
    let query = records("H|\\^&\rQ|1|^NOPE||^^^ALL\rL|1|N\r");
    send_session(&mut line, &query).await;
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert!(m.patients.is_empty());
    assert_eq!(m.termination_code(), "I");
}

#[tokio::test]
async fn a_host_query_for_several_specimens_answers_each_in_order_and_marks_all_found_sent() {
    let f = query_only();
    f.journal.add_order(order("SID1003", &["K"])).await.unwrap();
    f.journal
        .add_order(order("SID1001", &["GLU", "NA"]))
        .await
        .unwrap();
    let (mut line, _task) = f.connect();
    // One Q record for a rack of three tubes, Q-3 repeated; the second
    // tube has no order.
    let query =
        records("H|\\^&|||AU480^V2.1\rQ|1|^SID1001\\^SID1002\\^SID1003||^^^ALL||||||||O\rL|1|N\r");
    send_session(&mut line, &query).await;
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    let answered: Vec<(String, String)> = m
        .patients
        .iter()
        .flat_map(|p| p.orders.iter().map(|o| (o.specimen_id(), o.report_type())))
        .collect();
    assert_eq!(
        answered,
        [
            ("SID1001".to_string(), "O".to_string()),
            ("SID1002".to_string(), "Y".to_string()),
            ("SID1003".to_string(), "O".to_string()),
        ]
    );
    assert_eq!(eventually_sent(&f, "SID1001").await.0, OrderState::Sent);
    assert_eq!(eventually_sent(&f, "SID1003").await.0, OrderState::Sent);
}

/// Reads one frame after its STX: FN, text, ETB/ETX, checksum, CR LF.
async fn read_frame(line: &mut DuplexStream) -> Vec<u8> {
    assert_eq!(read_byte(line).await, STX);
    let mut frame = Vec::new();
    loop {
        let b = read_byte(line).await;
        frame.push(b);
        if b == b'\n' {
            return frame;
        }
    }
}

async fn order_state(f: &Fixture, specimen: &str) -> (OrderState, u32) {
    let orders = f.journal.orders(Some("chem")).await.unwrap();
    let o = orders.iter().find(|o| o.specimen_id == specimen).unwrap();
    (o.state, o.send_count)
}

async fn eventually_sent(f: &Fixture, specimen: &str) -> (OrderState, u32) {
    let mut state = order_state(f, specimen).await;
    for _ in 0..100 {
        if state.0 == OrderState::Sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = order_state(f, specimen).await;
    }
    state
}

/// The frames of the download the gateway is about to send for `orders`.
fn frames_of(f: &Fixture, orders: &[crate::journal::StoredOrder]) -> usize {
    let header = answer::header(
        f.setup.profile.sender_components(),
        &jiff::tz::TimeZone::UTC,
    );
    encode_records(
        &answer::order_records(orders, &header, &jiff::tz::TimeZone::UTC),
        240,
    )
    .len()
}

#[tokio::test]
async fn broadcast_orders_are_marked_sent_only_after_the_last_frame_is_acknowledged() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    f.journal.add_order(order("B1", &["GLU"])).await.unwrap();
    let frames = frames_of(&f, &f.journal.pending_orders("chem", None).await.unwrap());
    assert!(frames >= 4, "H, P, O, L");
    assert_eq!(read_byte(&mut line).await, ENQ);
    line.write_all(&[ACK]).await.unwrap();
    for _ in 0..frames - 1 {
        read_frame(&mut line).await;
        line.write_all(&[ACK]).await.unwrap();
    }
    let last = read_frame(&mut line).await;
    assert_eq!(&last[last.len() - 5..last.len() - 4], [0x03], "ETX");
    // Every frame but the last is acknowledged: still pending.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(order_state(&f, "B1").await, (OrderState::Pending, 0));
    line.write_all(&[ACK]).await.unwrap();
    assert_eq!(read_byte(&mut line).await, EOT);
    assert_eq!(eventually_sent(&f, "B1").await, (OrderState::Sent, 1));
}

#[tokio::test]
async fn a_broadcast_whose_last_frame_is_refused_seven_times_leaves_the_order_pending() {
    let f = fixture();
    let (mut line, _task) = f.connect();
    f.journal.add_order(order("B3", &["GLU"])).await.unwrap();
    let frames = frames_of(&f, &f.journal.pending_orders("chem", None).await.unwrap());
    assert_eq!(read_byte(&mut line).await, ENQ);
    line.write_all(&[ACK]).await.unwrap();
    for _ in 0..frames - 1 {
        read_frame(&mut line).await;
        line.write_all(&[ACK]).await.unwrap();
    }
    let last = read_frame(&mut line).await;
    // The first transmission and six retransmissions, all refused.
    for i in 0..7 {
        line.write_all(&[NAK]).await.unwrap();
        if i < 6 {
            assert_eq!(
                read_frame(&mut line).await,
                last,
                "retransmission {}",
                i + 1
            );
        }
    }
    assert_eq!(read_byte(&mut line).await, EOT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(order_state(&f, "B3").await, (OrderState::Pending, 0));
}

#[tokio::test]
async fn an_acknowledged_broadcast_is_not_downloaded_again_when_the_analyzer_answers_the_next_enq()
{
    let f = fixture();
    let (mut line, _task) = f.connect();
    // The race between the `sent` mark and the next look for pending
    // orders, run several times: the last frame is acknowledged only after
    // the order timer came due, so the next look for orders follows the
    // ACK at once.
    for round in 0..4 {
        let specimen = format!("B4-{round}");
        f.journal
            .add_order(order(&specimen, &["GLU"]))
            .await
            .unwrap();
        let frames = frames_of(&f, &f.journal.pending_orders("chem", None).await.unwrap());
        assert_eq!(read_byte(&mut line).await, ENQ);
        line.write_all(&[ACK]).await.unwrap();
        let mut first = Vec::new();
        for i in 0..frames {
            let frame = read_frame(&mut line).await;
            first.extend_from_slice(&frame[1..frame.len() - 5]);
            if i + 1 == frames {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            line.write_all(&[ACK]).await.unwrap();
        }
        assert_eq!(read_byte(&mut line).await, EOT);
        let first = records(&String::from_utf8(first).unwrap());
        let o = format!("O|1|{specimen}|");
        assert!(
            first.iter().any(|r| r.starts_with(o.as_bytes())),
            "{first:?}"
        );
        // An analyzer that takes every session offered: whatever comes now
        // would carry the order again.
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(500), line.read_exact(&mut b))
            .await
            .is_ok()
        {
            assert_eq!(b[0], ENQ);
            line.write_all(&[ACK]).await.unwrap();
            let mut text = Vec::new();
            while read_byte(&mut line).await == STX {
                let mut frame = Vec::new();
                loop {
                    let c = read_byte(&mut line).await;
                    frame.push(c);
                    if c == b'\n' {
                        break;
                    }
                }
                text.extend_from_slice(&frame[1..frame.len() - 5]);
                line.write_all(&[ACK]).await.unwrap();
            }
            panic!(
                "round {round}: downloaded again: {}",
                String::from_utf8_lossy(&text).replace('\r', "\n")
            );
        }
        assert_eq!(eventually_sent(&f, &specimen).await, (OrderState::Sent, 1));
    }
}

#[tokio::test]
async fn a_broadcast_that_is_never_acknowledged_leaves_the_order_pending() {
    let f = fixture();
    f.journal.add_order(order("B2", &["GLU"])).await.unwrap();
    let (mut line, task) = f.connect();
    assert_eq!(read_byte(&mut line).await, ENQ);
    line.write_all(&[ACK]).await.unwrap();
    // Read the first frame and hang up without answering.
    let mut frame = Vec::new();
    loop {
        let b = read_byte(&mut line).await;
        frame.push(b);
        if b == b'\n' {
            break;
        }
    }
    drop(line);
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(end, End::Closed | End::Io(_)), "{end:?}");
    let orders = f.journal.orders(Some("chem")).await.unwrap();
    assert_eq!(orders[0].state, OrderState::Pending);
}

#[tokio::test]
async fn the_serial_line_is_opened_again_after_the_device_comes_back() {
    let f = fixture();
    let sim = SimSerial::new();
    let text = CONFIG.replace(
        "type = \"astm-tcp\"\naddress = \"127.0.0.1:0\"",
        "type = \"astm-serial\"\ndevice = \"/dev/ttySIM0\"\nbaud = 19200\nparity = \"even\"\ndata_bits = 7\nreconnect_max = \"200ms\"",
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let crate::config::EndpointKind::AstmSerial(c) = config.endpoints[0].kind.clone() else {
        panic!("astm-serial expected")
    };
    let task = tokio::spawn(run_serial(
        config.endpoints[0].clone(),
        c,
        Arc::new(sim.clone()),
        f.cx.clone(),
        TraceHub::default(),
    ));
    let mut line = sim.next_peer().await.unwrap();
    let health = f.cx.health.clone();
    let condition = || health.get("chem").map(|s| s.condition);
    eventually_true(|| condition() == Some(Condition::Up)).await;
    assert!(health
        .get("chem")
        .unwrap()
        .detail
        .unwrap()
        .contains("/dev/ttySIM0 open"));
    let s = sim.last_settings().unwrap();
    assert_eq!(
        (s.baud, s.data_bits, s.parity, s.path),
        (
            19200,
            7,
            ecko_hal::Parity::Even,
            SerialSettings::new("/dev/ttySIM0").path
        )
    );
    send_session(&mut line, &records(RESULT)).await;

    // The adapter is pulled, stays away a while, and comes back.
    sim.unplug();
    drop(line);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.opened(), 1);
    assert_eq!(condition(), Some(Condition::Down), "the port is closed");
    sim.plug();
    let mut line = tokio::time::timeout(Duration::from_secs(5), sim.next_peer())
        .await
        .unwrap()
        .unwrap();
    let other = RESULT.replace("5.4", "6.0");
    let answers = send_session(&mut line, &records(&other)).await;
    assert!(answers.iter().all(|&a| a == ACK));
    assert_eq!(f.stored().len(), 2);
    f.cx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

fn tcp_endpoint(extra: &str) -> (Endpoint, AstmTcpConfig) {
    let text = CONFIG.replace("address = \"127.0.0.1:0\"", extra);
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let crate::config::EndpointKind::AstmTcp(c) = config.endpoints[0].kind.clone() else {
        panic!("astm-tcp expected")
    };
    (config.endpoints[0].clone(), c)
}

#[tokio::test]
async fn as_a_tcp_client_the_gateway_connects_and_reconnects_after_the_analyzer_drops() {
    let f = fixture();
    let analyzer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = analyzer.local_addr().unwrap();
    let (endpoint, c) = tcp_endpoint(&format!(
        "role = \"client\"\naddress = \"{address}\"\nreconnect_max = \"200ms\""
    ));
    let task = tokio::spawn(run_tcp(endpoint, c, f.cx.clone(), TraceHub::default()));
    for (i, result) in [RESULT.to_string(), RESULT.replace("5.4", "7.7")]
        .iter()
        .enumerate()
    {
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), analyzer.accept())
            .await
            .expect("the gateway connects")
            .unwrap();
        let health = f.cx.health.clone();
        eventually_true(|| health.get("chem").map(|s| s.condition) == Some(Condition::Up)).await;
        let mut answers = Vec::new();
        stream.write_all(&[ENQ]).await.unwrap();
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await.unwrap();
        answers.push(b[0]);
        for frame in encode_records(&records(result), 240) {
            stream.write_all(&frame).await.unwrap();
            stream.read_exact(&mut b).await.unwrap();
            answers.push(b[0]);
        }
        stream.write_all(&[EOT]).await.unwrap();
        assert!(answers.iter().all(|&a| a == ACK), "{answers:?}");
        assert_eq!(f.stored().len(), i + 1);
        drop(stream); // the analyzer restarts
        let health = f.cx.health.clone();
        eventually_true(|| {
            health.get("chem").is_some_and(|s| {
                s.condition == Condition::Down
                    && s.detail.unwrap_or_default().contains("disconnected")
            })
        })
        .await;
    }
    f.cx.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn raw_framing_takes_bare_records_ending_in_crlf() {
    let f = fixture();
    let mut profile = f.setup.profile.clone();
    profile.framing = crate::config::AstmFraming::Raw;
    let raw = Fixture {
        setup: Arc::new(Setup::new("chem", profile)),
        ..f
    };
    let (mut line, _task) = raw.connect();
    // Two messages in one write: both are stored, in order.
    let second = RESULT.replace("5.4", "8.8");
    line.write_all(format!("{RESULT}{second}").replace('\r', "\r\n").as_bytes())
        .await
        .unwrap();
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = raw.stored();
        if stored.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].payload, RESULT.as_bytes());
    assert_eq!(stored[1].payload, second.as_bytes());
}

/// The same fixture with raw framing.
fn raw() -> Fixture {
    let mut f = fixture();
    let mut profile = f.setup.profile.clone();
    profile.framing = crate::config::AstmFraming::Raw;
    profile.orders = crate::config::AstmOrderMode::Query;
    f.setup = Arc::new(Setup::new("chem", profile));
    f
}

async fn ended(task: tokio::task::JoinHandle<End>) -> End {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the session ends")
        .expect("the session does not panic")
}

#[tokio::test]
async fn a_raw_analyzer_that_sends_a_result_and_hangs_up_at_once_has_it_stored() {
    let f = raw();
    for i in 0..10 {
        let (mut line, task) = f.connect();
        let result = RESULT.replace("5.4", &format!("5.{i}"));
        line.write_all(result.replace('\r', "\r\n").as_bytes())
            .await
            .unwrap();
        drop(line);
        assert!(matches!(ended(task).await, End::Closed));
        // The session returned only after the commit: no waiting here.
        assert_eq!(f.stored().len(), i + 1, "message {i} lost");
    }
}

#[tokio::test]
async fn a_line_that_drops_after_h_and_p_frames_leaves_an_incomplete_row() {
    let f = query_only();
    let (mut line, task) = f.connect();
    line.write_all(&[ENQ]).await.unwrap();
    assert_eq!(read_byte(&mut line).await, ACK);
    for frame in encode_records(&records(RESULT)[..2], 240) {
        line.write_all(&frame).await.unwrap();
        assert_eq!(read_byte(&mut line).await, ACK);
    }
    drop(line);
    assert!(matches!(ended(task).await, End::Closed));
    let kept = f.journal.incomplete_transmissions("chem").await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        kept[0].reason,
        format!("{:?}", IncompleteReason::LineClosed)
    );
    assert!(kept[0].records.starts_with(b"H|\\^&"));
    assert!(kept[0].records.ends_with(b"P|1||PID1||Doe^Jane\r"));
    assert!(f.stored().is_empty());
}

#[tokio::test]
async fn shutdown_keeps_a_partial_transmission_and_stored_results_stay_stored() {
    let f = raw();
    let (mut line, task) = f.connect();
    let partial = "H|\\^&|||CHEM-9\r\nP|1||PID2\r\nO|1|SP";
    line.write_all(format!("{}{partial}", RESULT.replace('\r', "\r\n")).as_bytes())
        .await
        .unwrap();
    for _ in 0..100 {
        if f.stored().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.stored().len(), 1);
    f.cx.shutdown.cancel();
    assert!(matches!(ended(task).await, End::Shutdown));
    let kept = f.journal.incomplete_transmissions("chem").await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].reason, "Shutdown");
    assert_eq!(kept[0].records, b"H|\\^&|||CHEM-9\rP|1||PID2\r");
    assert_eq!(kept[0].partial, b"O|1|SP");
}

#[tokio::test]
async fn a_host_query_answer_refused_seven_times_is_sent_again_and_taken() {
    let f = query_only();
    f.journal.add_order(order("SPEC7", &["GLU"])).await.unwrap();
    let (mut line, _task) = f.connect();
    send_session(
        &mut line,
        &records("H|\\^&|||CHEM-9\rQ|1|^SPEC7||^^^ALL\rL|1|N\r"),
    )
    .await;
    assert_eq!(read_byte(&mut line).await, ENQ);
    line.write_all(&[ACK]).await.unwrap();
    let first = read_frame(&mut line).await;
    for i in 0..7 {
        line.write_all(&[NAK]).await.unwrap();
        if i < 6 {
            assert_eq!(read_frame(&mut line).await, first);
        }
    }
    assert_eq!(read_byte(&mut line).await, EOT);
    // After the busy delay the whole answer comes again.
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert_eq!(m.patients[0].orders[0].specimen_id(), "SPEC7");
    assert_eq!(eventually_sent(&f, "SPEC7").await, (OrderState::Sent, 1));
}

#[tokio::test]
async fn a_host_query_answer_whose_line_closes_is_sent_on_the_next_line() {
    let f = query_only();
    f.journal.add_order(order("SPEC8", &["NA"])).await.unwrap();
    let (mut line, task) = f.connect();
    send_session(
        &mut line,
        &records("H|\\^&|||CHEM-9\rQ|1|^SPEC8||^^^ALL\rL|1|N\r"),
    )
    .await;
    assert_eq!(read_byte(&mut line).await, ENQ);
    drop(line); // the cable is pulled before the answer
    ended(task).await;
    assert_eq!(order_state(&f, "SPEC8").await, (OrderState::Pending, 0));
    let (mut line, _task) = f.connect();
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert_eq!(m.patients[0].orders[0].specimen_id(), "SPEC8");
    assert_eq!(eventually_sent(&f, "SPEC8").await, (OrderState::Sent, 1));
}

#[tokio::test]
async fn a_host_query_with_a_numbering_error_is_answered_not_stored_as_a_result() {
    let f = query_only();
    f.journal.add_order(order("SPEC5", &["K"])).await.unwrap();
    let (mut line, _task) = f.connect();
    // Q numbered 2: the strict parser refuses it.
    let query = records("H|\\^&|||CHEM-9\rQ|2|^SPEC5||^^^ALL\rL|1|N\r");
    assert!(Message::parse(&query, &ParseOptions::default()).is_err());
    let answers = send_session(&mut line, &query).await;
    assert!(answers.iter().all(|&a| a == ACK));
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert_eq!(m.patients[0].orders[0].specimen_id(), "SPEC5");
    assert!(f.stored().iter().all(|m| m.message_type != "ASTM"));
}

#[tokio::test]
async fn an_unreadable_host_query_gets_a_query_error_and_is_kept_for_inspection() {
    let f = query_only();
    let (mut line, _task) = f.connect();
    // The header's delimiters are not four distinct characters.
    let query = records("H|||||\rQ|1|^SPEC5||^^^ALL\rL|1|N\r");
    let answers = send_session(&mut line, &query).await;
    assert!(answers.iter().all(|&a| a == ACK));
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    assert_eq!(m.termination_code(), "Q");
    let mut kept = Vec::new();
    for _ in 0..100 {
        kept = f.journal.incomplete_transmissions("chem").await.unwrap();
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, "UnreadableQuery");
    assert!(f.stored().iter().all(|m| m.message_type != "ASTM"));
}

#[tokio::test]
async fn the_answer_names_the_configured_sender_and_the_site_time() {
    let mut f = query_only();
    f.cx.time_zone = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap().into();
    let (mut line, _task) = f.connect();
    send_session(&mut line, &records("H|\\^&\rQ|1|^NONE||^^^ALL\rL|1|N\r")).await;
    let answer = receive_session(&mut line).await;
    let m = Message::parse(&answer, &ParseOptions::default()).unwrap();
    let sender = m.header.sender();
    assert_eq!(
        (sender.name.as_str(), sender.software_version.as_str()),
        ("LAB-LIS", "2.1")
    );
    let h14 = m.header.record.field(14).text();
    let now = jiff::Timestamp::now().to_zoned(f.cx.time_zone.get());
    let expected = now.strftime("%Y%m%d%H").to_string();
    assert!(
        h14.starts_with(&expected),
        "H-14 {h14} is not site time {now}"
    );
}

/// Two analyzers on one TCP server endpoint, each identified by its H-5.
fn shared(broadcast: bool) -> Fixture {
    let mut f = fixture();
    let mut profile = f.setup.profile.clone();
    if !broadcast {
        profile.orders = crate::config::AstmOrderMode::Query;
    }
    f.setup = Arc::new(Setup::new("chem", profile).shared());
    f
}

fn order_for(specimen: &str, sender: Option<&str>) -> NewOrder {
    NewOrder {
        sender: sender.map(str::to_string),
        ..order(specimen, &["GLU"])
    }
}

fn specimens(answer: &[Vec<u8>]) -> Vec<String> {
    let m = Message::parse(answer, &ParseOptions::default()).unwrap();
    m.patients
        .iter()
        .flat_map(|p| p.orders.iter().map(|o| o.specimen_id()))
        .collect()
}

#[tokio::test]
async fn analyzers_sharing_an_endpoint_get_only_their_own_orders_on_query() {
    let f = shared(false);
    f.journal
        .add_order(order_for("SA", Some("ANALYZER-A")))
        .await
        .unwrap();
    f.journal
        .add_order(order_for("SB", Some("ANALYZER-B")))
        .await
        .unwrap();
    f.journal.add_order(order_for("SX", None)).await.unwrap();
    let (mut a, _ta) = f.connect();
    let (mut b, _tb) = f.connect();
    // A range query: sent orders are found too, so the order of the two
    // queries does not matter.
    send_session(
        &mut a,
        &records("H|\\^&|||ANALYZER-A\rQ|1|^SA|^SX\rL|1|N\r"),
    )
    .await;
    assert_eq!(specimens(&receive_session(&mut a).await), ["SA", "SX"]);
    send_session(
        &mut b,
        &records("H|\\^&|||ANALYZER-B^2.0\rQ|1|^SA|^SX\rL|1|N\r"),
    )
    .await;
    assert_eq!(specimens(&receive_session(&mut b).await), ["SB", "SX"]);
    // A result keeps the name of the analyzer that sent it.
    let result = RESULT.replace("CHEM-9^1.0", "ANALYZER-B^2.0");
    send_session(&mut b, &records(&result)).await;
    let stored = f.stored();
    let id = stored.iter().find(|m| m.message_type == "ASTM").unwrap().id;
    assert_eq!(
        f.journal.astm_sender(id).await.unwrap().as_deref(),
        Some("ANALYZER-B")
    );
}

#[tokio::test]
async fn a_broadcast_on_a_shared_endpoint_downloads_only_the_lines_own_orders() {
    let f = shared(true);
    let (mut a, _ta) = f.connect();
    // The analyzer says who it is with its first message.
    let result = RESULT.replace("CHEM-9^1.0", "ANALYZER-A");
    let answers = send_session(&mut a, &records(&result)).await;
    assert!(answers.iter().all(|&x| x == ACK));
    f.journal
        .add_order(order_for("SA", Some("ANALYZER-A")))
        .await
        .unwrap();
    f.journal
        .add_order(order_for("SB", Some("ANALYZER-B")))
        .await
        .unwrap();
    assert_eq!(specimens(&receive_session(&mut a).await), ["SA"]);
    assert_eq!(eventually_sent(&f, "SA").await, (OrderState::Sent, 1));
    assert_eq!(order_state(&f, "SB").await, (OrderState::Pending, 0));
}

#[tokio::test]
async fn an_enq_followed_by_silence_keeps_nothing_and_the_line_works_after_the_receive_timer() {
    let mut f = query_only();
    let mut profile = f.setup.profile.clone();
    profile.receive_timeout = Duration::from_millis(200);
    f.setup = Arc::new(Setup::new("chem", profile));
    let (mut line, _task) = f.connect();
    line.write_all(&[ENQ]).await.unwrap();
    assert_eq!(read_byte(&mut line).await, ACK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answers = send_session(&mut line, &records(RESULT)).await;
    assert!(answers.iter().all(|&a| a == ACK), "{answers:?}");
    assert_eq!(f.stored().len(), 1);
    assert!(f
        .journal
        .incomplete_transmissions("chem")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_message_whose_sender_gives_up_during_the_commit_is_stored_once_and_not_kept_as_incomplete(
) {
    let f = query_only();
    let (mut line, task) = f.connect();
    line.write_all(&[ENQ]).await.unwrap();
    assert_eq!(read_byte(&mut line).await, ACK);
    // All frames at once, then EOT without waiting for the last ACK.
    for frame in encode_records(&records(RESULT), 240) {
        line.write_all(&frame).await.unwrap();
    }
    line.write_all(&[EOT]).await.unwrap();
    drop(line);
    ended(task).await;
    assert_eq!(f.stored().len(), 1);
    assert!(f
        .journal
        .incomplete_transmissions("chem")
        .await
        .unwrap()
        .is_empty());
}

use crate::health::Condition;

/// Waits up to 5 s for `f` to hold.
async fn eventually_true(f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened");
}
