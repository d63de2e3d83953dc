use super::*;
use crate::config::{Config, EndpointKind};
use crate::journal::{Journal, JournalOptions, JournalReader};
use crate::router::Router;
use ecko_hal::storage::SimStorage;
use ecko_protocol::hl7::{ParseOptions, ReceivedAck};
use tokio_util::sync::CancellationToken;

const ORU: &[u8] = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");
const BATCH: &[u8] = include_bytes!("../../../protocol/src/hl7/testdata/oru_batch_v251.hl7");
const LATIN1_ADT: &[u8] = include_bytes!("../../../protocol/src/hl7/testdata/adt_a08_latin1.hl7");

struct Harness {
    dir: tempfile::TempDir,
    journal: Journal,
    addr: SocketAddr,
    disk: SimStorage,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

async fn harness(settings: &str) -> Harness {
    harness_with(settings, 1 << 30).await
}

/// A listener whose journal refuses new messages above `max_size` bytes.
async fn harness_with(settings: &str, max_size: u64) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[journal]
path = "{d}/j.db"
[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:0"
{settings}
[[endpoint]]
name = "archive"
type = "file"
path = "{d}/out"
[[route]]
name = "results"
from = ["lab"]
message_types = ["ORU^*", "ADT^*"]
to = ["archive"]
"#,
        d = dir.path().display()
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let disk = SimStorage::new(u64::MAX);
    let mut options = JournalOptions::new(dir.path().join("j.db"));
    options.storage = Arc::new(disk.clone());
    options.min_free_disk = 1000;
    options.max_size = max_size;
    let journal = Journal::open(options).unwrap();
    let stop = CancellationToken::new();
    let cx = SourceContext {
        journal: journal.clone(),
        router: Arc::new(Router::new(&config)),
        shutdown: stop.clone(),
        time_zone: jiff::tz::TimeZone::UTC.into(),
        health: crate::health::Health::new(),
        counters: Default::default(),
        heartbeat: Default::default(),
    };
    let endpoint = config.endpoint("lab").unwrap();
    let EndpointKind::Mllp(mllp) = &endpoint.kind else {
        unreachable!()
    };
    let listener = Listener::bind(endpoint, mllp, cx).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(listener.serve());
    Harness {
        dir,
        journal,
        addr,
        disk,
        stop,
        server,
    }
}

/// Reads MLLP frames until `n` have arrived.
async fn read_frames<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<Vec<u8>> {
    let mut decoder = mllp::Decoder::default();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    while frames.len() < n {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(
            read > 0,
            "connection closed after {} of {n} frames",
            frames.len()
        );
        decoder.push(&buf[..read], Instant::now());
        while let Some(e) = decoder.next_event() {
            if let mllp::Event::Frame(f) = e {
                frames.push(f);
            }
        }
    }
    frames
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, message: &[u8]) -> ReceivedAck {
    stream.write_all(&mllp::encode(message)).await.unwrap();
    let frame = read_frames(stream, 1).await.remove(0);
    ReceivedAck::parse(&frame, &ParseOptions::default()).unwrap()
}

fn with_control_id(message: &[u8], id: &str) -> Vec<u8> {
    String::from_utf8(message.to_vec())
        .unwrap()
        .replace("XN20260314093015001", id)
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_message_is_in_the_journal_before_its_aa_arrives() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, ORU).await;
    assert_eq!(ack.code, AckCode::AA);
    assert_eq!(ack.control_id, "XN20260314093015001");
    // Read from another connection at once: the row must already be there.
    let reader = JournalReader::open(&h.dir.path().join("j.db")).unwrap();
    let id = reader
        .find_by_key("lab", "XN20260314093015001")
        .unwrap()
        .expect("stored before AA");
    let stored = reader.message(id).unwrap().unwrap();
    assert_eq!(stored.payload, ORU);
    assert_eq!(stored.message_type, "ORU^R01");
    assert_eq!(stored.patient_id.as_deref(), Some("4711"));
    assert!(stored
        .envelope
        .ack
        .unwrap()
        .starts_with(b"MSH|^~\\&|LIS|ST-MARY|XN-1000^SYSMEX^L|HEMA-LAB|"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_message_gets_aa_again_and_is_not_queued_twice() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);
    let mut again = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut again, ORU).await.code, AckCode::AA);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
    assert_eq!(
        h.journal.counts().await.unwrap()[0].queued + h.journal.counts().await.unwrap()[0].leased,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_messages_on_one_connection_are_answered_in_order() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut burst = Vec::new();
    for i in 0..20 {
        burst.extend(mllp::encode(&with_control_id(ORU, &format!("C{i}"))));
    }
    s.write_all(&burst).await.unwrap();
    let acks = read_frames(&mut s, 20).await;
    for (i, frame) in acks.iter().enumerate() {
        let ack = ReceivedAck::parse(frame, &ParseOptions::default()).unwrap();
        assert_eq!(
            (ack.code, ack.control_id.as_str()),
            (AckCode::AA, format!("C{i}").as_str())
        );
    }
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_text_without_a_usable_header_gets_ar_saying_why_and_nothing_is_stored() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&mllp::encode(b"PID|1||4711\rOBX|1|NM|GLU||5"))
        .await
        .unwrap();
    let frame = String::from_utf8(read_frames(&mut s, 1).await.remove(0)).unwrap();
    assert!(frame.starts_with("MSH|^~\\&|"), "{frame}");
    assert!(
        frame.contains("\rMSA|AR|\"\""),
        "no MSH: AR, no control id: {frame}"
    );
    assert!(frame.to_lowercase().contains("msh"), "{frame}");
    // Without MSH-10 there is nothing for MSA-2 to name; the AR still says why.
    s.write_all(&mllp::encode(
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01||P|2.5.1\r",
    ))
    .await
    .unwrap();
    let frame = String::from_utf8(read_frames(&mut s, 1).await.remove(0)).unwrap();
    assert!(frame.contains("\rMSA|AR|\"\""), "{frame}");
    assert!(frame.contains("\rERR||MSH^1^10|101"), "{frame}");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_error_gets_ae_naming_the_control_id_that_could_be_read() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let broken =
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|C1|P|2.5.1\rPID|1||4711\rthis is not a segment\r";
    let ack = send(&mut s, broken).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AE, "C1"));
    assert_eq!(ack.errors[0].code, "100");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_version_or_processing_id_gets_ar_with_its_table_0357_code() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let version = String::from_utf8(with_control_id(ORU, "V1"))
        .unwrap()
        .replacen("|P|2.5.1", "|P|3.0", 1);
    let ack = send(&mut s, version.as_bytes()).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AR, "V1"));
    assert_eq!(
        (ack.errors[0].location.as_str(), ack.errors[0].code.as_str()),
        ("MSH^1^12", "203")
    );
    let processing = String::from_utf8(with_control_id(ORU, "V2"))
        .unwrap()
        .replacen("|P|2.5.1", "|X|2.5.1", 1);
    let ack = send(&mut s, processing.as_bytes()).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AR, "V2"));
    assert_eq!(
        (ack.errors[0].location.as_str(), ack.errors[0].code.as_str()),
        ("MSH^1^11", "202")
    );
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

