//! Acknowledgements: deciding, building and reading them.
//!
//! Modes (HL7 v2 chapter 2):
//!
//! - Original mode, when MSH-15 and MSH-16 are both empty: every message gets
//!   one acknowledgement, `AA` (stored), `AE` (not valid HL7, or an error in
//!   its content) or `AR` (cannot take it now, or not accepted by any route).
//! - Enhanced mode, when either is valued: an accept (commit) acknowledgement
//!   `CA`/`CE`/`CR` is sent according to MSH-15 (`AL` always, `NE` never,
//!   `ER` only on error or reject, `SU` only on success). An empty or unknown
//!   MSH-15 in enhanced mode is read as `AL` (a sender that did not ask for
//!   one ignores it; one that did would otherwise wait forever). The same
//!   holds for input too broken to parse, as far as MSH-15/16 can still be
//!   read from its raw MSH ([`unreadable_ack_code`]).
//! - The application acknowledgement `AA`/`AE`/`AR` (MSH-16; empty or
//!   unknown reads as `NE`) is sent only for messages taken by a route with
//!   `application_ack`, once the route's destination has delivered the
//!   message (`AA`), refused it for good (`AE`) or never taken it before the
//!   retry budget ran out (`AR`). It is a new message
//!   ([`build_application_ack`]): its own MSH-10, MSA-2 naming the
//!   original, and MSH-15 `AL` / MSH-16 `NE` so the receiver answers it with
//!   a `CA`. The gateway journals it and delivers it to the route's reply
//!   endpoint like any other message; nothing here sends it.
//!
//! An ACK reuses the original's separators, so MSH-3..6, MSH-10, MSH-11 and
//! MSH-12 are copied raw (their escapes stay valid) and MSH-18 is copied so
//! the bytes go back in the sender's character set. MSA-2 is the original
//! MSH-10, or the HL7 null `""` when none could be read. ERR follows v2.5+ (ERR-2
//! location, ERR-3 table 0357 code, ERR-4 severity, ERR-8 user message); for
//! v2.1..v2.4 senders ERR-1 (ELD) is written instead, since those versions
//! have no ERR-2..8. MSH-9 is `ACK^<trigger>^ACK`, or `ACK^<trigger>` before
//! v2.3.1, which had no message structure component.

use jiff::Zoned;
use thiserror::Error;

use super::escape::escape;
use super::parse::{raw_msh_fields, trim_start, ErrorCode, ErrorLocation, Identity};
use super::{Charset, Message, ParseError, ParseOptions, Separators};

/// MSA-1 acknowledgement codes (HL7 table 0008).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept (original mode, or enhanced application ACK).
    AA,
    /// Application error.
    AE,
    /// Application reject.
    AR,
    /// Commit accept (enhanced mode).
    CA,
    /// Commit error.
    CE,
    /// Commit reject.
    CR,
}

impl AckCode {
    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// Read a code, ignoring case and surrounding spaces.
    pub fn from_code(code: &str) -> Option<AckCode> {
        Some(match code.trim().to_ascii_uppercase().as_str() {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return None,
        })
    }

    /// Whether this code means the message was taken (`AA` or `CA`).
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// MSH-15/MSH-16 conditions (HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCondition {
    /// `AL`
    Always,
    /// `NE`
    Never,
    /// `ER`: only on error or reject.
    Error,
    /// `SU`: only on success.
    Success,
}

impl AckCondition {
    /// Read a table 0155 code.
    pub fn from_code(code: &str) -> Option<AckCondition> {
        Some(match code.trim().to_ascii_uppercase().as_str() {
            "AL" => AckCondition::Always,
            "NE" => AckCondition::Never,
            "ER" => AckCondition::Error,
            "SU" => AckCondition::Success,
            _ => return None,
        })
    }

    fn wants(self, outcome: Outcome) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::Error => outcome != Outcome::Accepted,
            AckCondition::Success => outcome == Outcome::Accepted,
        }
    }
}

