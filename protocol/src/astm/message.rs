//! An ASTM message (`H` … `L`) as a tree, plus the way back: building order
//! and no-information messages for the link layer to send.
//!
//! ```text
//! header ─┬─ comments
//!         ├─ patients ─ comments, orders ─ comments, results ─ comments
//!         ├─ queries ─ comments
//!         ├─ other (M, S and unknown records, in order; kept, never fatal)
//!         └─ terminator
//! ```
//!
//! Sequence numbers (field 2) are checked per level: `P` counts 1, 2, … in
//! the message, `O` restarts under each `P`, `R` under each `O`, `C` under
//! each record it annotates, `Q` counts in the message, and `L` is numbered
//! one. A `C` annotates the `H`, `P`, `O`, `R` or `Q` before it; after an `M`,
//! `S` or unknown record it annotates none of those and is kept, in order,
//! with the other records. A break is a
//! [`MessageError::Sequence`] with the record's position, unless
//! [`ParseOptions::check_sequence`] is off for analyzers known to number
//! loosely.
//!
//! ASTM date-times (`YYYYMMDD[HHMM[SS]]`) carry no offset: they are the
//! analyzer's local time, so every timestamp accessor takes the site's time
//! zone.

use jiff::civil::DateTime;
pub use jiff::tz::TimeZone;
pub use jiff::Zoned;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::records::{Delimiters, Field, Record, RecordError, RecordType};

/// Where in a message a problem is: 1-based position of the record in the
/// message and its type letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub index: usize,
    pub record_type: char,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} ({})", self.index, self.record_type)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageError {
    #[error("message has no records")]
    Empty,
    #[error("message does not start with an H record ({0})")]
    MissingHeader(Location),
    #[error("{at}: {source}")]
    Record { at: Location, source: RecordError },
    #[error("{at}: sequence number {found:?} where {expected} was expected")]
    Sequence {
        at: Location,
        expected: u32,
        found: String,
    },
    #[error("{at}: no {needs} record before it")]
    Orphan { at: Location, needs: &'static str },
}

/// Leniency switches for analyzers that bend the standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    pub check_sequence: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            check_sequence: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    #[error("{0:?} is not an ASTM date-time (YYYYMMDD[HHMM[SS]])")]
    Format(String),
    #[error("{value:?} is not a valid local time: {reason}")]
    Invalid { value: String, reason: String },
}

/// Reads an ASTM date-time as local time in `tz`. Empty → `Ok(None)`.
/// Times that fall into a daylight-saving gap or fold are resolved the usual
/// way (later offset in a gap, earlier in a fold).
pub fn parse_timestamp(value: &str, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if !value.bytes().all(|b| b.is_ascii_digit()) || ![8, 12, 14].contains(&value.len()) {
        return Err(TimeError::Format(value.to_string()));
    }
    let num = |range: std::ops::Range<usize>| -> i32 {
        value.get(range).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let invalid = |e: jiff::Error| TimeError::Invalid {
        value: value.to_string(),
        reason: e.to_string(),
    };
    let dt = DateTime::new(
        i16::try_from(num(0..4)).map_err(|_| TimeError::Format(value.to_string()))?,
        num(4..6) as i8,
        num(6..8) as i8,
        num(8..10) as i8,
        num(10..12) as i8,
        num(12..14) as i8,
        0,
    )
    .map_err(invalid)?;
    dt.to_zoned(tz.clone()).map(Some).map_err(invalid)
}

/// The form ASTM writes date-times in, from a time already in the site's
/// zone.
pub fn format_timestamp(at: &Zoned) -> String {
    at.strftime("%Y%m%d%H%M%S").to_string()
}

/// SHA-256 (hex) over the records' text, each followed by CR, in order.
/// Frame numbers, checksums, frame boundaries and the line terminator of
/// raw mode are not included, so the same message sent again in another
/// session, or split differently, hashes the same; a message that differs
/// in any record byte (a corrected result, a new timestamp in H-14) does
/// not.
pub fn content_hash(records: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for r in records {
        h.update(r);
        h.update(b"\r");
    }
    hex::encode(h.finalize())
}

/// Where O-5 and R-3 carry the analyzer's test code.
///
/// LIS02-A2 puts the manufacturer's local code in component 4
/// (`^^^GLU`), but analyzer families differ: some send the code in
/// component 4 followed by a dilution or replicate (`^^^687^1`, Roche
/// cobas style), some leave component 4 empty and send it in component 5
/// followed by a dilution (`^^^^WBC^1`, Sysmex style), some send a number
/// in 4 and the name in 5 (`^^^16^TSH^UNDILUTED`).
///
/// [`TestIdComponent::Auto`] takes the **first** non-empty of components
/// 4, 5 and 6, and when all three are empty component 1 (the universal
/// test id). The first, not the last: what follows the code in every
/// family above is a qualifier (dilution, replicate, aspect), so the last
/// non-empty component would read `^^^687^1` as test `1`. An analyzer
/// whose qualifier comes *before* the code names the component outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TestIdComponent {
    #[default]
    Auto,
    /// Exactly this component (4, 5 or 6).
    At(u8),
}

