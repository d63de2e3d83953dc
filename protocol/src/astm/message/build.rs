//! The way back: the records of the messages the gateway sends to an
//! analyzer (order downloads and host-query answers), every text escaped
//! with the default delimiters and trailing empty fields left off.

use jiff::Zoned;

use super::format_timestamp;
use crate::astm::records::Delimiters;

/// What the gateway writes into H when it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpec {
    /// H-5 components, e.g. `["ECKO", "1.0"]`.
    pub sender: Vec<String>,
    /// H-10.
    pub receiver_id: String,
    /// H-12, usually `P`.
    pub processing_id: String,
    /// H-13, e.g. `LIS2-A2`.
    pub version: String,
    /// H-14, already in the site's zone.
    pub timestamp: Option<Zoned>,
}

impl Default for HeaderSpec {
    fn default() -> Self {
        HeaderSpec {
            sender: vec!["ECKO-EDGE".to_string()],
            receiver_id: String::new(),
            processing_id: "P".to_string(),
            version: "LIS2-A2".to_string(),
            timestamp: None,
        }
    }
}

/// One order to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
    /// O-3.
    pub specimen_id: String,
    /// O-4 (often empty when downloading).
    pub instrument_specimen_id: String,
    /// O-5: local test codes, sent as `^^^CODE`, repeated.
    pub tests: Vec<String>,
    /// O-6: `R` routine, `S` stat.
    pub priority: String,
    /// O-7, in the site's zone.
    pub requested_at: Option<Zoned>,
    /// O-8, in the site's zone.
    pub collected_at: Option<Zoned>,
    /// O-12: `N` new, `A` add, `C` cancel.
    pub action_code: String,
    /// O-16.
    pub specimen_descriptor: String,
    /// O-26: `O` order, or `Y`/`Z` in answers without orders.
    pub report_type: String,
}

impl Default for OrderSpec {
    fn default() -> Self {
        OrderSpec {
            specimen_id: String::new(),
            instrument_specimen_id: String::new(),
            tests: Vec::new(),
            priority: "R".to_string(),
            requested_at: None,
            collected_at: None,
            action_code: "N".to_string(),
            specimen_descriptor: String::new(),
            report_type: "O".to_string(),
        }
    }
}

/// A patient and their orders to download.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientSpec {
    /// P-3.
    pub practice_patient_id: String,
    /// P-4.
    pub laboratory_patient_id: String,
    /// P-6 components.
    pub name: Vec<String>,
    /// P-8 as `YYYYMMDD`.
    pub birthdate: String,
    /// P-9.
    pub sex: String,
    pub orders: Vec<OrderSpec>,
}

fn record_line(kind: char, fields: Vec<String>, d: &Delimiters) -> Vec<u8> {
    let mut fields = fields;
    while fields.last().is_some_and(String::is_empty) {
        fields.pop();
    }
    let mut line = kind.to_string();
    for f in fields {
        line.push(d.field);
        line.push_str(&f);
    }
    line.into_bytes()
}

fn components(values: &[String], d: &Delimiters) -> String {
    values
        .iter()
        .map(|v| d.escape(v))
        .collect::<Vec<_>>()
        .join(&d.component.to_string())
}

fn header_line(spec: &HeaderSpec, d: &Delimiters) -> Vec<u8> {
    let mut line = format!("H{}{}", d.field, d.header_text());
    let fields = [
        String::new(),                 // H-3
        String::new(),                 // H-4
        components(&spec.sender, d),   // H-5
        String::new(),                 // H-6
        String::new(),                 // H-7
        String::new(),                 // H-8
        String::new(),                 // H-9
        d.escape(&spec.receiver_id),   // H-10
        String::new(),                 // H-11
        d.escape(&spec.processing_id), // H-12
        d.escape(&spec.version),       // H-13
        spec.timestamp
            .as_ref()
            .map(format_timestamp)
            .unwrap_or_default(), // H-14
    ];
    let last = fields.iter().rposition(|f| !f.is_empty());
    if let Some(last) = last {
        for f in &fields[..=last] {
            line.push(d.field);
            line.push_str(f);
        }
    }
    line.into_bytes()
}

fn order_line(seq: usize, o: &OrderSpec, d: &Delimiters) -> Vec<u8> {
    let tests = o
        .tests
        .iter()
        .map(|t| format!("{c}{c}{c}{}", d.escape(t), c = d.component))
        .collect::<Vec<_>>()
        .join(&d.repeat.to_string());
    // Fields O-2 .. O-26; index = field number - 2.
    let mut f = vec![String::new(); 25];
    f[0] = seq.to_string();
    f[1] = d.escape(&o.specimen_id);
    f[2] = d.escape(&o.instrument_specimen_id);
    f[3] = tests;
    f[4] = d.escape(&o.priority);
    f[5] = o
        .requested_at
        .as_ref()
        .map(format_timestamp)
        .unwrap_or_default();
    f[6] = o
        .collected_at
        .as_ref()
        .map(format_timestamp)
        .unwrap_or_default();
    f[10] = d.escape(&o.action_code);
    f[14] = d.escape(&o.specimen_descriptor);
    f[24] = d.escape(&o.report_type);
    record_line('O', f, d)
}

/// Records for an order download (or a host-query answer with orders):
/// H, then per patient P and its O records, then `L|1|N`.
pub fn build_order_message(header: &HeaderSpec, patients: &[PatientSpec]) -> Vec<Vec<u8>> {
    let d = Delimiters::default();
    let mut out = vec![header_line(header, &d)];
    for (pi, p) in patients.iter().enumerate() {
        let mut f = vec![String::new(); 8];
        f[0] = (pi + 1).to_string();
        f[1] = d.escape(&p.practice_patient_id);
        f[2] = d.escape(&p.laboratory_patient_id);
        f[4] = components(&p.name, &d);
        f[6] = d.escape(&p.birthdate);
        f[7] = d.escape(&p.sex);
        out.push(record_line('P', f, &d));
        for (oi, o) in p.orders.iter().enumerate() {
            out.push(order_line(oi + 1, o, &d));
        }
    }
    out.push(record_line('L', vec!["1".into(), "N".into()], &d));
    out
}

/// The answer to a host query for which no orders exist: `H` and
/// `L|1|I`.
///
/// LIS02-A2 gives two ways to say "nothing for you": an O record with
/// report type (O-26) `Y` ("no order on record for this test") or `Z` ("no
/// record of this patient"), or the terminator code `I` ("no information
/// available from last query"). We send the terminator form: it needs no
/// invented patient or order, it answers a query for a range as well as
/// one for a single specimen, and analyzers that only look for O records
/// simply find none. A profile that needs the O-26 form can build it with
/// [`build_order_message`] and `report_type: "Y"`.
pub fn build_no_information(header: &HeaderSpec) -> Vec<Vec<u8>> {
    let d = Delimiters::default();
    vec![
        header_line(header, &d),
        record_line('L', vec!["1".into(), "I".into()], &d),
    ]
}

/// The answer to a host query that could not be understood: `H` and
/// `L|1|Q` (LIS02-A2 termination code Q, "error in last request for
/// information").
pub fn build_query_error(header: &HeaderSpec) -> Vec<Vec<u8>> {
    let d = Delimiters::default();
    vec![
        header_line(header, &d),
        record_line('L', vec!["1".into(), "Q".into()], &d),
    ]
}