/// Which acknowledgement protocol the sender asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 empty.
    Original,
    /// MSH-15 or MSH-16 valued.
    Enhanced,
}

/// What happened to a message, as far as the acknowledgement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (journal committed).
    Accepted,
    /// Not valid, or an error in its content: the sender should not resend
    /// it unchanged.
    Error,
    /// Cannot be taken now (journal full, endpoint disabled) or not
    /// accepted by any route.
    Rejected,
}

impl Identity {
    /// The acknowledgement mode this message asks for.
    pub fn ack_mode(&self) -> AckMode {
        if self.accept_ack_type.trim().is_empty() && self.application_ack_type.trim().is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced
        }
    }
}

/// The acknowledgement to send when the message has been handled (stored,
/// or refused): `AA`/`AE`/`AR` in original mode, `CA`/`CE`/`CR` in enhanced
/// mode, or `None` when MSH-15 says the sender wants no accept ACK for this
/// outcome.
pub fn accept_ack_code(identity: &Identity, outcome: Outcome) -> Option<AckCode> {
    match identity.ack_mode() {
        AckMode::Original => Some(match outcome {
            Outcome::Accepted => AckCode::AA,
            Outcome::Error => AckCode::AE,
            Outcome::Rejected => AckCode::AR,
        }),
        AckMode::Enhanced => {
            let condition =
                AckCondition::from_code(&identity.accept_ack_type).unwrap_or(AckCondition::Always);
            condition.wants(outcome).then_some(match outcome {
                Outcome::Accepted => AckCode::CA,
                Outcome::Error => AckCode::CE,
                Outcome::Rejected => AckCode::CR,
            })
        }
    }
}

/// The enhanced-mode application acknowledgement to send once the final
/// outcome is known, per MSH-16; always `None` in original mode (the one
/// ACK already was the application ACK).
pub fn application_ack_code(identity: &Identity, outcome: Outcome) -> Option<AckCode> {
    if identity.ack_mode() == AckMode::Original {
        return None;
    }
    let condition =
        AckCondition::from_code(&identity.application_ack_type).unwrap_or(AckCondition::Never);
    condition.wants(outcome).then_some(match outcome {
        Outcome::Accepted => AckCode::AA,
        Outcome::Error => AckCode::AE,
        Outcome::Rejected => AckCode::AR,
    })
}

/// [`accept_ack_code`] for bytes that did not parse (or were too large to
/// read whole): MSH-15 and MSH-16 are read from the raw MSH when its
/// separators can be, so a sender in enhanced mode gets `CE`/`CR` (or
/// nothing, for `NE` and `SU`) rather than an `AE`/`AR` it does not expect.
/// `outcome` is `Error` or `Rejected`.
pub fn unreadable_ack_code(raw: &[u8], outcome: Outcome) -> Option<AckCode> {
    let mut identity = Identity::default();
    let bytes = trim_start(raw);
    if bytes.starts_with(b"MSH") {
        if let Ok(seps) = Separators::from_msh_bytes(bytes) {
            let fields = raw_msh_fields(bytes, &seps);
            let get = |n: usize| {
                let text = salvage(fields.get(n).copied().unwrap_or_default(), &seps);
                text.split(seps.component)
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            identity.accept_ack_type = get(15);
            identity.application_ack_type = get(16);
        }
    }
    accept_ack_code(&identity, outcome)
}

/// A fresh MSH-10 for an acknowledgement the gateway builds: 20 characters
/// (13 digits of Unix milliseconds, 7 of a process-wide counter), within
/// HL7 v2.5's limit and unique across restarts as long as fewer than ten
/// million are made in one millisecond.
pub fn fresh_control_id(now_ms: i64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000_000;
    format!("{:013}{n:07}", now_ms.rem_euclid(10_000_000_000_000))
}

/// The ERR segment content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// ERR-3, table 0357.
    pub code: ErrorCode,
    /// ERR-2.
    pub location: Option<ErrorLocation>,
    /// ERR-8, for a human. Must not carry patient data.
    pub message: String,
}