impl TestIdComponent {
    /// `auto`, `4`, `5` or `6`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            t if t.eq_ignore_ascii_case("auto") => Some(TestIdComponent::Auto),
            "4" => Some(TestIdComponent::At(4)),
            "5" => Some(TestIdComponent::At(5)),
            "6" => Some(TestIdComponent::At(6)),
            _ => None,
        }
    }

    /// How it is written in a content type parameter (`None` for the
    /// default).
    pub fn as_param(&self) -> Option<String> {
        match self {
            TestIdComponent::Auto => None,
            TestIdComponent::At(n) => Some(n.to_string()),
        }
    }
}

/// The content type parameter that records a [`TestIdComponent`] other
/// than `auto` with a stored message: `application/x-astm;
/// test-id-component=5`.
pub const TEST_ID_PARAM: &str = "test-id-component";

/// The [`TestIdComponent`] a content type names (`auto` when it names
/// none or one this build does not know).
pub fn test_id_component_of(content_type: &str) -> TestIdComponent {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(TEST_ID_PARAM))
        .and_then(|(_, v)| TestIdComponent::parse(v.trim().trim_matches('"')))
        .unwrap_or_default()
}

/// Test identifier `^^^CODE^...` (O-5, R-3, Q-5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UniversalTestId {
    /// Component 1: universal test id (usually empty).
    pub universal_id: String,
    /// Component 2: test name.
    pub name: String,
    /// Component 3: test id type.
    pub id_type: String,
    /// Component 4: the manufacturer's local code, e.g. `GLU`.
    pub local_code: String,
    /// Components 5 and later (dilution, replicate, result aspect, or the
    /// code itself in some families: see [`TestIdComponent`]).
    pub extra: Vec<String>,
    /// The whole field (this repeat) as sent, unescaped, delimiters kept.
    pub raw: String,
}

impl UniversalTestId {
    pub fn from_field(field: &Field<'_>) -> Self {
        let mut c = field.components().into_iter();
        UniversalTestId {
            universal_id: c.next().unwrap_or_default(),
            name: c.next().unwrap_or_default(),
            id_type: c.next().unwrap_or_default(),
            local_code: c.next().unwrap_or_default(),
            extra: c.collect(),
            raw: field.text(),
        }
    }

    /// Component `n` (1-based), empty if absent.
    pub fn component(&self, n: usize) -> &str {
        match n {
            1 => &self.universal_id,
            2 => &self.name,
            3 => &self.id_type,
            4 => &self.local_code,
            n if n >= 5 => self.extra.get(n - 5).map_or("", String::as_str),
            _ => "",
        }
    }

