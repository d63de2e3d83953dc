//! The FHIR transforms alone: messages/s and resources/s.
//!
//! `cargo bench -p ecko-gateway --bench fhir_transform [-- --quick]`
//!
//! Maps realistic result messages to their JSON transaction Bundle, as the
//! delivery worker does for each queued message (parse, map, serialise):
//! an HL7 v2 ORU^R01 with 4 results, one with 20 results (a full blood
//! count with differential), and an ASTM chemistry message with 4 results.

use ecko_fhir::TransformContext;
use ecko_message::StoredMessage;
use std::time::{Duration, Instant};

fn stored(source: &str, message_type: &str, payload: Vec<u8>) -> StoredMessage {
    StoredMessage {
        id: 1,
        received_at: 1_773_000_000_000,
        envelope: ecko_message::Envelope {
            source: source.into(),
            dedup_key: Some("bench".into()),
            message_type: message_type.into(),
            content_type: "x".into(),
            control_id: None,
            patient_id: None,
            payload,
            ack: None,
            hints: Default::default(),
        },
    }
}

/// An ORU^R01 with `results` OBX segments.
fn oru(results: usize) -> Vec<u8> {
    let mut m = String::from(
        "MSH|^~\\&|XN-1000^SYSMEX^L|HEMA|LIS|HOSP|20260314093015+0100||ORU^R01^ORU_R01|B1|P|2.5.1\r\
PID|1||4711^^^HOSP^MR||Doe^John^^^^^L||19650412|M\r\
PV1|1|I|ICU^12^1\r\
ORC|RE|ORD0001^LIS|SPC0001^XN-1000\r\
OBR|1|ORD0001^LIS|SPC0001^XN-1000|58410-2^CBC panel^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r",
    );
    for i in 0..results {
        m.push_str(&format!(
            "OBX|{n}|NM|{code}^Result {n}^LN||{v}.{d}|10*3/uL^10*3/uL^UCUM|4.0-10.0|N|||F|||20260314092900+0100\r",
            n = i + 1,
            code = 6690 + i,
            v = 5 + i % 7,
            d = i % 10
        ));
    }
    m.push_str("NTE|1|L|Platelet clumps seen\\E\\ recount suggested\r");
    m.into_bytes()
}

fn astm() -> Vec<u8> {
    b"H|\\^&|||cobas c311^1.05^SN1234|||||HOST||P|LIS2-A2|20260115083012\r\
P|1||PID00123||Doe^Jane||19700412|F\r\
O|1|SID4711|^17^3|^^^GLU\\^^^CREA\\^^^NA\\^^^K|R|20260115080000|20260115075500||||N||||SERUM||||||||||F\r\
R|1|^^^GLU|5.4|mmol/L|3.9 to 6.1|N||F||OPER1^SUP2|20260115081000|20260115082500|c311-01\r\
C|1|I|Sample slightly lipemic^LIP|G\r\
R|2|^^^CREA|132|umol/L|59 to 104|H||F||OPER1|20260115081000|20260115082530|c311-01\r\
R|3|^^^NA|141|mmol/L|136 to 145|N||F||OPER1|20260115081000|20260115082600|c311-01\r\
R|4|^^^K|5.9|mmol/L|3.5 to 5.1|H||F||OPER1|20260115081000|20260115082600|c311-01\r\
L|1|N\r"
        .to_vec()
}

fn measure(
    cx: &TransformContext,
    name: &str,
    transform: &str,
    message: &StoredMessage,
    run: Duration,
) {
    let out = ecko_fhir::apply(transform, message, cx).expect("the sample maps");
    let bundle: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let resources = bundle["entry"].as_array().map_or(0, Vec::len);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        for _ in 0..100 {
            std::hint::black_box(
                ecko_fhir::apply(transform, std::hint::black_box(message), cx).unwrap(),
            );
        }
        n += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<34} {:>9.0} messages/s {:>10.0} resources/s ({resources} per Bundle, {} bytes)",
        n as f64 / secs,
        (n * resources as u64) as f64 / secs,
        out.len()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run = Duration::from_millis(if quick { 300 } else { 3000 });
    let berlin = TransformContext::new(jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb"));
    measure(
        &berlin,
        "HL7 ORU^R01, 4 results",
        "hl7v2-fhir",
        &stored("hema", "ORU^R01", oru(4)),
        run,
    );
    measure(
        &berlin,
        "HL7 ORU^R01, 20 results",
        "hl7v2-fhir",
        &stored("hema", "ORU^R01", oru(20)),
        run,
    );
    measure(
        &berlin,
        "ASTM chemistry, 4 results",
        "astm-fhir",
        &stored("c311", "ASTM", astm()),
        run,
    );
}