impl ParseError {
    /// What a receiver answers for input that failed this way: header
    /// problems are rejected (`AR`/`CR`), content errors are errors
    /// (`AE`/`CE`), as HL7 v2 chapter 2 has it.
    pub fn outcome(&self) -> Outcome {
        if self.is_header_problem() {
            Outcome::Rejected
        } else {
            Outcome::Error
        }
    }
}

impl From<&ParseError> for AckError {
    fn from(e: &ParseError) -> Self {
        AckError {
            code: e.error_code(),
            location: e.location(),
            message: e.to_string(),
        }
    }
}

/// What the caller decides for an ACK.
#[derive(Debug, Clone, Copy)]
pub struct AckContent<'a> {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the ACK: a new id.
    pub control_id: &'a str,
    /// MSH-7 of the ACK: now.
    pub timestamp: &'a Zoned,
    /// MSA-3, optional.
    pub text: Option<&'a str>,
    /// ERR segment, optional.
    pub error: Option<&'a AckError>,
}

/// Format a time as HL7 DTM with seconds and offset, e.g.
/// `20260314093000+0100`.
pub fn hl7_timestamp(t: &Zoned) -> String {
    t.strftime("%Y%m%d%H%M%S%z").to_string()
}

/// What an ACK copies from the message it answers; raw values in `seps`.
struct Header {
    seps: Separators,
    charset: Charset,
    msh3: String,
    msh4: String,
    msh5: String,
    msh6: String,
    trigger: String,
    control_id: String,
    msh11: String,
    msh12: String,
    msh18: String,
    version: String,
    /// MSH-15/16 of the ACK itself: `AL`/`NE` for an application ACK, so
    /// the receiver commits it; empty otherwise.
    ack_types: Option<(&'static str, &'static str)>,
}

fn raw_field(msg: &Message, n: usize) -> String {
    msg.msh()
        .field(n)
        .map(|v| v.raw().to_string())
        .unwrap_or_default()
}

/// Build the ACK for a parsed message, encoded in its character set.
pub fn build_ack(original: &Message, content: &AckContent<'_>) -> Vec<u8> {
    render(&header_of(original), content)
}

/// Build an enhanced-mode application acknowledgement (`AA`/`AE`/`AR`) for
/// a message: like [`build_ack`], with MSH-15 `AL` and MSH-16 `NE`, since it
/// travels as a message of its own and its receiver should commit it.
pub fn build_application_ack(original: &Message, content: &AckContent<'_>) -> Vec<u8> {
    let mut header = header_of(original);
    header.ack_types = Some(("AL", "NE"));
    render(&header, content)
}

fn header_of(original: &Message) -> Header {
    let id = original.identity();
    // A version we do not speak is not echoed: the ACK is ours, and a
    // receiver could not read it under a version that does not exist.
    let (msh12, version) = if speaks(&id.version) {
        (raw_field(original, 12), id.version.clone())
    } else {
        ("2.5.1".to_string(), "2.5.1".to_string())
    };
    Header {
        seps: *original.separators(),
        charset: original.charset(),
        msh3: raw_field(original, 3),
        msh4: raw_field(original, 4),
        msh5: raw_field(original, 5),
        msh6: raw_field(original, 6),
        trigger: original
            .msh()
            .field(9)
            .and_then(|f| f.component(2))
            .map(|v| v.raw().to_string())
            .unwrap_or_default(),
        control_id: raw_field(original, 10),
        msh11: raw_field(original, 11),
        msh12,
        msh18: {
            // Copied only when it names the charset we decoded with, so the
            // ACK's bytes and its MSH-18 always agree.
            let msh18 = raw_field(original, 18);
            let seps = original.separators();
            let name = msh18
                .split(seps.repetition)
                .next()
                .unwrap_or_default()
                .split(seps.component)
                .next()
                .unwrap_or_default();
            if Charset::from_hl7_name(name) == Some(original.charset()) {
                msh18
            } else {
                String::new()
            }
        },
        version,
        ack_types: None,
    }
}