    /// The code to map on, by the automatic rule of [`TestIdComponent`].
    pub fn code(&self) -> &str {
        self.code_at(TestIdComponent::Auto)
    }

    /// The code to map on where `at` says it is; empty when that place
    /// is empty (the caller then keeps [`UniversalTestId::raw`]).
    pub fn code_at(&self, at: TestIdComponent) -> &str {
        self.code_position(at)
            .map_or("", |n| self.component(n).trim())
    }

    /// Which component (1-based) holds the code where `at` says it is;
    /// `None` when that place is empty.
    pub fn code_position(&self, at: TestIdComponent) -> Option<usize> {
        let filled = |n: &usize| !self.component(*n).trim().is_empty();
        match at {
            TestIdComponent::At(n) => Some(usize::from(n)).filter(filled),
            TestIdComponent::Auto => [4, 5, 6, 1].into_iter().find(filled),
        }
    }

    /// Whether something other than the code and the test name (a
    /// dilution, a replicate, an id type) is sent: then the field as sent
    /// says more than the code does.
    pub fn has_qualifiers(&self, at: TestIdComponent) -> bool {
        let code = self.code_position(at);
        (1..=4 + self.extra.len())
            .filter(|n| Some(*n) != code && *n != 2)
            .any(|n| !self.component(n).trim().is_empty())
    }

    /// Whether every component is empty (`^^^^`, or nothing).
    pub fn is_blank(&self) -> bool {
        (1..=4 + self.extra.len()).all(|n| self.component(n).trim().is_empty())
    }
}

fn tests_of(field: Field<'_>) -> Vec<UniversalTestId> {
    field
        .repeats()
        .iter()
        .filter(|f| !f.is_empty())
        .map(UniversalTestId::from_field)
        .collect()
}

/// H-5 sender name or id: together with the endpoint, the analyzer's
/// identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderName {
    pub name: String,
    pub software_version: String,
    pub serial_number: String,
    pub interface_version: String,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub record: Record,
    pub comments: Vec<Record>,
}

