//! Pure mappings between ASTM messages and the journal: what a received
//! message is stored as, which orders a host query asks for, and the records
//! that answer it or download orders.

use crate::journal::{OrderSelection, StoredOrder};
use ecko_message::Envelope;
use ecko_protocol::astm::frame::ACK;
use ecko_protocol::astm::message::{
    build_no_information, build_order_message, build_query_error, content_hash, Header, HeaderSpec,
    Message, OrderSpec, PatientSpec, Query, QueryRange, TestIdComponent, TimeZone, TEST_ID_PARAM,
};
use ecko_protocol::astm::records::{Delimiters, Record};

/// Message type of a result message in the journal.
pub const RESULT_TYPE: &str = "ASTM";
/// Message type of a host query in the journal.
pub const QUERY_TYPE: &str = "ASTM-QUERY";
pub const CONTENT_TYPE: &str = "application/x-astm";

/// The records as the journal keeps them: each record's text followed by
/// CR, exactly what the record parser takes back.
pub fn payload(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
    for r in records {
        out.extend_from_slice(r);
        out.push(b'\r');
    }
    out
}

/// The content type a message is stored with: where its test codes sit is
/// recorded with it (a parameter only when not `auto`), so the message is
/// read as it was when it arrived even after the endpoint's setting
/// changes.
pub fn content_type(test_id: TestIdComponent) -> String {
    match test_id.as_param() {
        None => CONTENT_TYPE.to_string(),
        Some(at) => format!("{CONTENT_TYPE}; {TEST_ID_PARAM}={at}"),
    }
}

/// The journal row for a complete message. `parsed` is `None` when the
/// records did not parse: the message is still stored (the analyzer's copy
/// must not be lost) and the transform reports the problem downstream.
pub fn new_message(
    source: &str,
    message_type: &str,
    test_id: TestIdComponent,
    records: &[Vec<u8>],
    parsed: Option<&Message>,
) -> Envelope {
    let control_id = parsed
        .map(|m| m.header.message_control_id())
        .filter(|s| !s.is_empty());
    let patient_id = parsed.and_then(|m| m.patients.first()).and_then(|p| {
        [
            p.practice_patient_id(),
            p.laboratory_patient_id(),
            p.patient_id_3(),
        ]
        .into_iter()
        .find(|id| !id.is_empty())
    });
    Envelope {
        source: source.to_string(),
        dedup_key: Some(content_hash(records)),
        message_type: message_type.to_string(),
        content_type: content_type(test_id),
        control_id,
        patient_id,
        payload: payload(records),
        ack: Some(vec![ACK]),
        ..Default::default()
    }
}

/// Whether a message is a host query rather than results: it has Q records
/// and no patients.
pub fn is_query(message: &Message) -> bool {
    !message.queries.is_empty() && message.patients.is_empty()
}

/// The same judgement from the record types alone, for a message that
/// does not parse: a `Q` record and no `P`, `O` or `R` record. Such a
/// message must be answered (or kept visibly), never stored as results.
pub fn looks_like_query(records: &[Vec<u8>]) -> bool {
    let kind = |r: &Vec<u8>| r.first().map(u8::to_ascii_uppercase);
    records.iter().any(|r| kind(r) == Some(b'Q'))
        && !records
            .iter()
            .any(|r| matches!(kind(r), Some(b'P' | b'O' | b'R')))
}

/// The analyzer's name from the H record (H-5, first component), even when
/// the rest of the message does not parse.
pub fn sender_name(records: &[Vec<u8>]) -> Option<String> {
    let first = records.first()?;
    let record = Record::parse(first, &Delimiters::default()).ok()?;
    if record.kind().letter() != 'H' {
        return None;
    }
    let header = Header {
        record,
        comments: Vec::new(),
    };
    Some(header.sender().name.trim().to_string()).filter(|n| !n.is_empty())
}

/// The H record of what we send: our sender name, and the message's time
/// in the site's zone (ASTM times carry no offset).
pub fn header(sender: Vec<String>, tz: &TimeZone) -> HeaderSpec {
    HeaderSpec {
        sender,
        timestamp: Some(jiff::Timestamp::now().to_zoned(tz.clone())),
        ..HeaderSpec::default()
    }
}