/// Whether an ACK may carry the sender's MSH-12: empty, or a v2 version.
fn speaks(version: &str) -> bool {
    let v = version.trim();
    v.is_empty() || super::parse::is_v2_version(v)
}

/// Build an ACK for bytes that did not parse: whatever of MSH can be read
/// from the raw bytes is used (separators, MSH-3..6, trigger, control id,
/// MSH-11/12/18); the rest falls back to `|^~\&`, processing id `P`,
/// version 2.5.1 and the endpoint's fallback charset. The result is always
/// a well-formed ACK.
pub fn build_ack_for_unreadable(
    raw: &[u8],
    content: &AckContent<'_>,
    opts: &ParseOptions,
) -> Vec<u8> {
    let mut header = Header {
        seps: Separators::default(),
        charset: opts.fallback_charset,
        msh3: String::new(),
        msh4: String::new(),
        msh5: String::new(),
        msh6: String::new(),
        trigger: String::new(),
        control_id: String::new(),
        msh11: "P".into(),
        msh12: "2.5.1".into(),
        msh18: String::new(),
        version: "2.5.1".into(),
        ack_types: None,
    };
    let bytes = trim_start(raw);
    if bytes.starts_with(b"MSH") {
        if let Ok(seps) = Separators::from_msh_bytes(bytes) {
            let fields = raw_msh_fields(bytes, &seps);
            let get = |n: usize| salvage(fields.get(n).copied().unwrap_or_default(), &seps);
            header.seps = seps;
            header.msh3 = get(3);
            header.msh4 = get(4);
            header.msh5 = get(5);
            header.msh6 = get(6);
            header.trigger = get(9)
                .split(seps.component)
                .nth(1)
                .unwrap_or_default()
                .to_string();
            header.control_id = get(10);
            let msh11 = get(11);
            if !msh11.is_empty() {
                header.msh11 = msh11;
            }
            let msh12 = get(12);
            let version = msh12.split(seps.component).next().unwrap_or_default();
            if !msh12.is_empty() && speaks(version) {
                header.version = version.to_string();
                header.msh12 = msh12;
            }
            let msh18 = get(18);
            let name = msh18
                .split(seps.repetition)
                .next()
                .unwrap_or_default()
                .split(seps.component)
                .next()
                .unwrap_or_default();
            if let Some(cs) = Charset::from_hl7_name(name) {
                header.charset = cs;
                header.msh18 = msh18;
            }
        }
    }
    render(&header, content)
}

/// A raw field read from bytes we could not parse: printable only, bounded.
fn salvage(raw: &[u8], seps: &Separators) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{FFFD}')
        .take(199)
        .collect();
    // A cut may leave a dangling escape character; drop it so the ACK
    // stays well formed.
    if out.chars().filter(|&c| c == seps.escape).count() % 2 == 1 {
        out.retain(|c| c != seps.escape);
    }
    out
}

fn is_legacy_err(version: &str) -> bool {
    ["2.1", "2.2", "2.3", "2.4"]
        .iter()
        .any(|v| version == *v || version.starts_with(&format!("{v}.")))
}

fn has_no_structure_component(version: &str) -> bool {
    matches!(version, "2.1" | "2.2" | "2.3")
}

