use super::*;
use crate::astm::records::RecordType;
use proptest::prelude::*;

pub(crate) fn sample(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}

pub(crate) const CHEMISTRY: &str = include_str!("../testdata/chemistry_results.astm");
pub(crate) const HOST_QUERY: &str = include_str!("../testdata/host_query.astm");

fn berlin() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap()
}

#[test]
fn a_chemistry_result_message_becomes_a_tree() {
    let msg = Message::parse(&sample(CHEMISTRY), &ParseOptions::default()).unwrap();
    assert_eq!(msg.patients.len(), 1);
    let patient = &msg.patients[0];
    assert_eq!(patient.laboratory_patient_id(), "PID00123");
    assert_eq!(patient.name(), vec!["Doe", "Jane"]);
    assert_eq!(patient.sex(), "F");
    let order = &patient.orders[0];
    assert_eq!(order.specimen_id(), "SID4711");
    assert_eq!(order.record.field(4).components(), vec!["", "17", "3"]);
    let codes: Vec<String> = order
        .universal_test_ids()
        .iter()
        .map(|t| t.code().to_string())
        .collect();
    assert_eq!(codes, vec!["GLU", "CREA", "NA", "K"]);
    assert_eq!(order.report_type(), "F");
    assert_eq!(order.specimen_descriptor(), "SERUM");
    assert_eq!(order.results.len(), 4);
    assert_eq!(msg.termination_code(), "N");
}

#[test]
fn result_fields_are_read_with_their_meaning() {
    let msg = Message::parse(&sample(CHEMISTRY), &ParseOptions::default()).unwrap();
    let results = &msg.patients[0].orders[0].results;
    let glu = &results[0];
    assert_eq!(glu.universal_test_id().local_code, "GLU");
    assert_eq!(glu.value(), "5.4");
    assert_eq!(glu.units(), "mmol/L");
    assert_eq!(glu.reference_range(), "3.9 to 6.1");
    assert_eq!(glu.abnormal_flags(), vec!["N"]);
    assert_eq!(glu.status(), "F");
    assert_eq!(glu.operator(), "OPER1");
    assert_eq!(glu.verifier(), "SUP2");
    assert_eq!(glu.instrument_id(), "c311-01");
    assert_eq!(glu.comments.len(), 1);
    assert_eq!(
        glu.comments[0].comment_text(),
        "Sample slightly lipemic LIP"
    );
    assert_eq!(glu.comments[0].comment_source(), "I");
    let na = &results[2];
    assert_eq!(na.comments.len(), 2);
    assert_eq!(na.comments[1].comment_text(), "Reviewed|released");
    assert_eq!(results[3].abnormal_flags(), vec!["H"]);
}

#[test]
fn timestamps_are_local_times_in_the_site_zone() {
    let msg = Message::parse(&sample(CHEMISTRY), &ParseOptions::default()).unwrap();
    let glu = &msg.patients[0].orders[0].results[0];
    let done = glu.completed_at(&berlin()).unwrap().unwrap();
    // 08:25 in Berlin in January is 07:25 UTC.
    assert_eq!(done.timestamp().to_string(), "2026-01-15T07:25:00Z");
    let started = glu.started_at(&TimeZone::UTC).unwrap().unwrap();
    assert_eq!(started.timestamp().to_string(), "2026-01-15T08:10:00Z");
    let h = msg.header.timestamp(&berlin()).unwrap().unwrap();
    assert_eq!(h.timestamp().to_string(), "2026-01-15T07:30:12Z");
}

#[test]
fn short_and_empty_dates_are_accepted_and_garbage_is_an_error() {
    let tz = berlin();
    assert!(parse_timestamp("", &tz).unwrap().is_none());
    assert!(parse_timestamp("20260115", &tz).unwrap().is_some());
    assert!(parse_timestamp("202601150830", &tz).unwrap().is_some());
    assert!(matches!(
        parse_timestamp("2026-01-15", &tz),
        Err(TimeError::Format(_))
    ));
    assert!(matches!(
        parse_timestamp("20261345000000", &tz),
        Err(TimeError::Invalid { .. })
    ));
}

#[test]
fn the_sender_name_identifies_the_analyzer() {
    let msg = Message::parse(&sample(CHEMISTRY), &ParseOptions::default()).unwrap();
    let sender = msg.header.sender();
    assert_eq!(sender.name, "cobas c311");
    assert_eq!(sender.software_version, "1.05");
    assert_eq!(sender.serial_number, "SN1234");
    assert_eq!(msg.header.receiver_id(), "HOST");
    assert_eq!(msg.header.processing_id(), "P");
    assert_eq!(msg.header.version(), "LIS2-A2");
}