impl Header {
    pub fn delimiters(&self) -> &Delimiters {
        self.record.delimiters()
    }
    /// H-3.
    pub fn message_control_id(&self) -> String {
        self.record.field(3).text()
    }
    /// H-5.
    pub fn sender(&self) -> SenderName {
        let mut c = self.record.field(5).components().into_iter();
        SenderName {
            name: c.next().unwrap_or_default(),
            software_version: c.next().unwrap_or_default(),
            serial_number: c.next().unwrap_or_default(),
            interface_version: c.next().unwrap_or_default(),
            extra: c.collect(),
        }
    }
    /// H-10.
    pub fn receiver_id(&self) -> String {
        self.record.field(10).text()
    }
    /// H-12: P production, T training, D debugging, Q quality control.
    pub fn processing_id(&self) -> String {
        self.record.field(12).text()
    }
    /// H-13.
    pub fn version(&self) -> String {
        self.record.field(13).text()
    }
    /// H-14, the message's date-time.
    pub fn timestamp(&self, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
        parse_timestamp(&self.record.field(14).text(), tz)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub record: Record,
    pub comments: Vec<Record>,
    pub orders: Vec<Order>,
}

impl Patient {
    /// P-3.
    pub fn practice_patient_id(&self) -> String {
        self.record.field(3).text()
    }
    /// P-4.
    pub fn laboratory_patient_id(&self) -> String {
        self.record.field(4).text()
    }
    /// P-5.
    pub fn patient_id_3(&self) -> String {
        self.record.field(5).text()
    }
    /// P-6 components (last^first^middle^suffix^title).
    pub fn name(&self) -> Vec<String> {
        self.record.field(6).components()
    }
    /// P-8.
    pub fn birthdate(&self) -> String {
        self.record.field(8).text()
    }
    /// P-9: M, F, U.
    pub fn sex(&self) -> String {
        self.record.field(9).text()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub record: Record,
    pub comments: Vec<Record>,
    pub results: Vec<ResultRecord>,
}

impl Order {
    /// O-3 component 1: the specimen id known to the host (barcode).
    pub fn specimen_id(&self) -> String {
        self.record.field(3).component(1)
    }
    /// O-4 component 1: the instrument's own specimen id (rack, position
    /// and the like follow in further components of `record.field(4)`).
    pub fn instrument_specimen_id(&self) -> String {
        self.record.field(4).component(1)
    }
    /// O-5, every repeat.
    pub fn universal_test_ids(&self) -> Vec<UniversalTestId> {
        tests_of(self.record.field(5))
    }
    /// O-6: S stat, A asap, R routine, …
    pub fn priority(&self) -> String {
        self.record.field(6).text()
    }
    /// O-7.
    pub fn requested_at(&self, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
        parse_timestamp(&self.record.field(7).text(), tz)
    }
    /// O-8.
    pub fn collected_at(&self, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
        parse_timestamp(&self.record.field(8).text(), tz)
    }
    /// O-12: A add, N new, Q QC, C cancel, …
    pub fn action_code(&self) -> String {
        self.record.field(12).text()
    }
    /// O-16.
    pub fn specimen_descriptor(&self) -> String {
        self.record.field(16).text()
    }
    /// O-26: O order, F final, X cannot be done, Y no order, Z no patient, …
    pub fn report_type(&self) -> String {
        self.record.field(26).text()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRecord {
    pub record: Record,
    pub comments: Vec<Record>,
}

impl ResultRecord {
    /// R-3.
    pub fn universal_test_id(&self) -> UniversalTestId {
        UniversalTestId::from_field(&self.record.field(3))
    }
    /// R-4, unescaped as sent (numbers stay text: `<0.5`, `>1000`, `POS`).
    pub fn value(&self) -> String {
        self.record.field(4).text()
    }
    /// R-5.
    pub fn units(&self) -> String {
        self.record.field(5).text()
    }
    /// R-6, e.g. `3.9 to 6.1` or `3.9^6.1`.
    pub fn reference_range(&self) -> String {
        self.record.field(6).text()
    }
    /// R-7, every non-empty repeat (L, H, LL, HH, <, >, N, A, …).
    pub fn abnormal_flags(&self) -> Vec<String> {
        self.record
            .field(7)
            .repeats()
            .iter()
            .map(Field::text)
            .filter(|s| !s.is_empty())
            .collect()
    }
    /// R-8.
    pub fn nature_of_abnormality(&self) -> String {
        self.record.field(8).text()
    }
    /// R-9: F final, P preliminary, C correction, X cannot be done, …
    pub fn status(&self) -> String {
        self.record.field(9).text()
    }
    /// R-11 component 1 (the operator; the verifier is component 2).
    pub fn operator(&self) -> String {
        self.record.field(11).component(1)
    }
    /// R-11 component 2.
    pub fn verifier(&self) -> String {
        self.record.field(11).component(2)
    }
    /// R-12.
    pub fn started_at(&self, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
        parse_timestamp(&self.record.field(12).text(), tz)
    }
    /// R-13.
    pub fn completed_at(&self, tz: &TimeZone) -> Result<Option<Zoned>, TimeError> {
        parse_timestamp(&self.record.field(13).text(), tz)
    }
    /// R-14.
    pub fn instrument_id(&self) -> String {
        self.record.field(14).text()
    }
}

/// Comment accessors, on any `C` record.
pub trait CommentExt {
    /// C-3: P practice, L information system, I instrument.
    fn comment_source(&self) -> String;
    /// C-4, components joined by a space.
    fn comment_text(&self) -> String;
    /// C-5: G generic, T test name, P positive, N negative, I instrument flag.
    fn comment_type(&self) -> String;
}

impl CommentExt for Record {
    fn comment_source(&self) -> String {
        self.field(3).text()
    }
    fn comment_text(&self) -> String {
        self.field(4)
            .components()
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
    fn comment_type(&self) -> String {
        self.field(5).text()
    }
}

/// Q-3 / Q-4 range id: `patient id ^ specimen id ^ further components`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryRange {
    pub patient_id: String,
    pub specimen_id: String,
    pub extra: Vec<String>,
}

impl QueryRange {
    fn from_field(field: Field<'_>) -> Self {
        let mut c = field.components().into_iter();
        QueryRange {
            patient_id: c.next().unwrap_or_default(),
            specimen_id: c.next().unwrap_or_default(),
            extra: c.collect(),
        }
    }

    /// `ALL` in either component asks for everything.
    pub fn is_all(&self) -> bool {
        self.patient_id.eq_ignore_ascii_case("ALL") || self.specimen_id.eq_ignore_ascii_case("ALL")
    }
}

fn ranges_of(field: Field<'_>) -> Vec<QueryRange> {
    field
        .repeats()
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(QueryRange::from_field)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub record: Record,
    pub comments: Vec<Record>,
}

impl Query {
    /// Q-3.
    pub fn starting_range(&self) -> QueryRange {
        QueryRange::from_field(self.record.field(3))
    }
    /// Q-4.
    pub fn ending_range(&self) -> QueryRange {
        QueryRange::from_field(self.record.field(4))
    }
    /// Every repeat of Q-3, in order: an analyzer asking for several
    /// specimens at once repeats the starting range id (`^S1\^S2\^S3`).
    pub fn starting_ranges(&self) -> Vec<QueryRange> {
        ranges_of(self.record.field(3))
    }
    /// Every repeat of Q-4, in order (empty when Q-4 is).
    pub fn ending_ranges(&self) -> Vec<QueryRange> {
        ranges_of(self.record.field(4))
    }
    /// Q-5, every repeat (`^^^ALL` asks for all tests).
    pub fn universal_test_ids(&self) -> Vec<UniversalTestId> {
        tests_of(self.record.field(5))
    }
    /// Q-13: O request, A cancel, … (empty usually means a request).
    pub fn request_status(&self) -> String {
        self.record.field(13).text()
    }
}

/// A parsed H..L message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub patients: Vec<Patient>,
    pub queries: Vec<Query>,
    /// M, S and unknown records, in their order.
    pub other: Vec<Record>,
    pub terminator: Option<Record>,
}

/// Which record the next `C` annotates.
#[derive(Clone, Copy)]
enum Anchor {
    Header,
    Patient,
    Order,
    Result,
    Query,
    /// An `M`, `S` or unknown record: its comments stay in `other`.
    Other,
}

fn check_seq(
    record: &Record,
    at: Location,
    expected: u32,
    opts: &ParseOptions,
) -> Result<(), MessageError> {
    if !opts.check_sequence {
        return Ok(());
    }
    let found = record.field(2).text();
    if found.trim().parse::<u32>().ok() == Some(expected) {
        Ok(())
    } else {
        Err(MessageError::Sequence {
            at,
            expected,
            found,
        })
    }
}

impl Message {
    /// Builds the tree from records (without CR), as
    /// [`super::link::Event::MessageComplete`] delivers them.
    pub fn parse(records: &[Vec<u8>], opts: &ParseOptions) -> Result<Message, MessageError> {
        let (first, rest) = records.split_first().ok_or(MessageError::Empty)?;
        let first_loc = Location {
            index: 1,
            record_type: super::records::decode_text(first)
                .chars()
                .next()
                .unwrap_or(' '),
        };
        if first_loc.record_type != 'H' {
            return Err(MessageError::MissingHeader(first_loc));
        }
        let header = Record::parse(first, &Delimiters::default()).map_err(|source| {
            MessageError::Record {
                at: first_loc,
                source,
            }
        })?;
        let d = *header.delimiters();
        let mut msg = Message {
            header: Header {
                record: header,
                comments: Vec::new(),
            },
            patients: Vec::new(),
            queries: Vec::new(),
            other: Vec::new(),
            terminator: None,
        };
        let mut anchor = Anchor::Header;
        let mut comment_seq = 0u32;
        for (i, line) in rest.iter().enumerate() {
            let index = i + 2;
            let record = Record::parse(line, &d).map_err(|source| MessageError::Record {
                at: Location {
                    index,
                    record_type: line.first().map_or(' ', |&b| char::from(b)),
                },
                source,
            })?;
            let at = Location {
                index,
                record_type: record.kind().letter(),
            };
            match record.kind() {
                RecordType::Patient => {
                    check_seq(&record, at, msg.patients.len() as u32 + 1, opts)?;
                    msg.patients.push(Patient {
                        record,
                        comments: Vec::new(),
                        orders: Vec::new(),
                    });
                    anchor = Anchor::Patient;
                    comment_seq = 0;
                }
                RecordType::Order => {
                    let patient = msg
                        .patients
                        .last_mut()
                        .ok_or(MessageError::Orphan { at, needs: "P" })?;
                    check_seq(&record, at, patient.orders.len() as u32 + 1, opts)?;
                    patient.orders.push(Order {
                        record,
                        comments: Vec::new(),
                        results: Vec::new(),
                    });
                    anchor = Anchor::Order;
                    comment_seq = 0;
                }
                RecordType::Result => {
                    let order = msg
                        .patients
                        .last_mut()
                        .and_then(|p| p.orders.last_mut())
                        .ok_or(MessageError::Orphan { at, needs: "O" })?;
                    check_seq(&record, at, order.results.len() as u32 + 1, opts)?;
                    order.results.push(ResultRecord {
                        record,
                        comments: Vec::new(),
                    });
                    anchor = Anchor::Result;
                    comment_seq = 0;
                }
                RecordType::Query => {
                    check_seq(&record, at, msg.queries.len() as u32 + 1, opts)?;
                    msg.queries.push(Query {
                        record,
                        comments: Vec::new(),
                    });
                    anchor = Anchor::Query;
                    comment_seq = 0;
                }
                RecordType::Comment => {
                    comment_seq += 1;
                    check_seq(&record, at, comment_seq, opts)?;
                    let list = match anchor {
                        Anchor::Header => Some(&mut msg.header.comments),
                        Anchor::Patient => msg.patients.last_mut().map(|p| &mut p.comments),
                        Anchor::Order => msg
                            .patients
                            .last_mut()
                            .and_then(|p| p.orders.last_mut())
                            .map(|o| &mut o.comments),
                        Anchor::Result => msg
                            .patients
                            .last_mut()
                            .and_then(|p| p.orders.last_mut())
                            .and_then(|o| o.results.last_mut())
                            .map(|r| &mut r.comments),
                        Anchor::Query => msg.queries.last_mut().map(|q| &mut q.comments),
                        Anchor::Other => None,
                    };
                    match list {
                        Some(list) => list.push(record),
                        None => msg.other.push(record),
                    }
                }
                RecordType::Terminator => {
                    check_seq(&record, at, 1, opts)?;
                    msg.terminator = Some(record);
                }
                RecordType::Header => {
                    return Err(MessageError::Orphan { at, needs: "L" });
                }
                RecordType::Manufacturer | RecordType::Scientific | RecordType::Unknown(_) => {
                    msg.other.push(record);
                    anchor = Anchor::Other;
                    comment_seq = 0;
                }
            }
        }
        Ok(msg)
    }

    /// L-3 termination code: N normal, I no information, Q query error, …
    pub fn termination_code(&self) -> String {
        self.terminator
            .as_ref()
            .map(|l| l.field(3).text())
            .unwrap_or_default()
    }
}

mod build;
pub use build::{
    build_no_information, build_order_message, build_query_error, HeaderSpec, OrderSpec,
    PatientSpec,
};

#[cfg(test)]
pub(crate) mod tests;