/// The answer to a host query that could not be read: `L|1|Q` (query
/// error), so the analyzer knows rather than waits.
pub fn query_error_records(header: &HeaderSpec) -> Vec<Vec<u8>> {
    build_query_error(header)
}

/// One thing a Q record asks for, and how to say "nothing" about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub selection: OrderSelection,
    /// The one specimen asked for, which gets an answer of its own even
    /// when no order names it; `None` for a range or `ALL`.
    pub specimen: Option<String>,
    /// Q-3 component 1 of that specimen, echoed in P-3 of a
    /// no-information answer.
    pub patient_id: String,
    /// Q-5 codes (`ALL` for every test), echoed in O-5 of a
    /// no-information answer.
    pub tests: Vec<String>,
}

/// What one Q record asks for, in the order it asks. Q-3 (and Q-4 for a
/// range) carry `patient id ^ specimen id`; analyzers that put the
/// specimen id in the first component are understood too. Q-3 may repeat
/// (`^S1\^S2\^S3`): each repeat is a specimen of its own; with Q-4
/// repeated as often, each pair is a range. `ALL` asks for every pending
/// order.
pub fn asks(query: &Query) -> Vec<Ask> {
    let pick = |r: &QueryRange| {
        if r.specimen_id.is_empty() {
            r.patient_id.clone()
        } else {
            r.specimen_id.clone()
        }
    };
    let tests: Vec<String> = query
        .universal_test_ids()
        .iter()
        .map(|t| t.code().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let starts = query.starting_ranges();
    let ends = query.ending_ranges();
    if starts.is_empty() {
        // Nothing named: nothing found, answered with no information.
        return vec![Ask {
            selection: OrderSelection::Specimens(vec![String::new()]),
            specimen: None,
            patient_id: String::new(),
            tests,
        }];
    }
    if starts.iter().any(QueryRange::is_all) {
        return vec![Ask {
            selection: OrderSelection::AllPending,
            specimen: None,
            patient_id: String::new(),
            tests,
        }];
    }
    let paired = ends.len() == starts.len();
    starts
        .iter()
        .enumerate()
        .map(|(i, start)| {
            let from = pick(start);
            let to = if paired {
                pick(&ends[i])
            } else {
                String::new()
            };
            let patient_id = if start.specimen_id.is_empty() {
                String::new()
            } else {
                start.patient_id.clone()
            };
            if to.is_empty() || to == from {
                Ask {
                    selection: OrderSelection::Specimens(vec![from.clone()]),
                    specimen: Some(from),
                    patient_id,
                    tests: tests.clone(),
                }
            } else {
                Ask {
                    selection: OrderSelection::Range(from, to),
                    specimen: None,
                    patient_id,
                    tests: tests.clone(),
                }
            }
        })
        .collect()
}

/// Records carrying `orders` (grouped by patient, in order), or the
/// no-information answer when there are none. O-7 (requested) is when the
/// order reached the journal, in the site's zone.
pub fn order_records(orders: &[StoredOrder], header: &HeaderSpec, tz: &TimeZone) -> Vec<Vec<u8>> {
    if orders.is_empty() {
        return build_no_information(header);
    }
    let mut patients: Vec<PatientSpec> = Vec::new();
    for o in orders {
        push_order(&mut patients, o, tz);
    }
    build_order_message(header, &patients)
}

fn push_order(patients: &mut Vec<PatientSpec>, o: &StoredOrder, tz: &TimeZone) {
    let spec = OrderSpec {
        specimen_id: o.specimen_id.clone(),
        tests: o.tests.clone(),
        priority: o.priority.clone(),
        requested_at: jiff::Timestamp::from_millisecond(o.created_at)
            .ok()
            .map(|t| t.to_zoned(tz.clone())),
        ..OrderSpec::default()
    };
    match patients.last_mut() {
        Some(p)
            if p.practice_patient_id == o.patient_id
                && p.name == o.patient_name
                && p.orders.iter().all(|o| o.report_type != NO_ORDER) =>
        {
            p.orders.push(spec)
        }
        _ => patients.push(PatientSpec {
            practice_patient_id: o.patient_id.clone(),
            name: o.patient_name.clone(),
            orders: vec![spec],
            ..PatientSpec::default()
        }),
    }
}

/// O-26 `Y`: "no order on record for this test (in response to query)".
const NO_ORDER: &str = "Y";

/// The answer to a host query: for each ask, in the order the analyzer
/// asked, the orders it found, and for a specimen that has none a `P`
/// and an `O` naming that specimen with report type (O-26) `Y` and no
/// action code, so the analyzer hears about every specimen it asked for.
/// When nothing at all was found the answer is `L|1|I` (no information),
/// as for one specimen; a range or `ALL` that found nothing adds nothing.
/// An order found by two asks is sent once, where it was first found.
pub fn answer_records(
    answered: &[(Ask, Vec<StoredOrder>)],
    header: &HeaderSpec,
    tz: &TimeZone,
) -> (Vec<Vec<u8>>, Vec<i64>) {
    let mut sent: Vec<i64> = Vec::new();
    let mut patients: Vec<PatientSpec> = Vec::new();
    for (ask, orders) in answered {
        let fresh: Vec<&StoredOrder> = orders.iter().filter(|o| !sent.contains(&o.id)).collect();
        if orders.is_empty() {
            if let Some(specimen) = &ask.specimen {
                patients.push(PatientSpec {
                    practice_patient_id: ask.patient_id.clone(),
                    orders: vec![OrderSpec {
                        specimen_id: specimen.clone(),
                        tests: ask.tests.clone(),
                        priority: String::new(),
                        action_code: String::new(),
                        report_type: NO_ORDER.to_string(),
                        ..OrderSpec::default()
                    }],
                    ..PatientSpec::default()
                });
            }
        }
        for o in fresh {
            sent.push(o.id);
            push_order(&mut patients, o, tz);
        }
    }
    if sent.is_empty() {
        return (build_no_information(header), sent);
    }
    (build_order_message(header, &patients), sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::OrderState;
    use ecko_protocol::astm::message::ParseOptions;

    fn records(text: &str) -> Vec<Vec<u8>> {
        text.split('\r')
            .filter(|r| !r.is_empty())
            .map(|r| r.as_bytes().to_vec())
            .collect()
    }

    fn order(id: i64, specimen: &str, patient: &str, tests: &[&str]) -> StoredOrder {
        StoredOrder {
            id,
            analyzer: "a".into(),
            specimen_id: specimen.into(),
            patient_id: patient.into(),
            patient_name: vec!["Doe".into(), "Jane".into()],
            tests: tests.iter().map(|t| t.to_string()).collect(),
            priority: "R".into(),
            state: OrderState::Pending,
            created_at: 0,
            sent_at: None,
            send_count: 0,
            sender: None,
        }
    }

    #[test]
    fn a_result_message_is_stored_with_its_control_id_patient_and_content_hash() {
        let r = records(
            "H|\\^&|MSG42||CHEM^1.0\rP|1||PID7\rO|1|S1||^^^GLU\rR|1|^^^GLU|5.1|mmol/L\rL|1|N\r",
        );
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        let n = new_message("chem", RESULT_TYPE, TestIdComponent::Auto, &r, Some(&m));
        assert_eq!(n.control_id.as_deref(), Some("MSG42"));
        assert_eq!(n.patient_id.as_deref(), Some("PID7"));
        assert_eq!(n.dedup_key, Some(content_hash(&r)));
        assert_eq!(n.message_type, "ASTM");
        assert_eq!(n.content_type, "application/x-astm");
        assert_eq!(n.payload, payload(&r));
        assert!(n.payload.ends_with(b"L|1|N\r"));
    }

    #[test]
    fn where_the_test_code_sits_is_stored_with_the_message_and_read_back_from_it() {
        let r = records("H|\\^&\rP|1\rO|1|S1||^^^16^TSH\rR|1|^^^16^TSH|1.2\rL|1|N\r");
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        for (at, stored) in [
            (TestIdComponent::Auto, "application/x-astm"),
            (
                TestIdComponent::At(5),
                "application/x-astm; test-id-component=5",
            ),
        ] {
            let n = new_message("i1", RESULT_TYPE, at, &r, Some(&m));
            assert_eq!(n.content_type, stored);
            assert_eq!(
                ecko_protocol::astm::message::test_id_component_of(&n.content_type),
                at
            );
        }
    }

    #[test]
    fn the_patient_id_falls_back_from_p3_to_p4_and_p5() {
        let r = records("H|\\^&\rP|1|||LAB9\rL|1|N\r");
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        assert_eq!(
            new_message("a", "ASTM", TestIdComponent::Auto, &r, Some(&m))
                .patient_id
                .as_deref(),
            Some("LAB9")
        );
        let r = records("H|\\^&\rL|1|N\r");
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        let n = new_message("a", "ASTM", TestIdComponent::Auto, &r, Some(&m));
        assert_eq!((n.patient_id, n.control_id), (None, None));
    }

    fn q(text: &str) -> Query {
        let r = records(text);
        Message::parse(&r, &ParseOptions::default())
            .unwrap()
            .queries[0]
            .clone()
    }

    fn selections(text: &str) -> Vec<OrderSelection> {
        asks(&q(text)).into_iter().map(|a| a.selection).collect()
    }

    #[test]
    fn a_query_selects_one_specimen_a_range_or_everything() {
        assert!(is_query(
            &Message::parse(
                &records("H|\\^&\rQ|1|^S1||^^^ALL\rL|1|N\r"),
                &ParseOptions::default()
            )
            .unwrap()
        ));
        assert_eq!(
            selections("H|\\^&\rQ|1|^S1||^^^ALL\rL|1|N\r"),
            [OrderSelection::Specimens(vec!["S1".into()])]
        );
        assert_eq!(
            selections("H|\\^&\rQ|1|S2\rL|1|N\r"),
            [OrderSelection::Specimens(vec!["S2".into()])]
        );
        assert_eq!(
            selections("H|\\^&\rQ|1|^S1|^S5\rL|1|N\r"),
            [OrderSelection::Range("S1".into(), "S5".into())]
        );
        assert_eq!(
            selections("H|\\^&\rQ|1|ALL\rL|1|N\r"),
            [OrderSelection::AllPending]
        );
    }

    #[test]
    fn a_query_repeating_q3_asks_for_each_specimen_in_the_order_given() {
        // A batch query as hematology and chemistry analyzers send it
        // after reading a rack: one Q record, Q-3 repeated per tube.
        let asked = asks(&q(
            "H|\\^&|||XN-550^00-22^11001^^^^1234||||||||E1394-97\rQ|1|^SID1001\\^SID1002\\^SID1003||^^^ALL||||||||O\rL|1|N\r",
        ));
        let specimens: Vec<_> = asked.iter().map(|a| a.specimen.clone()).collect();
        assert_eq!(
            specimens,
            [
                Some("SID1001".into()),
                Some("SID1002".into()),
                Some("SID1003".into())
            ]
        );
        assert!(asked.iter().all(|a| a.tests == ["ALL"]));
        // Two ranges, Q-3 and Q-4 repeated in step.
        assert_eq!(
            selections("H|\\^&\rQ|1|^A1\\^B1|^A9\\^B9|^^^ALL\rL|1|N\r"),
            [
                OrderSelection::Range("A1".into(), "A9".into()),
                OrderSelection::Range("B1".into(), "B9".into())
            ]
        );
    }

    #[test]
    fn every_specimen_asked_for_is_answered_in_order_with_its_orders_or_no_order() {
        let tz = TimeZone::UTC;
        let asked = asks(&q(
            "H|\\^&\rQ|1|PAT9^SID1001\\^SID1002\\^SID1003||^^^ALL||||||||O\rL|1|N\r",
        ));
        let answered = vec![
            (asked[0].clone(), vec![]),
            (
                asked[1].clone(),
                vec![order(7, "SID1002", "P2", &["WBC", "RBC"])],
            ),
            (asked[2].clone(), vec![]),
        ];
        let (r, sent) = answer_records(&answered, &HeaderSpec::default(), &tz);
        assert_eq!(sent, [7]);
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        assert_eq!(m.termination_code(), "N");
        let answers: Vec<(String, String, String)> = m
            .patients
            .iter()
            .flat_map(|p| p.orders.iter())
            .map(|o| (o.specimen_id(), o.report_type(), o.action_code()))
            .collect();
        assert_eq!(
            answers,
            [
                ("SID1001".into(), "Y".into(), String::new()),
                ("SID1002".into(), "O".into(), "N".into()),
                ("SID1003".into(), "Y".into(), String::new()),
            ]
        );
        // The no-order answer names the patient the analyzer asked with.
        assert_eq!(m.patients[0].practice_patient_id(), "PAT9");
        // Nothing for any of them: one no-information answer.
        let none: Vec<_> = asked.iter().map(|a| (a.clone(), vec![])).collect();
        let (r, sent) = answer_records(&none, &HeaderSpec::default(), &tz);
        assert!(sent.is_empty());
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        assert!(m.patients.is_empty());
        assert_eq!(m.termination_code(), "I");
    }

    #[test]
    fn orders_are_grouped_by_patient_and_none_gives_no_information() {
        let tz = TimeZone::UTC;
        let header = HeaderSpec::default();
        let r = order_records(
            &[
                order(1, "S1", "P1", &["GLU", "NA"]),
                order(2, "S2", "P1", &["K"]),
                order(3, "S3", "P2", &["CL"]),
            ],
            &header,
            &tz,
        );
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        assert_eq!(m.patients.len(), 2);
        assert_eq!(m.patients[0].orders.len(), 2);
        assert_eq!(m.patients[0].orders[0].specimen_id(), "S1");
        let codes: Vec<String> = m.patients[0].orders[0]
            .universal_test_ids()
            .iter()
            .map(|t| t.code().to_string())
            .collect();
        assert_eq!(codes, ["GLU", "NA"]);
        let none = order_records(&[], &header, &tz);
        let m = Message::parse(&none, &ParseOptions::default()).unwrap();
        assert!(m.patients.is_empty());
        assert_eq!(m.termination_code(), "I");
    }

    #[test]
    fn the_header_we_send_names_our_sender_and_the_site_time() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap();
        let header = header(vec!["LAB-LIS".into(), "2.1".into()], &tz);
        let mut o = order(1, "S1", "P1", &["GLU"]);
        o.created_at = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let r = order_records(&[o], &header, &tz);
        let m = Message::parse(&r, &ParseOptions::default()).unwrap();
        let sender = m.header.sender();
        assert_eq!(
            (sender.name.as_str(), sender.software_version.as_str()),
            ("LAB-LIS", "2.1")
        );
        let sent_at = m.header.timestamp(&tz).unwrap().expect("H-14 is filled");
        let age = jiff::Timestamp::now().as_second() - sent_at.timestamp().as_second();
        assert!(
            (0..=2).contains(&age),
            "H-14 {sent_at} is now in the site zone"
        );
        // O-7: 05:30 in Kolkata on the day the order arrived.
        let o7 = m.patients[0].orders[0].record.field(7).text();
        assert_eq!(o7, "20260101053000");
    }

    #[test]
    fn a_query_is_recognised_by_its_record_types_even_when_it_does_not_parse() {
        assert!(looks_like_query(&records(
            "H|\\^&\rQ|2|^S1||^^^ALL\rL|1|N\r"
        )));
        assert!(!looks_like_query(&records("H|\\^&\rP|1\rQ|1|^S1\rL|1|N\r")));
        assert!(!looks_like_query(&records("H|\\^&\rL|1|N\r")));
        assert_eq!(
            sender_name(&records("H|\\^&|||cobas c311^1.05\rQ|2\rL|1|N\r")).as_deref(),
            Some("cobas c311")
        );
        assert_eq!(sender_name(&records("H|\\^&\rL|1|N\r")), None);
        let err = query_error_records(&HeaderSpec::default());
        let m = Message::parse(&err, &ParseOptions::default()).unwrap();
        assert_eq!(m.termination_code(), "Q");
    }
}