#[test]
fn a_host_query_names_its_specimen_and_tests() {
    let msg = Message::parse(&sample(HOST_QUERY), &ParseOptions::default()).unwrap();
    let q = &msg.queries[0];
    assert_eq!(q.starting_range().specimen_id, "SID4712");
    assert_eq!(q.ending_range().specimen_id, "SID4712");
    assert!(!q.starting_range().is_all());
    assert_eq!(q.universal_test_ids()[0].code(), "ALL");
    assert_eq!(q.request_status(), "O");
}

#[test]
fn a_result_numbered_out_of_sequence_is_reported_with_its_location() {
    let mut records = sample(CHEMISTRY);
    records[5] = b"R|7|^^^CREA|132".to_vec();
    let err = Message::parse(&records, &ParseOptions::default()).unwrap_err();
    assert_eq!(
        err,
        MessageError::Sequence {
            at: Location {
                index: 6,
                record_type: 'R'
            },
            expected: 2,
            found: "7".into()
        }
    );
    let lenient = ParseOptions {
        check_sequence: false,
    };
    assert!(Message::parse(&records, &lenient).is_ok());
}

#[test]
fn order_numbers_restart_under_each_patient() {
    let records = sample("H|\\^&\nP|1\nO|1|A\nO|2|B\nP|2\nO|1|C\nR|1|^^^X|1\nC|1|I|c\nL|1|N");
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    assert_eq!(msg.patients[1].orders[0].specimen_id(), "C");
    let bad = sample("H|\\^&\nP|1\nO|1|A\nP|2\nO|2|C\nL|1|N");
    assert!(matches!(
        Message::parse(&bad, &ParseOptions::default()),
        Err(MessageError::Sequence { expected: 1, .. })
    ));
}

#[test]
fn a_result_without_an_order_is_an_orphan() {
    let records = sample("H|\\^&\nP|1\nR|1|^^^X|1\nL|1|N");
    assert!(matches!(
        Message::parse(&records, &ParseOptions::default()),
        Err(MessageError::Orphan { needs: "O", .. })
    ));
}

#[test]
fn unknown_and_manufacturer_records_are_kept_not_fatal() {
    let records = sample("H|\\^&\nM|1|vendor\nP|1\nZ|1|what\nL|1|N");
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    assert_eq!(msg.other.len(), 2);
    assert_eq!(msg.other[1].kind(), RecordType::Unknown('Z'));
}

#[test]
fn the_terminator_is_numbered_one() {
    let bad = sample("H|\\^&\nP|1\nL|2|N");
    assert_eq!(
        Message::parse(&bad, &ParseOptions::default()),
        Err(MessageError::Sequence {
            at: Location {
                index: 3,
                record_type: 'L'
            },
            expected: 1,
            found: "2".into()
        })
    );
    let lenient = ParseOptions {
        check_sequence: false,
    };
    assert_eq!(
        Message::parse(&bad, &lenient).unwrap().termination_code(),
        "N"
    );
}

#[test]
fn a_comment_after_a_manufacturer_record_annotates_no_result() {
    let records = sample(
        "H|\\^&\nP|1\nO|1|S1\nR|1|^^^GLU|5\nM|1|vendor\nC|1|I|after M|G\nS|1|sci\nC|1|I|after S|G\nL|1|N",
    );
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    let result = &msg.patients[0].orders[0].results[0];
    assert!(result.comments.is_empty(), "{:?}", result.comments);
    let kinds: Vec<char> = msg.other.iter().map(|r| r.kind().letter()).collect();
    assert_eq!(kinds, ['M', 'C', 'S', 'C']);
    assert_eq!(msg.other[1].comment_text(), "after M");
    // Numbering of comments restarts after each of them.
    let bad = sample("H|\\^&\nM|1|v\nC|2|I|x|G\nL|1|N");
    assert!(matches!(
        Message::parse(&bad, &ParseOptions::default()),
        Err(MessageError::Sequence { expected: 1, .. })
    ));
}

#[test]
fn delimiters_declared_in_the_header_are_used_for_the_whole_message() {
    let records = sample("H!~@$\nP!1\nO!1!S1!!@@@GLU~@@@NA!R\nR!1!@@@GLU!5$F$1!mmol\nL!1!N");
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    let order = &msg.patients[0].orders[0];
    assert_eq!(order.universal_test_ids().len(), 2);
    assert_eq!(order.results[0].value(), "5!1");
}