/// The sample ORU declaring UTF-8, with a lone 0xFC (Latin-1 ü) in PID-5.
fn utf8_oru_with_a_latin1_byte(id: &str) -> Vec<u8> {
    let text = String::from_utf8(with_control_id(ORU, id))
        .unwrap()
        .replacen("|P|2.5.1", "|P|2.5.1||||||UNICODE UTF-8", 1);
    text.replacen("Doe^John", "D\u{1}e^John", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xFC } else { b })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_invalid_in_the_declared_charset_get_ae_naming_segment_and_field_and_nothing_is_stored(
) {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, &utf8_oru_with_a_latin1_byte("T1")).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AE, "T1"));
    assert_eq!(
        (ack.errors[0].location.as_str(), ack.errors[0].code.as_str()),
        ("PID^1^5", "102")
    );
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    // The same name in valid UTF-8 is taken.
    let fine = String::from_utf8(with_control_id(ORU, "T2"))
        .unwrap()
        .replacen("|P|2.5.1", "|P|2.5.1||||||UNICODE UTF-8", 1)
        .replacen("Doe^John", "Düe^John", 1);
    assert_eq!(send(&mut s, fine.as_bytes()).await.code, AckCode::AA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_invalid_in_the_endpoint_charset_are_refused_too() {
    let h = harness("charset = \"UNICODE UTF-8\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let latin1 = String::from_utf8(with_control_id(ORU, "T3"))
        .unwrap()
        .replacen("Doe^John", "D\u{1}e^John", 1)
        .into_bytes()
        .into_iter()
        .map(|b| if b == 1 { 0xFC } else { b })
        .collect::<Vec<u8>>();
    let ack = send(&mut s, &latin1).await;
    assert_eq!(ack.code, AckCode::AE);
    assert_eq!(ack.errors[0].location, "PID^1^5");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_invalid_text_replace_stores_the_message_as_before() {
    let h = harness("on_invalid_text = \"replace\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, &utf8_oru_with_a_latin1_byte("T4")).await;
    assert_eq!(ack.code, AckCode::AA);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_without_a_message_gets_no_answer_and_the_connection_stays_open() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"\x0b\x1c\r").await.unwrap();
    s.write_all(b"\x0b\r\n\x1c\r").await.unwrap();
    assert!(maybe_frame(&mut s, 300).await.is_none(), "no answer");
    assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_type_no_route_accepts_gets_ar_with_code_200() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let siu = String::from_utf8(ORU.to_vec())
        .unwrap()
        .replace("ORU^R01^ORU_R01", "SIU^S12^SIU_S12");
    let ack = send(&mut s, siu.as_bytes()).await;
    assert_eq!(ack.code, AckCode::AR);
    assert_eq!(ack.errors[0].code, "200");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_ar_and_the_sender_keeps_its_copy() {
    let h = harness("").await;
    h.disk.set_available(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, ORU).await;
    assert_eq!(ack.code, AckCode::AR);
    assert!(ack.text.contains("disk"), "{}", ack.text);
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    h.disk.set_available(u64::MAX);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        send(&mut s, ORU).await.code,
        AckCode::AA,
        "the resend after recovery is taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_mode_follows_msh_15() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let with_msh15 = |id: &str, msh15: &str| {
        String::from_utf8(with_control_id(ORU, id))
            .unwrap()
            .replacen("|P|2.5.1", &format!("|P|2.5.1|||{msh15}|NE"), 1)
            .into_bytes()
    };
    let ack = send(&mut s, &with_msh15("E1", "AL")).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::CA, "E1"));
    // NE: no accept ACK; the next message's ACK is the next frame we read.
    s.write_all(&mllp::encode(&with_msh15("E2", "NE")))
        .await
        .unwrap();
    let ack = send(&mut s, &with_msh15("E3", "AL")).await;
    assert_eq!(ack.control_id, "E3");
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_of_a_batch_is_journalled_and_acknowledged_on_its_own() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&mllp::encode(BATCH)).await.unwrap();
    let acks = read_frames(&mut s, 3).await;
    for frame in acks {
        assert_eq!(
            ReceivedAck::parse(&frame, &ParseOptions::default())
                .unwrap()
                .code,
            AckCode::AA
        );
    }
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latin1_message_is_stored_as_sent_and_answered_in_its_charset() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, LATIN1_ADT).await;
    assert_eq!(ack.code, AckCode::AA);
    let id = h.journal.message_ids().await.unwrap()[0];
    assert_eq!(
        h.journal.message(id).await.unwrap().unwrap().payload,
        LATIN1_ADT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_gets_ar_from_its_head_and_the_connection_is_closed() {
    let h = harness("max_message_size = \"4 KiB\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // The sender stops after 8 KiB of a frame that has not ended: the AR
    // comes without waiting for the end, then the connection closes.
    let mut big = vec![mllp::START_BLOCK];
    big.extend(with_control_id(ORU, "BIG1"));
    big.extend(std::iter::repeat_n(b'x', 8 * 1024));
    s.write_all(&big).await.unwrap();
    let frame = read_frames(&mut s, 1).await.remove(0);
    let ack = ReceivedAck::parse(&frame, &ParseOptions::default()).unwrap();
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::AR, "BIG1"));
    assert!(ack.text.contains("exceeds"), "{}", ack.text);
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("closed, not left open");
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_an_oversized_frame_is_never_read() {
    let h = harness("max_message_size = \"4 KiB\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&[mllp::START_BLOCK]).await.unwrap();
    s.write_all(&with_control_id(ORU, "BIG5")).await.unwrap();
    // 256 MiB is far more than any socket buffers: the writes only all
    // succeed when the listener reads (and discards) the rest.
    let chunk = vec![b'x'; 1 << 20];
    let mut failed = false;
    for _ in 0..256 {
        match tokio::time::timeout(Duration::from_secs(5), s.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the listener read 256 MiB of a frame over 4 KiB");
    // A new connection is served as before.
    let mut again = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut again, ORU).await.code, AckCode::AA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_between_frames_is_dropped_and_does_not_disturb_the_next_message() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"\r\n garbage \x00\xff").await.unwrap();
    assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_frame_is_cut_at_the_framing_timeout() {
    let h = harness("frame_timeout = \"200ms\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let message = with_control_id(ORU, "SLOW1");
    let (first, rest) = message.split_at(message.len() / 2);
    s.write_all(b"\x0b").await.unwrap();
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Without the deadline this tail would complete a valid message.
    let _ = s.write_all(rest).await;
    let _ = s.write_all(b"\x1c\r").await;
    let mut buf = [0u8; 256];
    let answer = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("the connection is closed, not left hanging");
    assert!(
        matches!(answer, Ok(0) | Err(_)),
        "no answer for the cut frame: {answer:?}"
    );
    assert!(h.journal.message_ids().await.unwrap().is_empty());
    // A new connection is served as before.
    let mut again = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut again, ORU).await.code, AckCode::AA);
    assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed() {
    let h = harness("idle_timeout = \"200ms\"").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the gateway closed the idle connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once_and_the_others_keep_working() {
    let h = harness("max_connections = 1").await;
    let mut first = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut first, ORU).await.code, AckCode::AA);
    let mut second = TcpStream::connect(h.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(
        send(&mut first, &with_control_id(ORU, "again")).await.code,
        AckCode::AA
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_still_gets_its_acks() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    s.write_all(&mllp::encode(ORU)).await.unwrap();
    s.shutdown().await.unwrap();
    let frames = read_frames(&mut s, 1).await;
    assert_eq!(
        ReceivedAck::parse(&frames[0], &ParseOptions::default())
            .unwrap()
            .code,
        AckCode::AA
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_connection_finish_and_stops_accepting() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);
    h.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), h.server)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(h.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_ipv6_loopback_takes_messages() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness("").await;
    drop(dir);
    // The harness binds IPv4; bind a second listener on [::1] with the same journal.
    let text = format!(
        "[journal]\npath = \"{d}/j.db\"\n[[endpoint]]\nname = \"lab\"\ntype = \"mllp\"\nlisten = \"[::1]:0\"\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"{d}/out\"\n[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"archive\"]\n",
        d = h.dir.path().display()
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let EndpointKind::Mllp(m) = &config.endpoints[0].kind else {
        unreachable!()
    };
    let cx = SourceContext {
        journal: h.journal.clone(),
        router: Arc::new(Router::new(&config)),
        shutdown: h.stop.clone(),
        time_zone: jiff::tz::TimeZone::UTC.into(),
        health: crate::health::Health::new(),
        counters: Default::default(),
        heartbeat: Default::default(),
    };
    let has_v6_loopback = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| {
        t.lines()
            .any(|l| l.starts_with("00000000000000000000000000000001"))
    });
    let listener = match Listener::bind(&config.endpoints[0], m, cx).await {
        Ok(l) => l,
        Err(e) if !has_v6_loopback => {
            eprintln!("no ::1 in /proc/net/if_inet6, skipped: {e}");
            return;
        }
        Err(e) => panic!("::1 is configured but the listener cannot bind it: {e}"),
    };
    let addr = listener.local_addr().unwrap();
    tokio::spawn(listener.serve());
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        send(&mut s, &with_control_id(ORU, "V6")).await.code,
        AckCode::AA
    );
}

fn enhanced(message: &[u8], id: &str, msh15_16: &str) -> Vec<u8> {
    String::from_utf8(with_control_id(message, id))
        .unwrap()
        .replacen("|P|2.5.1", &format!("|P|2.5.1|||{msh15_16}"), 1)
        .into_bytes()
}

/// Reads one frame, or `None` when nothing comes within `ms`.
async fn maybe_frame(s: &mut TcpStream, ms: u64) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_millis(ms), read_frames(s, 1))
        .await
        .ok()
        .map(|mut f| f.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_input_in_enhanced_mode_gets_cr_or_ce_or_nothing_as_msh_15_asks() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    // MSH-9 is missing: not valid HL7, but MSH-15/16 can still be read.
    let broken = |id: &str, msh15: &str| {
        format!("MSH|^~\\&|A|B|C|D|20260101|||{id}|P|2.5.1|||{msh15}|AL\rPID|1\r").into_bytes()
    };
    let ack = send(&mut s, &broken("U1", "AL")).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::CR, "U1"));
    assert_eq!(ack.errors[0].location, "MSH^1^9");
    let ack = send(&mut s, &broken("U2", "ER")).await;
    assert_eq!(ack.code, AckCode::CR);
    for never in ["NE", "SU"] {
        s.write_all(&mllp::encode(&broken("U3", never)))
            .await
            .unwrap();
        assert!(
            maybe_frame(&mut s, 300).await.is_none(),
            "{never}: no accept ACK"
        );
    }
    // Original mode: AR, the header is at fault.
    let original = b"MSH|^~\\&|A|B|C|D|20260101|||U4|P|2.5.1\r".to_vec();
    assert_eq!(send(&mut s, &original).await.code, AckCode::AR);
    // A content error in enhanced mode is a CE.
    let content =
        b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|U5|P|2.5.1|||AL|NE\rnot a segment\r".to_vec();
    assert_eq!(send(&mut s, &content).await.code, AckCode::CE);
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_in_enhanced_mode_gets_cr_or_nothing_as_msh_15_asks() {
    let h = harness("max_message_size = \"4 KiB\"").await;
    // The head of a frame over the limit, its end not sent.
    let big = |id: &str, msh15: &str| {
        let mut m = vec![mllp::START_BLOCK];
        m.extend(enhanced(ORU, id, &format!("{msh15}|NE")));
        m.extend(std::iter::repeat_n(b'x', 8 * 1024));
        m
    };
    for (id, msh15, answer) in [
        ("BIG2", "AL", Some(AckCode::CR)),
        ("BIG3", "NE", None),
        ("BIG4", "ER", Some(AckCode::CR)),
    ] {
        let mut s = TcpStream::connect(h.addr).await.unwrap();
        s.write_all(&big(id, msh15)).await.unwrap();
        match answer {
            Some(code) => {
                let frame = read_frames(&mut s, 1).await.remove(0);
                let ack = ReceivedAck::parse(&frame, &ParseOptions::default()).unwrap();
                assert_eq!(ack.code, code, "{msh15}");
            }
            None => {
                // No accept ACK: the connection just closes.
                let mut buf = [0u8; 64];
                let end = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                    .await
                    .expect("closed");
                assert!(matches!(end, Ok(0) | Err(_)), "{msh15}: {end:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_listener_answers_ar_saying_so_and_stores_nothing() {
    let h = harness("enabled = false").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, ORU).await;
    assert_eq!(ack.code, AckCode::AR);
    assert!(ack.text.contains("disabled"), "{}", ack.text);
    let ack = send(&mut s, &enhanced(ORU, "D2", "AL|NE")).await;
    assert_eq!((ack.code, ack.control_id.as_str()), (AckCode::CR, "D2"));
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_over_its_size_cap_gets_ar_and_the_sender_keeps_its_copy() {
    let h = harness_with("", 1).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let ack = send(&mut s, ORU).await;
    assert_eq!(ack.code, AckCode::AR);
    assert!(ack.text.contains("size cap"), "{}", ack.text);
    assert_eq!(ack.errors[0].code, "207");
    let ack = send(&mut s, &enhanced(ORU, "J2", "AL|NE")).await;
    assert_eq!(ack.code, AckCode::CR);
    assert!(h.journal.message_ids().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_control_id_with_other_content_is_stored_too_and_a_true_resend_is_not() {
    let h = harness("").await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let first = with_control_id(ORU, "RESET1");
    let other = String::from_utf8(first.clone())
        .unwrap()
        .replace("4711^^^ST-MARY^MR", "4712^^^ST-MARY^MR")
        .into_bytes();
    assert_eq!(send(&mut s, &first).await.code, AckCode::AA);
    assert_eq!(send(&mut s, &other).await.code, AckCode::AA);
    assert_eq!(send(&mut s, &first).await.code, AckCode::AA);
    assert_eq!(send(&mut s, &other).await.code, AckCode::AA);
    let ids = h.journal.message_ids().await.unwrap();
    assert_eq!(ids.len(), 2, "both results kept, neither twice");
    let mut payloads = Vec::new();
    for id in ids {
        payloads.push(
            h.journal
                .message(id)
                .await
                .unwrap()
                .unwrap()
                .envelope
                .payload,
        );
    }
    assert_eq!(payloads, [first, other]);
}

#[test]
fn keepalive_settings_reach_the_socket() {
    use nix::sys::socket::{getsockopt, sockopt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let k = Keepalive {
            enabled: true,
            idle: crate::config::Span(Duration::from_secs(7)),
            interval: crate::config::Span(Duration::from_secs(3)),
            probes: 2,
        };
        set_keepalive(&c, &k);
        assert!(getsockopt(&c, sockopt::KeepAlive).unwrap());
        assert_eq!(getsockopt(&c, sockopt::TcpKeepIdle).unwrap(), 7);
        assert_eq!(getsockopt(&c, sockopt::TcpKeepInterval).unwrap(), 3);
        assert_eq!(getsockopt(&c, sockopt::TcpKeepCount).unwrap(), 2);
        set_keepalive(
            &c,
            &Keepalive {
                enabled: false,
                ..k
            },
        );
        assert!(!getsockopt(&c, sockopt::KeepAlive).unwrap());
    });
}

mod tls {
    use super::*;
    use crate::tls::test_pki;
    use rustls::pki_types::ServerName;

    fn client(pki: &test_pki::Pki, with_cert: bool) -> tokio_rustls::TlsConnector {
        let settings = crate::config::TlsSettings {
            cert: with_cert.then(|| pki.client_cert.clone()),
            key: with_cert.then(|| pki.client_key.clone()),
            ca: Some(pki.ca.clone()),
            require_client_cert: false,
            server_name: None,
        };
        tokio_rustls::TlsConnector::from(crate::tls::client_config(&settings).unwrap())
    }

    async fn tls_harness(require: bool) -> (Harness, test_pki::Pki, tempfile::TempDir) {
        let certs = tempfile::tempdir().unwrap();
        let pki = test_pki::create(certs.path());
        let settings = format!(
            "[endpoint.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nrequire_client_cert = {require}",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display()
        );
        (harness(&settings).await, pki, certs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_listener_acknowledges_over_tls() {
        let (h, pki, _certs) = tls_harness(false).await;
        let tcp = TcpStream::connect(h.addr).await.unwrap();
        let mut s = client(&pki, false)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutual_tls_admits_a_client_with_a_certificate_from_the_ca_and_refuses_one_without() {
        let (h, pki, _certs) = tls_harness(true).await;
        let tcp = TcpStream::connect(h.addr).await.unwrap();
        let mut s = client(&pki, true)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(send(&mut s, ORU).await.code, AckCode::AA);

        let tcp = TcpStream::connect(h.addr).await.unwrap();
        let refused = async {
            let mut s = client(&pki, false)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await?;
            s.write_all(&mllp::encode(&with_control_id(ORU, "nocert")))
                .await?;
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed"));
            }
            Ok(())
        };
        assert!(
            refused.await.is_err(),
            "a client without a certificate was served"
        );
        assert_eq!(h.journal.message_ids().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_bound_listener_reports_up_and_down_once_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[journal]\npath = \"{d}/j.db\"\n[[endpoint]]\nname = \"lab\"\ntype = \"mllp\"\nlisten = \"127.0.0.1:0\"\n[[endpoint]]\nname = \"archive\"\ntype = \"file\"\npath = \"{d}/out\"\n[[route]]\nname = \"r\"\nfrom = [\"lab\"]\nto = [\"archive\"]\n",
        d = dir.path().display()
    );
    let config = Config::parse(&text, "t.toml", |_| None).unwrap();
    let EndpointKind::Mllp(m) = &config.endpoints[0].kind else {
        unreachable!()
    };
    let journal = Journal::open(JournalOptions::new(dir.path().join("j.db"))).unwrap();
    let health = crate::health::Health::new();
    let stop = CancellationToken::new();
    let cx = SourceContext {
        journal: journal.clone(),
        router: Arc::new(Router::new(&config)),
        shutdown: stop.clone(),
        time_zone: jiff::tz::TimeZone::UTC.into(),
        health: health.clone(),
        counters: Default::default(),
        heartbeat: Default::default(),
    };
    let listener = Listener::bind(&config.endpoints[0], m, cx.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let up = health.get("lab").unwrap();
    assert_eq!(up.condition, crate::health::Condition::Up);
    assert_eq!(
        up.detail.as_deref(),
        Some(format!("listening on {addr}").as_str())
    );
    // A second listener on the same port cannot bind: down, with the reason.
    let mut busy = m.clone();
    busy.listen = Some(addr.to_string());
    let mut other = config.endpoints[0].clone();
    other.name = "lab-2".into();
    assert!(Listener::bind(&other, &busy, cx).await.is_err());
    let down = health.get("lab-2").unwrap();
    assert_eq!(down.condition, crate::health::Condition::Down);
    assert!(down.detail.unwrap().contains("cannot listen"));
    let server = tokio::spawn(listener.serve());
    stop.cancel();
    server.await.unwrap();
    let stopped = health.get("lab").unwrap();
    assert_eq!(stopped.condition, crate::health::Condition::Down);
    journal.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_msh18_reaches_its_transform_in_the_listener_charset() {
    let h = harness(r#"charset = "UNICODE UTF-8""#).await;
    let mut s = TcpStream::connect(h.addr).await.unwrap();
    let adt =
        "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||ADT^A08|CS1|P|2.5\rPID|||77^^^H||Müller^Jürgen\r";
    assert_eq!(send(&mut s, adt.as_bytes()).await.code, AckCode::AA);
    let id = h.journal.message_ids().await.unwrap()[0];
    let stored = h.journal.message(id).await.unwrap().unwrap();
    assert_eq!(stored.hints.charset.as_deref(), Some("UNICODE UTF-8"));
    assert_eq!(stored.hints.time_zone.as_deref(), Some("UTC"));
    // The transform runs later, knowing nothing of the listener's settings.
    let json = ecko_fhir::apply("hl7v2-fhir", &stored, &Default::default()).unwrap();
    let text = String::from_utf8(json).unwrap();
    assert!(text.contains("\"family\":\"Müller\""), "{text}");
    assert!(!text.contains('Ã'), "{text}");
}
