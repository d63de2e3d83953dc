//! Tests of the HL7 layer as a whole, against the sample set in `testdata/`.

use jiff::Zoned;
use proptest::prelude::*;

use super::*;

const ORU: &[u8] = include_bytes!("testdata/oru_r01_v251.hl7");
const ADT: &[u8] = include_bytes!("testdata/adt_a01_v25.hl7");
const OUL_V27: &[u8] = include_bytes!("testdata/oul_r22_v27.hl7");
const ADT_LATIN1: &[u8] = include_bytes!("testdata/adt_a08_latin1.hl7");
const BATCH: &[u8] = include_bytes!("testdata/oru_batch_v251.hl7");

fn opts() -> ParseOptions {
    ParseOptions::default()
}

fn parse(bytes: &[u8]) -> Message {
    match Message::parse(bytes, &opts()) {
        Ok(m) => m,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn now() -> Zoned {
    jiff::civil::date(2026, 3, 14)
        .at(9, 31, 5, 0)
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
        .expect("valid time")
}

/// Field `n` of the first segment `seg`, decoded.
fn val(m: &Message, seg: &str, n: usize) -> String {
    m.segment(seg)
        .and_then(|s| s.field(n))
        .map(|v| v.value().into_owned())
        .unwrap_or_else(|| panic!("{seg}-{n} absent"))
}

fn raw(m: &Message, seg: &str, n: usize) -> String {
    m.segment(seg)
        .and_then(|s| s.field(n))
        .map(|v| v.raw().to_string())
        .unwrap_or_else(|| panic!("{seg}-{n} absent"))
}

fn err_of(bytes: &[u8]) -> ParseError {
    match Message::parse(bytes, &opts()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// ---- parsing the sample set ----

#[test]
fn a_lab_oru_exposes_its_identity_from_msh() {
    let m = parse(ORU);
    let id = m.identity();
    assert_eq!(id.message_code, "ORU");
    assert_eq!(id.trigger_event, "R01");
    assert_eq!(id.structure, "ORU_R01");
    assert_eq!(id.control_id, "XN20260314093015001");
    assert_eq!(id.processing_id, "P");
    assert_eq!(id.version, "2.5.1");
    assert_eq!(id.sending_application, "XN-1000^SYSMEX^L");
    assert_eq!(id.sending_facility, "HEMA-LAB");
    assert_eq!(id.receiving_application, "LIS");
    assert_eq!(id.receiving_facility, "ST-MARY");
    assert_eq!(id.accept_ack_type, "");
    assert_eq!(id.ack_mode(), AckMode::Original);
    assert_eq!(m.segment_count(), 10);
    assert_eq!(m.segments_by_id("OBX").count(), 4);
}

#[test]
fn msh_1_is_the_field_separator_and_msh_2_the_encoding_characters() {
    let m = parse(ORU);
    let msh = m.msh();
    assert_eq!(msh.field(1).map(|v| v.raw()), Some("|"));
    assert_eq!(msh.field(2).map(|v| v.raw()), Some("^~\\&"));
    assert_eq!(
        msh.field(2).map(|v| v.value().into_owned()),
        Some("^~\\&".into())
    );
    assert_eq!(
        msh.field(2).and_then(|v| v.component(2)).map(|v| v.raw()),
        None
    );
    assert_eq!(raw(&m, "MSH", 3), "XN-1000^SYSMEX^L");
    assert_eq!(raw(&m, "MSH", 7), "20260314093015+0100");
    assert_eq!(raw(&m, "MSH", 9), "ORU^R01^ORU_R01");
    assert_eq!(raw(&m, "MSH", 12), "2.5.1");
    assert_eq!(msh.field(13).map(|v| v.raw()), None);
    assert_eq!(msh.field_count(), 12);
}

#[test]
fn components_and_segment_sequence_follow_hl7_positions() {
    let m = parse(ORU);
    let obx3 = m.segments_by_id("OBX").nth(2).expect("third OBX");
    assert_eq!(obx3.sequence(), 3);
    assert_eq!(obx3.index(), 7);
    let code = obx3.field(3).expect("OBX-3");
    assert_eq!(code.component(1).map(|v| v.raw()), Some("718-7"));
    assert_eq!(
        code.component(2).map(|v| v.raw()),
        Some("Hemoglobin [Mass/volume] in Blood")
    );
    assert_eq!(code.component(3).map(|v| v.raw()), Some("LN"));
    assert_eq!(code.component(4).map(|v| v.raw()), None);
    assert_eq!(obx3.field(5).map(|v| v.raw()), Some("13.9"));
    assert_eq!(obx3.field(8).map(|v| v.raw()), Some("N"));
    assert_eq!(obx3.field(4).map(|v| v.is_empty()), Some(true));
    assert!(obx3.field(0).is_none());
    assert!(obx3.field(99).is_none());
}

#[test]
fn repetitions_and_subcomponents_are_addressable() {
    let m = parse(ADT);
    let pid3 = m.segment("PID").and_then(|s| s.field(3)).expect("PID-3");
    assert_eq!(pid3.repetitions().count(), 2);
    let second = pid3.repetition(2).expect("second id");
    assert_eq!(second.component(1).map(|v| v.raw()), Some("987654321"));
    assert_eq!(second.component(4).map(|v| v.raw()), Some("NHS"));
    assert!(pid3.repetition(3).is_none());
    assert_eq!(
        m.segment("PID")
            .and_then(|s| s.field(5))
            .and_then(|f| f.component(2))
            .map(|v| v.raw()),
        Some("Anna")
    );
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||12^^^HIS&1.2.3&ISO^MR\r");
    let auth = m
        .segment("PID")
        .and_then(|s| s.field(3))
        .and_then(|f| f.component(4))
        .expect("PID-3.4");
    assert_eq!(auth.subcomponent(2).map(|v| v.raw()), Some("1.2.3"));
    assert_eq!(auth.subcomponent(3).map(|v| v.raw()), Some("ISO"));
    assert!(auth.subcomponent(4).is_none());
}

#[test]
fn escapes_in_field_values_decode_and_raw_values_keep_them() {
    let m = parse(ORU);
    assert_eq!(
        raw(&m, "NTE", 3),
        "Platelet clumps seen\\E\\ recount suggested\\.br\\Checked by \\T\\ reported to ward"
    );
    assert_eq!(
        val(&m, "NTE", 3),
        "Platelet clumps seen\\ recount suggested\nChecked by & reported to ward"
    );
}

#[test]
fn v27_truncation_character_is_read_from_msh_2_and_stays_data() {
    let m = parse(OUL_V27);
    let seps = m.separators();
    assert_eq!(seps.truncation, Some('#'));
    assert_eq!(seps.subcomponent, '&');
    assert_eq!(raw(&m, "MSH", 2), "^~\\&#");
    assert_eq!(raw(&m, "MSH", 3), "cobas^ROCHE^L");
    assert_eq!(m.identity().version, "2.7");
    assert_eq!(m.identity().control_id, "C8000-20260314-0042");
    assert_eq!(m.charset(), Charset::Utf8);
    let comment = m
        .segments_by_id("OBX")
        .nth(1)
        .and_then(|s| s.field(5))
        .expect("OBX-5");
    let text = comment.value();
    assert!(text.contains("section 4#2"), "{text}");
    assert!(text.ends_with("cut#"), "{text}");
    assert_eq!(val(&m, "NTE", 3), "Grüße aus dem Labor");
}

#[test]
fn iso_8859_1_message_decodes_umlauts_in_pid() {
    let m = parse(ADT_LATIN1);
    assert_eq!(m.charset(), Charset::Latin1);
    assert!(!m.had_decode_errors());
    let pid5 = m.segment("PID").and_then(|s| s.field(5)).expect("PID-5");
    assert_eq!(
        pid5.component(1).map(|v| v.value().into_owned()),
        Some("Müller".into())
    );
    assert_eq!(
        pid5.component(2).map(|v| v.value().into_owned()),
        Some("Jürgen".into())
    );
    let pid11 = m.segment("PID").and_then(|s| s.field(11)).expect("PID-11");
    assert_eq!(pid11.component(1).map(|v| v.raw()), Some("Hauptstraße 5"));
    assert_eq!(pid11.component(3).map(|v| v.raw()), Some("München"));
}

#[test]
fn every_supported_charset_decodes_before_splitting() {
    for (name, cs, name_text) in [
        ("ASCII", Charset::Ascii, "Muller^Hans"),
        ("8859/1", Charset::Latin1, "Müller^Hans"),
        ("8859/15", Charset::Latin9, "Müller€^Hans"),
        ("UNICODE UTF-8", Charset::Utf8, "Müller^患者"),
        ("WINDOWS-1252", Charset::Windows1252, "Müller€^Hans"),
    ] {
        let text = format!(
            "MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|1|P|2.5|||||DEU|{name}\rPID|1||7||{name_text}\r"
        );
        let bytes = cs.encode(&text);
        let m = parse(&bytes);
        assert_eq!(m.charset(), cs, "{name}");
        assert_eq!(raw(&m, "PID", 5), name_text, "{name}");
        assert!(!m.had_decode_errors(), "{name}");
    }
}

#[test]
fn an_empty_msh_18_uses_the_endpoint_fallback_charset() {
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||7||M\xfcller\r";
    let m = parse(bytes);
    assert_eq!(m.charset(), Charset::Windows1252);
    assert_eq!(raw(&m, "PID", 5), "Müller");
    let utf8 = ParseOptions {
        fallback_charset: Charset::Utf8,
    };
    let m = Message::parse(bytes, &utf8).expect("parses with replacement");
    assert!(m.had_decode_errors());
    assert_eq!(raw(&m, "PID", 5), "M\u{FFFD}ller");
}

#[test]
fn a_message_claiming_ascii_with_high_bytes_uses_the_fallback_for_them() {
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||||DEU|ASCII\rPID|1||7||M\xfcller\r";
    let latin1 = ParseOptions {
        fallback_charset: Charset::Latin1,
    };
    let m = Message::parse(bytes, &latin1).expect("parses");
    assert_eq!(m.charset(), Charset::Ascii);
    assert_eq!(raw(&m, "PID", 5), "Müller");
}

#[test]
fn non_ascii_before_escapes_does_not_break_parsing() {
    let text = "MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5.1|||||DEU|UNICODE UTF-8\rOBX|1|ST|x||Größe \\F\\ Ärger \\S\\ ü\\E\\\r";
    let m = parse(text.as_bytes());
    assert_eq!(val(&m, "OBX", 5), "Größe | Ärger ^ ü\\");
}

#[test]
fn escaped_hex_bytes_decode_in_the_message_charset() {
    let latin1 = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||||DEU|8859/1\rPID|1||7||M\\XFC\\ller\r";
    assert_eq!(val(&parse(latin1), "PID", 5), "Müller");
    let utf8 =
        b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||||DEU|UNICODE UTF-8\rPID|1||7||M\\XC3BC\\ller\r";
    assert_eq!(val(&parse(utf8), "PID", 5), "Müller");
}

#[test]
fn custom_separators_are_honoured_everywhere() {
    let m = parse(b"MSH#$*/%#A$X#B#C#D#1##ORU$R01$ORU_R01#77#P#2.5.1\rOBX#1#ST#c$d##a/F/b$c%d*e\r");
    assert_eq!(m.identity().trigger_event, "R01");
    assert_eq!(m.identity().control_id, "77");
    assert_eq!(raw(&m, "MSH", 1), "#");
    assert_eq!(raw(&m, "MSH", 2), "$*/%");
    let obx5 = m.segment("OBX").and_then(|s| s.field(5)).expect("OBX-5");
    assert_eq!(obx5.repetitions().count(), 2);
    let first = obx5.repetition(1).expect("rep 1");
    assert_eq!(
        first.component(1).map(|v| v.value().into_owned()),
        Some("a#b".into())
    );
    assert_eq!(
        first
            .component(2)
            .and_then(|c| c.subcomponent(2))
            .map(|v| v.raw()),
        Some("d")
    );
}

// ---- segment terminators ----

fn segment_ids(m: &Message) -> Vec<String> {
    m.segments().map(|s| s.raw().to_string()).collect()
}

#[test]
fn lf_and_crlf_terminators_parse_like_cr() {
    let reference = segment_ids(&parse(ORU));
    let lf: Vec<u8> = ORU
        .iter()
        .map(|&b| if b == b'\r' { b'\n' } else { b })
        .collect();
    assert_eq!(segment_ids(&parse(&lf)), reference);
    let crlf = String::from_utf8_lossy(ORU).replace('\r', "\r\n");
    assert_eq!(segment_ids(&parse(crlf.as_bytes())), reference);
}

#[test]
fn blank_lines_and_trailing_whitespace_are_skipped() {
    let sloppy = b"\r\n\xEF\xBB\xBF\nMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r\r\n\nPID|1\n   \r\nPV1|1\r\n\r\n  ";
    // The BOM is only skipped at the very start; here it follows blank lines.
    assert!(Message::parse(sloppy, &opts()).is_err());
    let sloppy = b"\xEF\xBB\xBF\r\n\nMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r\r\n\nPID|1\n   \r\nPV1|1\r\n\r\n  ";
    let m = parse(sloppy);
    let ids: Vec<&str> = m.segments().map(|s| s.id()).collect();
    assert_eq!(ids, ["MSH", "PID", "PV1"]);
}

#[test]
fn a_lone_lf_inside_report_text_stays_data_when_cr_terminates_segments() {
    let m =
        parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5.1\rOBX|1|TX|x||line one\nline two\rNTE|1\r");
    assert_eq!(m.segment_count(), 3);
    assert_eq!(val(&m, "OBX", 5), "line one\nline two");
}

#[test]
fn a_message_without_final_terminator_keeps_its_last_segment() {
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5.1\rOBX|1|NM|x||5.4");
    assert_eq!(val(&m, "OBX", 5), "5.4");
}

// ---- malformed input ----

#[test]
fn empty_input_is_reported_as_empty() {
    assert_eq!(err_of(b""), ParseError::Empty);
    assert_eq!(err_of(b" \r\n\r"), ParseError::Empty);
}

#[test]
fn input_not_starting_with_msh_is_missing_msh() {
    let e = err_of(b"PID|1||7\r");
    assert_eq!(e, ParseError::MissingMsh);
    assert_eq!(e.error_code(), ErrorCode::SegmentSequenceError);
    assert_eq!(e.location(), None);
    assert_eq!(err_of(b"garbage MSH|^~\\&|\r"), ParseError::MissingMsh);
    assert_eq!(err_of(b"msh|^~\\&|A\r"), ParseError::MissingMsh);
}

#[test]
fn bad_separators_are_reported_at_msh_2() {
    for bytes in [
        &b"MSH"[..],
        b"MSHA^~\\&|x",
        b"MSH ^~\\&|x",
        b"MSH|^~\\|A|B",
        b"MSH||A|B",
        b"MSH|^~\\&#!|A",
        b"MSH|^^\\&|A",
        b"MSH|^~|&|A",
        b"MSH|^~\\a|A",
    ] {
        let e = err_of(bytes);
        assert!(
            matches!(e, ParseError::BadSeparators { .. }),
            "{:?}: {e:?}",
            String::from_utf8_lossy(bytes)
        );
        assert_eq!(e.error_code(), ErrorCode::DataTypeError);
        assert_eq!(e.location(), Some(ErrorLocation::msh_field(2)));
    }
}

#[test]
fn missing_msh_9_is_a_required_field_error_at_msh_9() {
    for bytes in [
        &b"MSH|^~\\&|A|B|C|D|1|||1|P|2.5\r"[..],
        b"MSH|^~\\&|A|B|C|D|1||^A01|1|P|2.5\r",
        b"MSH|^~\\&|A|B|C|D|1\r",
        b"MSH|^~\\&\rPID|1\r".as_slice(),
    ] {
        let e = err_of(bytes);
        assert_eq!(
            e,
            ParseError::MissingField {
                location: ErrorLocation::msh_field(9)
            }
        );
        assert_eq!(e.error_code(), ErrorCode::RequiredFieldMissing);
    }
}

#[test]
fn missing_msh_10_is_a_required_field_error_at_msh_10() {
    for bytes in [
        &b"MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5\r"[..],
        b"MSH|^~\\&|A|B|C|D|1||ADT^A01|  |P|2.5\r",
        b"MSH|^~\\&|A|B|C|D|1||ADT^A01\r",
    ] {
        let e = err_of(bytes);
        assert_eq!(e.location(), Some(ErrorLocation::msh_field(10)));
        assert_eq!(e.error_code(), ErrorCode::RequiredFieldMissing);
    }
}

#[test]
fn an_unsupported_msh_18_charset_is_a_table_value_error() {
    let e = err_of(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5|||||JPN|ISO IR87\r");
    assert_eq!(
        e,
        ParseError::UnsupportedCharset {
            name: "ISO IR87".into()
        }
    );
    assert_eq!(e.error_code(), ErrorCode::TableValueNotFound);
    assert_eq!(e.location(), Some(ErrorLocation::msh_field(18)));
}

#[test]
fn a_line_without_a_segment_id_is_an_invalid_segment() {
    let e = err_of(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1\rthis is not a segment\r");
    assert_eq!(e, ParseError::InvalidSegment { index: 2 });
    assert_eq!(e.error_code(), ErrorCode::SegmentSequenceError);
    let e = err_of(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rpid|1\r");
    assert_eq!(e, ParseError::InvalidSegment { index: 1 });
    let e = err_of(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPIDX|1\r");
    assert_eq!(e, ParseError::InvalidSegment { index: 1 });
}

#[test]
fn a_segment_id_alone_on_its_line_is_valid() {
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rZX1\r");
    assert_eq!(m.segment("ZX1").map(|s| s.field_count()), Some(0));
}

#[test]
fn explicit_null_is_distinguishable_from_empty() {
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.5\rPID|1||7||\"\"\r");
    let pid = m.segment("PID").expect("PID");
    assert!(pid.field(5).is_some_and(|v| v.is_null()));
    assert!(pid.field(4).is_some_and(|v| v.is_empty() && !v.is_null()));
}

// ---- batches ----

#[test]
fn a_batch_splits_into_messages_that_each_parse_on_their_own() {
    assert!(is_batch(BATCH));
    let b = split_batch(BATCH).expect("batch");
    assert_eq!(b.declared_count, Some(3));
    assert_eq!(b.messages.len(), 3);
    assert!(b.file_header.is_some_and(|h| h.starts_with(b"FHS|")));
    assert!(b.batch_header.is_some_and(|h| h.ends_with(b"BATCH0001")));
    let ids: Vec<String> = b
        .messages
        .iter()
        .map(|m| parse(m).identity().control_id.clone())
        .collect();
    assert_eq!(ids, ["B0001", "B0002", "B0003"]);
    let third = parse(b.messages[2]);
    assert_eq!(third.charset(), Charset::Latin1);
    assert_eq!(third.segment_count(), 4);
    assert_eq!(
        third
            .segment("PID")
            .and_then(|s| s.field(5))
            .and_then(|f| f.component(2))
            .map(|v| v.raw()),
        Some("Gül")
    );
    assert!(b.messages[0].ends_with(b"OBX|1|NM|2345-7^Glucose^LN||5.1|mmol/L|3.9-5.6|N|||F\r"));
}

#[test]
fn a_batch_whose_trailer_count_disagrees_is_rejected() {
    let text = String::from_utf8_lossy(BATCH).replace("BTS|3", "BTS|4");
    assert_eq!(
        split_batch(text.as_bytes()),
        Err(ParseError::BatchCountMismatch {
            declared: 4,
            found: 3
        })
    );
}

#[test]
fn a_batch_without_trailers_or_with_lf_still_splits() {
    let b = split_batch(
        b"BHS|^~\\&|A\nMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\nPID|1\nMSH|^~\\&|A|B|C|D|1||ADT^A01|2|P|2.5\n",
    )
    .expect("batch");
    assert_eq!(b.messages.len(), 2);
    assert_eq!(parse(b.messages[1]).identity().control_id, "2");
    assert_eq!(b.declared_count, None);
}

#[test]
fn a_plain_message_is_a_batch_of_one() {
    assert!(!is_batch(ORU));
    let b = split_batch(ORU).expect("batch");
    assert_eq!(b.messages, vec![ORU]);
    assert!(b.file_header.is_none());
}

#[test]
fn segments_outside_a_message_in_a_batch_are_an_error() {
    assert_eq!(
        split_batch(b"BHS|^~\\&|A\rPID|1\rMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r"),
        Err(ParseError::InvalidSegment { index: 1 })
    );
    assert!(matches!(
        split_batch(b"BHS\r"),
        Err(ParseError::BadSeparators { .. })
    ));
    assert_eq!(split_batch(b"XYZ|1"), Err(ParseError::MissingMsh));
}

// ---- ACK decisions ----

fn identity(msh15: &str, msh16: &str) -> Identity {
    Identity {
        accept_ack_type: msh15.into(),
        application_ack_type: msh16.into(),
        ..Identity::default()
    }
}

#[test]
fn original_mode_always_answers_with_aa_ae_or_ar() {
    let id = identity("", "");
    assert_eq!(id.ack_mode(), AckMode::Original);
    assert_eq!(accept_ack_code(&id, Outcome::Accepted), Some(AckCode::AA));
    assert_eq!(accept_ack_code(&id, Outcome::Error), Some(AckCode::AE));
    assert_eq!(accept_ack_code(&id, Outcome::Rejected), Some(AckCode::AR));
    assert_eq!(application_ack_code(&id, Outcome::Accepted), None);
}

#[test]
fn enhanced_mode_sends_commit_acks_as_msh_15_asks() {
    use AckCode::*;
    use Outcome::*;
    let table = [
        ("AL", [Some(CA), Some(CE), Some(CR)]),
        ("NE", [None, None, None]),
        ("ER", [None, Some(CE), Some(CR)]),
        ("SU", [Some(CA), None, None]),
        ("", [Some(CA), Some(CE), Some(CR)]),
    ];
    for (msh15, want) in table {
        let id = identity(msh15, "AL");
        assert_eq!(id.ack_mode(), AckMode::Enhanced);
        for (outcome, want) in [Accepted, Error, Rejected].into_iter().zip(want) {
            assert_eq!(
                accept_ack_code(&id, outcome),
                want,
                "MSH-15 {msh15:?} {outcome:?}"
            );
        }
    }
}

#[test]
fn enhanced_mode_application_acks_follow_msh_16() {
    assert_eq!(
        application_ack_code(&identity("AL", "AL"), Outcome::Accepted),
        Some(AckCode::AA)
    );
    assert_eq!(
        application_ack_code(&identity("AL", "NE"), Outcome::Error),
        None
    );
    assert_eq!(
        application_ack_code(&identity("AL", "ER"), Outcome::Rejected),
        Some(AckCode::AR)
    );
    assert_eq!(
        application_ack_code(&identity("AL", "ER"), Outcome::Accepted),
        None
    );
    assert_eq!(
        application_ack_code(&identity("AL", ""), Outcome::Accepted),
        None
    );
}

#[test]
fn the_v27_sample_asks_for_enhanced_mode_accept_acks() {
    let m = parse(OUL_V27);
    assert_eq!(m.identity().ack_mode(), AckMode::Enhanced);
    assert_eq!(
        accept_ack_code(m.identity(), Outcome::Accepted),
        Some(AckCode::CA)
    );
    assert_eq!(application_ack_code(m.identity(), Outcome::Accepted), None);
}

// ---- ACK building ----

fn content<'a>(code: AckCode, ts: &'a Zoned, error: Option<&'a AckError>) -> AckContent<'a> {
    AckContent {
        code,
        control_id: "ECKO-1",
        timestamp: ts,
        text: None,
        error,
    }
}

#[test]
fn an_ack_to_a_version_that_is_not_v2_is_written_as_2_5_1() {
    let ts = now();
    let oru = String::from_utf8(ORU.to_vec()).unwrap();
    let m = parse(oru.replacen("|P|2.5.1", "|P|3.0", 1).as_bytes());
    let ack = build_ack(&m, &content(AckCode::AR, &ts, None));
    assert_eq!(raw(&parse(&ack), "MSH", 12), "2.5.1");
    let unreadable = oru
        .replacen("|P|2.5.1", "|P|3.0", 1)
        .replacen("XN20260314093015001", "", 1);
    let ack = build_ack_for_unreadable(
        unreadable.as_bytes(),
        &content(AckCode::AR, &ts, None),
        &ParseOptions::default(),
    );
    assert_eq!(raw(&parse(&ack), "MSH", 12), "2.5.1");
    // A v2 version, even an old one, is answered in kind.
    let m = parse(oru.replacen("|P|2.5.1", "|P|2.3", 1).as_bytes());
    let ack = build_ack(&m, &content(AckCode::AA, &ts, None));
    assert_eq!(raw(&parse(&ack), "MSH", 12), "2.3");
}

#[test]
fn an_aa_ack_swaps_msh_3_to_6_and_answers_msh_10() {
    let m = parse(ORU);
    let ts = now();
    let ack = build_ack(&m, &content(AckCode::AA, &ts, None));
    assert_eq!(
        String::from_utf8_lossy(&ack),
        "MSH|^~\\&|LIS|ST-MARY|XN-1000^SYSMEX^L|HEMA-LAB|20260314093105+0100||ACK^R01^ACK|ECKO-1|P|2.5.1\r\
         MSA|AA|XN20260314093015001\r"
    );
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSH", 3), "LIS");
    assert_eq!(raw(&a, "MSH", 4), "ST-MARY");
    assert_eq!(raw(&a, "MSH", 5), "XN-1000^SYSMEX^L");
    assert_eq!(raw(&a, "MSH", 6), "HEMA-LAB");
    assert_eq!(raw(&a, "MSH", 7), "20260314093105+0100");
    assert_eq!(raw(&a, "MSH", 9), "ACK^R01^ACK");
    assert_eq!(raw(&a, "MSH", 10), "ECKO-1");
    assert_eq!(raw(&a, "MSH", 11), "P");
    assert_eq!(raw(&a, "MSH", 12), "2.5.1");
    assert_eq!(raw(&a, "MSA", 1), "AA");
    assert_eq!(raw(&a, "MSA", 2), "XN20260314093015001");
    assert!(a.segment("ERR").is_none());
}

#[test]
fn an_ae_ack_carries_an_err_segment_saying_where() {
    let m = parse(ADT);
    let ts = now();
    let error = AckError {
        code: ErrorCode::RequiredFieldMissing,
        location: Some(ErrorLocation {
            segment_id: "PID".into(),
            sequence: 1,
            field: Some(5),
            segment_index: 2,
        }),
        message: "Patient name | missing".into(),
    };
    let mut c = content(AckCode::AE, &ts, Some(&error));
    c.text = Some("rejected: see ERR");
    let ack = build_ack(&m, &c);
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSH", 9), "ACK^A01^ACK");
    assert_eq!(raw(&a, "MSH", 12), "2.5");
    assert_eq!(raw(&a, "MSA", 1), "AE");
    assert_eq!(raw(&a, "MSA", 2), "ADT000123");
    assert_eq!(raw(&a, "MSA", 3), "rejected: see ERR");
    let err = a.segment("ERR").expect("ERR");
    assert_eq!(err.field(1).map(|v| v.raw()), Some(""));
    assert_eq!(err.field(2).map(|v| v.raw()), Some("PID^1^5"));
    assert_eq!(
        err.field(3).map(|v| v.raw()),
        Some("101^Required field missing^HL70357")
    );
    assert_eq!(err.field(4).map(|v| v.raw()), Some("E"));
    assert_eq!(
        err.field(8).map(|v| v.raw()),
        Some("Patient name \\F\\ missing")
    );
    assert_eq!(
        err.field(8).map(|v| v.value().into_owned()),
        Some("Patient name | missing".into())
    );
    assert_eq!(err.field_count(), 8);
}

#[test]
fn an_ack_goes_back_in_the_senders_charset() {
    let m = parse(ADT_LATIN1);
    let ts = now();
    let error = AckError {
        code: ErrorCode::ApplicationInternalError,
        location: None,
        message: "Prüfung fehlgeschlagen".into(),
    };
    let ack = build_ack(&m, &content(AckCode::AR, &ts, Some(&error)));
    assert!(ack.windows(4).any(|w| w == b"Pr\xfcf"), "{ack:?}");
    let a = parse(&ack);
    assert_eq!(a.charset(), Charset::Latin1);
    assert_eq!(raw(&a, "MSH", 18), "8859/1");
    assert_eq!(raw(&a, "MSH", 17), "");
    assert_eq!(val(&a, "ERR", 8), "Prüfung fehlgeschlagen");
    assert_eq!(raw(&a, "ERR", 2), "");
    assert_eq!(raw(&a, "ERR", 3), "207^Application internal error^HL70357");
}

#[test]
fn a_v27_ack_keeps_the_truncation_character_in_msh_2() {
    let m = parse(OUL_V27);
    let ts = now();
    let ack = build_ack(&m, &content(AckCode::CA, &ts, None));
    assert!(ack.starts_with(b"MSH|^~\\&#|LIS|ST-MARY|cobas^ROCHE^L|CHEM-LAB|"));
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSH", 9), "ACK^R22^ACK");
    assert_eq!(raw(&a, "MSH", 18), "UNICODE UTF-8");
    assert_eq!(raw(&a, "MSA", 1), "CA");
}

#[test]
fn pre_v25_acks_use_err_1_and_pre_v231_acks_have_no_structure() {
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A04|X9|P|2.3\rPID|1\r");
    let ts = now();
    let error = AckError {
        code: ErrorCode::RequiredFieldMissing,
        location: Some(ErrorLocation {
            segment_id: "PID".into(),
            sequence: 1,
            field: Some(3),
            segment_index: 1,
        }),
        message: "no id".into(),
    };
    let ack = build_ack(&m, &content(AckCode::AE, &ts, Some(&error)));
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSH", 9), "ACK^A04");
    assert_eq!(
        raw(&a, "ERR", 1),
        "PID^1^3^101&Required field missing&HL70357"
    );
    assert_eq!(a.segment("ERR").map(|s| s.field_count()), Some(1));
    let m = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A04|X9|P|2.3.1\r");
    let ack = build_ack(&m, &content(AckCode::AA, &ts, None));
    assert_eq!(raw(&parse(&ack), "MSH", 9), "ACK^A04^ACK");
}

#[test]
fn an_ack_for_a_message_missing_msh_10_salvages_what_msh_holds() {
    let bytes = b"MSH|^~\\&|LIS|LAB|ECKO|HOSP|20260101||ORU^R01^ORU_R01||P|2.5.1\rPID|1\r";
    let e = err_of(bytes);
    let error = AckError::from(&e);
    let ts = now();
    let ack = build_ack_for_unreadable(bytes, &content(AckCode::AE, &ts, Some(&error)), &opts());
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSH", 3), "ECKO");
    assert_eq!(raw(&a, "MSH", 5), "LIS");
    assert_eq!(raw(&a, "MSH", 9), "ACK^R01^ACK");
    assert_eq!(raw(&a, "MSA", 1), "AE");
    assert_eq!(raw(&a, "MSA", 2), "\"\"", "the HL7 null: MSA-2 is required");
    assert_eq!(raw(&a, "ERR", 2), "MSH^1^10");
    assert_eq!(raw(&a, "ERR", 3), "101^Required field missing^HL70357");
    assert_eq!(raw(&a, "ERR", 4), "E");
    assert_eq!(
        val(&a, "ERR", 8),
        "required field MSH-10 (segment 1) is missing"
    );
}

#[test]
fn a_plus_sign_as_field_separator_does_not_split_the_acks_timestamp() {
    // The time zone's offset sign is data: with `+` as the field separator
    // it must be escaped, or MSH-7 would spill into MSH-8 and push MSH-9 out.
    let ts = jiff::civil::date(2026, 3, 14)
        .at(9, 30, 0, 0)
        .in_tz("Europe/Berlin")
        .unwrap();
    let m = parse(b"MSH+^~\\&+A+B+C+D+1++ORU^R01+X1+P+2.5.1\r");
    let ack = build_ack(&m, &content(AckCode::AA, &ts, None));
    let a = parse(&ack);
    assert_eq!(a.identity().message_code, "ACK");
    assert_eq!(a.identity().control_id, "ECKO-1");
    assert_eq!(val(&a, "MSH", 7), "20260314093000+0100");
    let unreadable = b"MSH+^~\\&+A+B+C+D+1++ORU^R01++P+2.5.1\r";
    let e = err_of(unreadable);
    let error = AckError::from(&e);
    let ack = build_ack_for_unreadable(
        unreadable,
        &content(AckCode::AE, &ts, Some(&error)),
        &opts(),
    );
    assert_eq!(parse(&ack).identity().message_code, "ACK");
}

#[test]
fn an_ack_for_unreadable_garbage_is_still_valid_hl7() {
    let ts = now();
    for bytes in [
        &b""[..],
        b"\x00\xff\x0b garbage",
        b"PID|1||7\r",
        b"MSH|^~|A|B\r",
        b"MSH|^~\\&|A\xff\\|B|C|D|1||ADT^A01|\\X\x01|P|2.5|||||XX|EBCDIC\r",
    ] {
        let e = Message::parse(bytes, &opts()).expect_err("broken");
        let error = AckError::from(&e);
        let ack =
            build_ack_for_unreadable(bytes, &content(AckCode::AE, &ts, Some(&error)), &opts());
        let a = parse(&ack);
        assert_eq!(raw(&a, "MSA", 1), "AE");
        assert!(raw(&a, "MSH", 9).starts_with("ACK"));
        assert!(a.segment("ERR").is_some());
    }
}

// ---- reading received ACKs ----

#[test]
fn a_received_aa_is_matched_to_the_sent_control_id() {
    let a = ReceivedAck::parse(
        b"MSH|^~\\&|HUB|X|ECKO|Y|20260101||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|MSG0001\r",
        &opts(),
    )
    .expect("ack");
    assert_eq!(a.code, AckCode::AA);
    assert!(a.code.is_accept());
    assert!(a.acknowledges("MSG0001"));
    assert!(!a.acknowledges("MSG0002"));
    assert!(a.errors.is_empty());
}

#[test]
fn a_received_error_ack_exposes_text_and_err_details() {
    let a = ReceivedAck::parse(
        b"MSH|^~\\&|HUB|X|ECKO|Y|20260101||ACK|||2.5.1\r\nMSA|CE|MSG7|Bad \\T\\ worse\r\nERR||OBX^2^5|102^Data type error^HL70357|E||||value \\F\\ not numeric\r\n",
        &opts(),
    )
    .expect("ack");
    assert_eq!(a.code, AckCode::CE);
    assert!(!a.code.is_accept());
    assert_eq!(a.control_id, "MSG7");
    assert_eq!(a.text, "Bad & worse");
    assert_eq!(
        a.errors,
        vec![ReceivedError {
            location: "OBX^2^5".into(),
            code: "102".into(),
            code_text: "Data type error".into(),
            severity: "E".into(),
            message: "value | not numeric".into(),
        }]
    );
}

#[test]
fn a_received_legacy_err_1_is_read_too() {
    let a = ReceivedAck::parse(
        b"MSH|^~\\&|HUB|X|ECKO|Y|1||ACK^A01|9|P|2.3\rMSA|AE|M1\rERR|PID^1^3^101&Required field missing&HL70357\r",
        &opts(),
    )
    .expect("ack");
    assert_eq!(a.errors[0].location, "PID^1^3");
    assert_eq!(a.errors[0].code, "101");
    assert_eq!(a.errors[0].code_text, "Required field missing");
}

#[test]
fn broken_received_acks_are_typed_errors() {
    let p = |b: &[u8]| ReceivedAck::parse(b, &opts());
    assert_eq!(
        p(b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5\r"),
        Err(AckParseError::MissingMsa)
    );
    assert_eq!(
        p(b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5\rMSA|OK|M1\r"),
        Err(AckParseError::BadCode("OK".into()))
    );
    assert_eq!(
        p(b"MSH|^~\\&|A|B|C|D|1||ACK|1|P|2.5\rMSA|AA\r"),
        Err(AckParseError::MissingControlId)
    );
    assert_eq!(
        p(b"junk"),
        Err(AckParseError::Parse(ParseError::MissingMsh))
    );
}

#[test]
fn every_ack_we_build_reads_back_as_a_received_ack() {
    let ts = now();
    for sample in [ORU, ADT, OUL_V27, ADT_LATIN1] {
        let m = parse(sample);
        for code in [
            AckCode::AA,
            AckCode::AE,
            AckCode::AR,
            AckCode::CA,
            AckCode::CE,
            AckCode::CR,
        ] {
            let error = AckError {
                code: ErrorCode::UnsupportedMessageType,
                location: Some(ErrorLocation::msh_field(9)),
                message: "no route for this type".into(),
            };
            let ack = build_ack(&m, &content(code, &ts, Some(&error)));
            let r = ReceivedAck::parse(&ack, &opts()).expect("reads back");
            assert_eq!(r.code, code);
            assert!(r.acknowledges(&m.identity().control_id));
            assert_eq!(r.errors.len(), 1);
            assert_eq!(r.errors[0].code, "200");
            assert_eq!(r.errors[0].location, "MSH^1^9");
        }
    }
}

// ---- properties ----

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_any_entry_point(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let ts = now();
        let _ = split_batch(&data);
        let _ = ReceivedAck::parse(&data, &opts());
        match Message::parse(&data, &opts()) {
            Ok(m) => {
                for s in m.segments() {
                    for n in 0..=s.field_count() + 1 {
                        if let Some(f) = s.field(n) {
                            let _ = f.value();
                            for r in f.repetitions() {
                                let _ = r.component(2).and_then(|c| c.subcomponent(2)).map(|v| v.value());
                            }
                        }
                    }
                }
                let _ = build_ack(&m, &content(AckCode::AA, &ts, None));
            }
            Err(e) => {
                let error = AckError::from(&e);
                let ack = build_ack_for_unreadable(&data, &content(AckCode::AE, &ts, Some(&error)), &opts());
                prop_assert!(Message::parse(&ack, &opts()).is_ok(), "{:?}", String::from_utf8_lossy(&ack));
            }
        }
    }

    #[test]
    fn bytes_after_a_valid_msh_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = b"MSH|^~\\&#|A|B|C|D|1||ORU^R01|9|P|2.7|||||".to_vec();
        data.extend_from_slice(&tail);
        if let Ok(m) = Message::parse(&data, &opts()) {
            for s in m.segments() {
                for n in 1..=s.field_count() {
                    let _ = s.field(n).map(|f| f.value());
                }
            }
        }
    }

    #[test]
    fn any_text_escaped_into_a_field_decodes_back(text in "\\PC{0,40}", charset_i in 0usize..2) {
        let (cs, name) = [(Charset::Utf8, "UNICODE UTF-8"), (Charset::Windows1252, "")][charset_i];
        let text: String = if cs == Charset::Utf8 { text } else {
            text.chars().filter(|c| c.is_ascii()).collect()
        };
        let seps = Separators { truncation: Some('#'), ..Separators::default() };
        let msg = format!(
            "MSH|^~\\&#|A|B|C|D|1||ORU^R01|9|P|2.7|||||DEU|{name}\rOBX|1|ST|x||{}\r",
            escape(&text, &seps)
        );
        let m = Message::parse(&cs.encode(&msg), &opts()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = m.segment("OBX").and_then(|s| s.field(5)).map(|v| v.value().into_owned());
        prop_assert_eq!(got, Some(text));
    }

    #[test]
    fn acks_answer_any_control_id(control in "[A-Za-z0-9.\\-_|^~&\\\\ ]{1,30}") {
        let seps = Separators::default();
        let msg = format!(
            "MSH|^~\\&|A|B|C|D|1||ORU^R01|{}|P|2.5.1\r",
            escape(&control, &seps)
        );
        if let Ok(m) = Message::parse(msg.as_bytes(), &opts()) {
            let ts = now();
            let ack = build_ack(&m, &content(AckCode::AA, &ts, None));
            let r = ReceivedAck::parse(&ack, &opts()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(r.acknowledges(&m.identity().control_id));
        }
    }
}

#[test]
fn a_line_break_inside_msh_ends_it_rather_than_being_data() {
    // After any other segment this LF would be data; MSH never holds one.
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ORU^R01|7|P|2.7|||AL|x\nyz||8859/1\rPID|1||7||M\xfcller\r";
    assert_eq!(err_of(bytes), ParseError::InvalidSegment { index: 1 });
    let ok = b"MSH|^~\\&|A|B|C|D|1||ORU^R01|7|P|2.7|||AL|NE||8859/1\nPID|1||7||M\xfcller\r";
    let m = parse(ok);
    assert_eq!(m.charset(), Charset::Latin1);
    assert_eq!(raw(&m, "PID", 5), "Müller");
}

#[test]
fn an_ack_for_an_invalid_segment_names_the_error_without_a_fake_location() {
    let bytes = b"MSH|^~\\&|LIS|LAB|ECKO|HOSP|1||ORU^R01|M5|P|2.5.1\rnot a segment\r";
    let e = err_of(bytes);
    let ts = now();
    let error = AckError::from(&e);
    let ack = build_ack_for_unreadable(bytes, &content(AckCode::AE, &ts, Some(&error)), &opts());
    let a = parse(&ack);
    assert_eq!(raw(&a, "MSA", 2), "M5");
    assert_eq!(raw(&a, "ERR", 2), "");
    assert_eq!(raw(&a, "ERR", 3), "100^Segment sequence error^HL70357");
    assert_eq!(
        val(&a, "ERR", 8),
        "segment 2 does not start with a valid segment id"
    );
}

#[test]
fn an_ack_for_input_without_a_readable_control_id_names_none_with_the_hl7_null() {
    let now = jiff::Zoned::now();
    let content = AckContent {
        code: AckCode::AE,
        control_id: "GW1",
        timestamp: &now,
        text: None,
        error: None,
    };
    for raw in [
        &b"PID|1||4711\r"[..],
        b"MSH|^~\\&|A|B|C|D|2026||ORU^R01||P|2.5.1\r",
    ] {
        let ack = build_ack_for_unreadable(raw, &content, &ParseOptions::default());
        let text = String::from_utf8(ack).unwrap();
        assert!(text.contains("\rMSA|AE|\"\"\r"), "{text}");
    }
}

#[test]
fn a_byte_invalid_in_the_declared_charset_is_located_by_segment_and_field() {
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1||||||UNICODE UTF-8\rPID|1||7||M\xfcller^Hans\rOBX|1|ST|C||ok\rOBX|2|ST|C||bad \xfc\r";
    let m = parse(bytes);
    assert!(m.had_decode_errors());
    let at = m.invalid_text().unwrap();
    assert_eq!(
        (at.segment_id.as_str(), at.sequence, at.field),
        ("PID", 1, Some(5))
    );
    let later = parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1||||||UNICODE UTF-8\rOBX|1|ST|C||ok\rOBX|2|ST|C||bad \xfc\r");
    let at = later.invalid_text().unwrap();
    assert_eq!(
        (at.segment_id.as_str(), at.sequence, at.field),
        ("OBX", 2, Some(5))
    );
    // Valid UTF-8, and charsets in which every byte is a character, have
    // nothing to locate.
    assert!(parse(
        "MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1||||||UNICODE UTF-8\rPID|1||7||Müller\r".as_bytes()
    )
    .invalid_text()
    .is_none());
    assert!(
        parse(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1\rPID|1||7||M\xfcller\r")
            .invalid_text()
            .is_none()
    );
    // The endpoint's fallback counts when MSH-18 is empty.
    let utf8 = ParseOptions {
        fallback_charset: Charset::Utf8,
    };
    let m = Message::parse(
        b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1\rPID|1||7||M\xfcller\r",
        &utf8,
    )
    .unwrap();
    assert_eq!(m.invalid_text().map(|l| l.field), Some(Some(5)));
}

#[test]
fn header_problems_are_rejected_and_content_errors_are_errors() {
    let header = [
        &b""[..],
        b"PID|1||4711\r",
        b"MSH|^~\r",
        b"MSH|^~\\&|A|B|C|D|1|||9|P|2.5.1\r",
        b"MSH|^~\\&|A|B|C|D|1||ORU^R01||P|2.5.1\r",
        b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1||||||KLINGON\r",
    ];
    for bytes in header {
        let e = err_of(bytes);
        assert_eq!(e.outcome(), Outcome::Rejected, "{e}");
    }
    let content = err_of(b"MSH|^~\\&|A|B|C|D|1||ORU^R01|9|P|2.5.1\rPID|1\rthis is not a segment\r");
    assert_eq!(content.outcome(), Outcome::Error, "{content}");
}

#[test]
fn a_version_or_processing_id_hl7_does_not_define_is_unsupported() {
    let with = |msh11: &str, msh12: &str| {
        parse(format!("MSH|^~\\&|A|B|C|D|1||ORU^R01|9|{msh11}|{msh12}\r").as_bytes()).check_header()
    };
    for ok in [
        ("P", "2.5.1"),
        ("T", "2.3"),
        ("D", "2.8.2"),
        ("", ""),
        ("P", "2.9"),
    ] {
        assert_eq!(with(ok.0, ok.1), Ok(()), "{ok:?}");
    }
    let e = with("P", "3.0").unwrap_err();
    assert_eq!(
        (e.error_code().code(), e.location().unwrap().field),
        (203, Some(12))
    );
    assert_eq!(e.outcome(), Outcome::Rejected);
    let e = with("X", "2.5.1").unwrap_err();
    assert_eq!(
        (e.error_code().code(), e.location().unwrap().field),
        (202, Some(11))
    );
    assert!(with("P", "2.5.x").is_err());
    assert!(with("P", "V2.5").is_err());
}