#[test]
fn a_message_must_start_with_a_header() {
    assert!(matches!(
        Message::parse(&sample("P|1\nL|1"), &ParseOptions::default()),
        Err(MessageError::MissingHeader(_))
    ));
    assert_eq!(
        Message::parse(&[], &ParseOptions::default()),
        Err(MessageError::Empty)
    );
}

#[test]
fn the_content_hash_ignores_framing_and_sees_every_record_byte() {
    let records = sample(CHEMISTRY);
    let a = content_hash(&records);
    assert_eq!(a, content_hash(&records.clone()));
    assert_eq!(a.len(), 64);
    let mut changed = records.clone();
    changed[3][17] = b'5';
    assert_ne!(a, content_hash(&changed));
    // Record boundaries matter: merging two records changes the hash.
    let merged = vec![records[..2].concat()];
    assert_ne!(content_hash(&records[..2]), content_hash(&merged));
}

#[test]
fn an_order_download_parses_back_to_the_same_orders() {
    let tz = berlin();
    let when = DateTime::new(2026, 1, 15, 9, 30, 0, 0)
        .unwrap()
        .to_zoned(tz.clone())
        .unwrap();
    let header = HeaderSpec {
        timestamp: Some(when.clone()),
        ..HeaderSpec::default()
    };
    let patients = vec![PatientSpec {
        practice_patient_id: "PAT|1".into(),
        name: vec!["Doe".into(), "Jane".into()],
        sex: "F".into(),
        orders: vec![OrderSpec {
            specimen_id: "SID4712".into(),
            tests: vec!["GLU".into(), "NA^K".into()],
            priority: "S".into(),
            collected_at: Some(when.clone()),
            ..OrderSpec::default()
        }],
        ..PatientSpec::default()
    }];
    let records = build_order_message(&header, &patients);
    let text: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.clone()).unwrap())
        .collect();
    assert_eq!(text[0], "H|\\^&|||ECKO-EDGE|||||||P|LIS2-A2|20260115093000");
    assert_eq!(text[1], "P|1|PAT&F&1|||Doe^Jane|||F");
    assert_eq!(text.last().unwrap(), "L|1|N");
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    let p = &msg.patients[0];
    assert_eq!(p.practice_patient_id(), "PAT|1");
    let o = &p.orders[0];
    assert_eq!(o.specimen_id(), "SID4712");
    let codes: Vec<String> = o
        .universal_test_ids()
        .into_iter()
        .map(|t| t.local_code)
        .collect();
    assert_eq!(codes, vec!["GLU", "NA^K"]);
    assert_eq!(o.priority(), "S");
    assert_eq!(o.action_code(), "N");
    assert_eq!(o.report_type(), "O");
    assert_eq!(o.collected_at(&tz).unwrap().unwrap(), when);
}

#[test]
fn a_query_without_orders_is_answered_with_termination_code_i() {
    let records = build_no_information(&HeaderSpec::default());
    let msg = Message::parse(&records, &ParseOptions::default()).unwrap();
    assert!(msg.patients.is_empty());
    assert_eq!(msg.termination_code(), "I");
}

proptest! {
    #[test]
    fn arbitrary_records_never_panic_the_parser(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..8)
    ) {
        let _ = Message::parse(&records, &ParseOptions::default());
        let _ = Message::parse(&records, &ParseOptions { check_sequence: false });
    }

    #[test]
    fn arbitrary_text_after_a_header_never_panics_accessors(
        lines in proptest::collection::vec("[HPORCQLMS][|\\\\^&A-Z0-9 ]{0,40}", 0..10)
    ) {
        let mut records = vec![b"H|\\^&".to_vec()];
        records.extend(lines.into_iter().map(String::into_bytes));
        if let Ok(msg) = Message::parse(&records, &ParseOptions { check_sequence: false }) {
            let tz = TimeZone::UTC;
            let _ = msg.header.sender();
            for p in &msg.patients {
                for o in &p.orders {
                    let _ = (o.specimen_id(), o.universal_test_ids(), o.collected_at(&tz));
                    for r in &o.results {
                        let _ = (r.value(), r.abnormal_flags(), r.completed_at(&tz), r.universal_test_id());
                    }
                }
            }
            for q in &msg.queries {
                let _ = (q.starting_range(), q.universal_test_ids(), q.request_status());
            }
        }
    }
}