fn render(h: &Header, c: &AckContent<'_>) -> Vec<u8> {
    let s = &h.seps;
    let f = s.field;
    let comp = s.component;
    let mut out = String::with_capacity(256);
    out.push_str("MSH");
    out.push(f);
    out.push_str(&s.encoding_characters());
    for v in [&h.msh5, &h.msh6, &h.msh3, &h.msh4] {
        out.push(f);
        out.push_str(v);
    }
    out.push(f);
    // A sender may choose `+` (or `-`) as a separator; the offset's sign
    // must then be escaped like any other data.
    out.push_str(&escape(&hl7_timestamp(c.timestamp), s));
    out.push(f); // MSH-8 security
    out.push(f);
    out.push_str("ACK");
    if !has_no_structure_component(&h.version) {
        out.push(comp);
        out.push_str(&h.trigger);
        out.push(comp);
        out.push_str("ACK");
    } else if !h.trigger.is_empty() {
        out.push(comp);
        out.push_str(&h.trigger);
    }
    out.push(f);
    out.push_str(&escape(c.control_id, s));
    out.push(f);
    out.push_str(&h.msh11);
    out.push(f);
    out.push_str(&h.msh12);
    if h.ack_types.is_some() || !h.msh18.is_empty() {
        // MSH-13 and 14 empty, MSH-15 and 16, MSH-17 empty, MSH-18.
        let (accept, application) = h.ack_types.unwrap_or_default();
        for v in ["", "", accept, application] {
            out.push(f);
            out.push_str(v);
        }
        if !h.msh18.is_empty() {
            out.push(f);
            out.push(f);
            out.push_str(&h.msh18);
        }
    }
    out.push('\r');

    out.push_str("MSA");
    out.push(f);
    out.push_str(c.code.as_str());
    out.push(f);
    // The control id as far as it could be read. MSA-2 is required, so
    // input without a readable MSH-10 gets the HL7 null `""`, which says
    // "none" where an empty field would make the ACK invalid (hl7apy's
    // strict validation refuses it).
    if h.control_id.is_empty() {
        out.push_str("\"\"");
    } else {
        out.push_str(&h.control_id);
    }
    if let Some(text) = c.text {
        out.push(f);
        out.push_str(&escape(text, s));
    }
    out.push('\r');

    if let Some(err) = c.error {
        let code = err.code.code().to_string();
        let text = err.code.text();
        // A location without a segment id cannot be written as ERL.
        let located = err.location.as_ref().filter(|l| !l.segment_id.is_empty());
        out.push_str("ERR");
        out.push(f);
        if is_legacy_err(&h.version) {
            // ERR-1 ELD: segment^sequence^field^code&text&HL70357
            if let Some(loc) = located {
                out.push_str(&escape(&loc.segment_id, s));
                out.push(comp);
                out.push_str(&loc.sequence.to_string());
                out.push(comp);
                if let Some(field) = loc.field {
                    out.push_str(&field.to_string());
                }
            } else {
                out.push(comp);
                out.push(comp);
            }
            out.push(comp);
            out.push_str(&code);
            out.push(s.subcomponent);
            out.push_str(text);
            out.push(s.subcomponent);
            out.push_str("HL70357");
        } else {
            // ERR-1 empty, ERR-2 location.
            out.push(f);
            if let Some(loc) = located {
                out.push_str(&escape(&loc.segment_id, s));
                out.push(comp);
                out.push_str(&loc.sequence.to_string());
                if let Some(field) = loc.field {
                    out.push(comp);
                    out.push_str(&field.to_string());
                }
            }
            // ERR-3 code, ERR-4 severity.
            out.push(f);
            out.push_str(&code);
            out.push(comp);
            out.push_str(text);
            out.push(comp);
            out.push_str("HL70357");
            out.push(f);
            out.push('E');
            // ERR-5..7 empty, ERR-8 user message.
            if !err.message.is_empty() {
                for _ in 0..4 {
                    out.push(f);
                }
                out.push_str(&escape(&err.message, s));
            }
        }
        out.push('\r');
    }
    h.charset.encode(&out)
}

/// One ERR segment of a received ACK (raw values, v2.5+ or legacy ERR-1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedError {
    /// ERR-2 (or the location part of ERR-1), raw, e.g. `PID^1^5`.
    pub location: String,
    /// ERR-3.1 (or ERR-1.4.1), e.g. `101`.
    pub code: String,
    /// ERR-3.2 (or ERR-1.4.2).
    pub code_text: String,
    /// ERR-4, e.g. `E`.
    pub severity: String,
    /// ERR-8, decoded.
    pub message: String,
}

/// An acknowledgement received from a far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAck {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2: the control id of the message it answers.
    pub control_id: String,
    /// MSA-3, decoded; empty when absent.
    pub text: String,
    /// ERR segments.
    pub errors: Vec<ReceivedError>,
    /// The ACK's own MSH identity (MSH-10 may be empty).
    pub identity: Identity,
}

/// Why a received ACK could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AckParseError {
    /// Not readable HL7.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// No MSA segment.
    #[error("acknowledgement has no MSA segment")]
    MissingMsa,
    /// MSA-1 is not a table 0008 code.
    #[error("MSA-1 {0:?} is not an acknowledgement code")]
    BadCode(String),
    /// MSA-2 is empty.
    #[error("MSA-2 (acknowledged control id) is empty")]
    MissingControlId,
}

impl ReceivedAck {
    /// Read an ACK. MSH-9 and MSH-10 of the ACK itself are not enforced:
    /// only MSA matters to the sender.
    pub fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<ReceivedAck, AckParseError> {
        let msg = Message::parse_with(bytes, opts, false)?;
        let msa = msg.segment("MSA").ok_or(AckParseError::MissingMsa)?;
        let value = |n: usize| {
            msa.field(n)
                .map(|v| v.value().trim().to_string())
                .unwrap_or_default()
        };
        let raw_code = value(1);
        let code = AckCode::from_code(&raw_code)
            .ok_or_else(|| AckParseError::BadCode(raw_code.chars().take(16).collect()))?;
        let control_id = value(2);
        if control_id.is_empty() {
            return Err(AckParseError::MissingControlId);
        }
        let errors = msg
            .segments_by_id("ERR")
            .map(|err| {
                let raw = |n: usize| {
                    err.field(n)
                        .map(|v| v.raw().to_string())
                        .unwrap_or_default()
                };
                let comp = |n: usize, c: usize| {
                    err.field(n)
                        .and_then(|v| v.component(c))
                        .map(|v| v.value().into_owned())
                        .unwrap_or_default()
                };
                let mut e = ReceivedError {
                    location: raw(2),
                    code: comp(3, 1),
                    code_text: comp(3, 2),
                    severity: raw(4),
                    message: err
                        .field(8)
                        .map(|v| v.value().into_owned())
                        .unwrap_or_default(),
                };
                if e.location.is_empty() && e.code.is_empty() {
                    // Legacy ERR-1 (ELD): segment^sequence^field^code&text.
                    if let Some(eld) = err.field(1) {
                        let part = |c: usize| {
                            eld.component(c)
                                .map(|v| v.raw().to_string())
                                .unwrap_or_default()
                        };
                        e.location = [part(1), part(2), part(3)]
                            .join(&msg.separators().component.to_string())
                            .trim_end_matches(msg.separators().component)
                            .to_string();
                        let code = eld.component(4);
                        e.code = code
                            .and_then(|v| v.subcomponent(1))
                            .map(|v| v.value().into_owned())
                            .unwrap_or_default();
                        e.code_text = code
                            .and_then(|v| v.subcomponent(2))
                            .map(|v| v.value().into_owned())
                            .unwrap_or_default();
                    }
                }
                e
            })
            .collect();
        Ok(ReceivedAck {
            code,
            control_id,
            text: value(3),
            errors,
            identity: msg.identity().clone(),
        })
    }

    /// Whether this ACK answers the message sent with `control_id`.
    pub fn acknowledges(&self, control_id: &str) -> bool {
        self.control_id == control_id.trim()
    }
}
