//! Parsing one HL7 v2 message into segments, with positional access.
//!
//! Order of work, and why:
//!
//! 1. A UTF-8 byte order mark and leading blank lines are skipped; the message
//!    must then start with `MSH`.
//! 2. The separators are read from the raw bytes: MSH-1 is the byte after
//!    `MSH`, MSH-2 runs to the next field separator and holds 4 encoding
//!    characters (component, repetition, escape, subcomponent) or 5 from v2.7
//!    on (plus the truncation character, usually `#`, which is data when
//!    parsing and only matters for the `\P\` escape).
//! 3. MSH-18 is read from the raw bytes too (MSH is ASCII up to there) and
//!    picks the character set; the whole message is then decoded to text
//!    before any splitting, so non-ASCII bytes never meet the splitter.
//! 4. Segments are split on `\r`. Sloppy senders use `\n` or `\r\n`, or leave
//!    blank lines: a `\n` right after `\r` is part of the terminator, blank
//!    lines are skipped, and a lone `\n` ends a segment only when what follows
//!    looks like a segment (three-character id, then the field separator or
//!    the end of the line). Otherwise the `\n` is kept as data, because some
//!    systems put raw line breaks inside report text (OBX-5, NTE-3). MSH is
//!    the exception: a line break always ends it, so what MSH holds (MSH-18
//!    above all) reads the same from raw bytes and from the parsed message,
//!    and ACKs never copy a line break.
//! 5. Every segment must start with a valid id (`[A-Z][A-Z0-9]{2}`); a line
//!    that does not is an error rather than something silently dropped.
//!
//! Field numbering follows the standard: for MSH, field 1 is the field
//! separator itself and field 2 the encoding characters (both returned
//! literally, never split or unescaped); MSH-3 is the first field after
//! them. For every other segment, field n is the n-th value after the id.
//!
//! Only MSH-9 (message code) and MSH-10 (control id) are enforced: they are
//! what routing and duplicate detection need. Everything else is read
//! leniently, so one sloppy optional field does not bounce a lab result.

use std::borrow::Cow;

pub use super::error::{ErrorCode, ErrorLocation, ParseError};
use super::escape::unescape;
use super::Charset;

/// The separators a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Separators {
    /// MSH-1, usually `|`.
    pub field: char,
    /// Usually `^`.
    pub component: char,
    /// Usually `~`.
    pub repetition: char,
    /// Usually `\`.
    pub escape: char,
    /// Usually `&`.
    pub subcomponent: char,
    /// v2.7 truncation character, usually `#`, when MSH-2 declares one.
    pub truncation: Option<char>,
}

impl Default for Separators {
    fn default() -> Self {
        Separators {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            truncation: None,
        }
    }
}

impl Separators {
    /// MSH-2 as written: `^~\&`, or `^~\&#` with a truncation character.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(5);
        s.push(self.component);
        s.push(self.repetition);
        s.push(self.escape);
        s.push(self.subcomponent);
        if let Some(t) = self.truncation {
            s.push(t);
        }
        s
    }

    /// Read MSH-1 and MSH-2 from bytes starting with `MSH`.
    pub(crate) fn from_msh_bytes(msh: &[u8]) -> Result<Separators, ParseError> {
        let bad = |reason: &'static str| ParseError::BadSeparators { reason };
        let &field = msh.get(3).ok_or(bad("MSH ends before MSH-1"))?;
        if !is_separator_byte(field) {
            return Err(bad(
                "MSH-1 is not a printable non-alphanumeric ASCII character",
            ));
        }
        let enc: Vec<u8> = msh[4..]
            .iter()
            .copied()
            .take_while(|&b| b != field && b != b'\r' && b != b'\n')
            .collect();
        if enc.len() < 4 {
            return Err(bad("MSH-2 has fewer than 4 encoding characters"));
        }
        if enc.len() > 5 {
            return Err(bad("MSH-2 has more than 5 encoding characters"));
        }
        if !enc.iter().all(|&b| is_separator_byte(b)) {
            return Err(bad("MSH-2 holds a character that cannot be a separator"));
        }
        let mut all = enc.clone();
        all.push(field);
        all.sort_unstable();
        all.dedup();
        if all.len() != enc.len() + 1 {
            return Err(bad("MSH-1 and MSH-2 repeat a separator"));
        }
        Ok(Separators {
            field: field as char,
            component: enc[0] as char,
            repetition: enc[1] as char,
            escape: enc[2] as char,
            subcomponent: enc[3] as char,
            truncation: enc.get(4).map(|&b| b as char),
        })
    }
}

fn is_separator_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b.is_ascii_alphanumeric()
}

/// Per-endpoint parsing settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Charset used when MSH-18 is empty, and for non-ASCII bytes in a
    /// message that claims ASCII.
    pub fallback_charset: Charset,
}

/// What identifies a message: MSH-3..6, 9, 10, 11, 12, 15, 16 (decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// MSH-3.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-9.1, e.g. `ORU`.
    pub message_code: String,
    /// MSH-9.2, e.g. `R01`.
    pub trigger_event: String,
    /// MSH-9.3, e.g. `ORU_R01`.
    pub structure: String,
    /// MSH-10.
    pub control_id: String,
    /// MSH-11.1, e.g. `P`.
    pub processing_id: String,
    /// MSH-12.1, e.g. `2.5.1`.
    pub version: String,
    /// MSH-15.
    pub accept_ack_type: String,
    /// MSH-16.
    pub application_ack_type: String,
}

/// A parsed message. Values borrow from the decoded text it owns.
#[derive(Debug, Clone)]
pub struct Message {
    text: String,
    seps: Separators,
    charset: Charset,
    decode_errors: bool,
    /// Offset of the first byte that was not valid in the charset. The
    /// bytes before it are valid, and decode to the same bytes of `text`
    /// (only UTF-8 and plain ASCII can hold invalid bytes, and both decode
    /// valid input to itself), so it is an offset into `text` too.
    first_invalid: Option<usize>,
    /// (start, end, occurrence) of each segment in `text`.
    spans: Vec<(usize, usize, usize)>,
    identity: Identity,
}

impl Message {
    /// Parse one message.
    pub fn parse(bytes: &[u8], opts: &ParseOptions) -> Result<Message, ParseError> {
        Self::parse_with(bytes, opts, true)
    }

    /// `strict` enforces MSH-9 and MSH-10; received ACKs are read without.
    pub(crate) fn parse_with(
        bytes: &[u8],
        opts: &ParseOptions,
        strict: bool,
    ) -> Result<Message, ParseError> {
        let bytes = trim_start(bytes);
        if bytes.is_empty() {
            return Err(ParseError::Empty);
        }
        if !bytes.starts_with(b"MSH") {
            return Err(ParseError::MissingMsh);
        }
        let seps = Separators::from_msh_bytes(bytes)?;
        let charset = charset_from_raw_msh(bytes, &seps, opts.fallback_charset)?;
        let (text, decode_errors) = charset.decode(bytes, opts.fallback_charset);
        let text = text.into_owned();
        let spans = split_segments(&text, seps.field)?;
        let first_invalid = if decode_errors {
            first_invalid_byte(bytes, charset, opts.fallback_charset)
        } else {
            None
        };
        let mut msg = Message {
            text,
            seps,
            charset,
            decode_errors,
            first_invalid,
            spans,
            identity: Identity::default(),
        };
        msg.identity = msg.read_identity(strict)?;
        Ok(msg)
    }

    fn read_identity(&self, strict: bool) -> Result<Identity, ParseError> {
        let msh = self.msh();
        let whole = |n: usize| {
            msh.field(n)
                .map(|f| f.value().trim().to_string())
                .unwrap_or_default()
        };
        let comp = |n: usize, c: usize| {
            msh.field(n)
                .and_then(|f| f.component(c))
                .map(|v| v.value().trim().to_string())
                .unwrap_or_default()
        };
        let message_code = comp(9, 1);
        if strict && message_code.is_empty() {
            return Err(ParseError::MissingField {
                location: ErrorLocation::msh_field(9),
            });
        }
        let control_id = whole(10);
        if strict && control_id.is_empty() {
            return Err(ParseError::MissingField {
                location: ErrorLocation::msh_field(10),
            });
        }
        Ok(Identity {
            sending_application: whole(3),
            sending_facility: whole(4),
            receiving_application: whole(5),
            receiving_facility: whole(6),
            message_code,
            trigger_event: comp(9, 2),
            structure: comp(9, 3),
            control_id,
            processing_id: comp(11, 1),
            version: comp(12, 1),
            accept_ack_type: whole(15).to_ascii_uppercase(),
            application_ack_type: whole(16).to_ascii_uppercase(),
        })
    }

    /// What a receiver checks in the header beyond parsing: MSH-12 must
    /// be an HL7 v2 version (`2.1` … `2.9`, with or without a third part)
    /// and MSH-11 a processing id of table 0103 (`P`, `D`, `T`). An empty
    /// MSH-11 or MSH-12 is tolerated, as the rest of MSH is.
    pub fn check_header(&self) -> Result<(), ParseError> {
        let id = &self.identity;
        let version = id.version.trim();
        if !version.is_empty() && !is_v2_version(version) {
            return Err(ParseError::UnsupportedVersion {
                version: version.chars().take(32).collect(),
            });
        }
        let processing = id.processing_id.trim();
        if !processing.is_empty() && !matches!(processing, "P" | "D" | "T") {
            return Err(ParseError::UnsupportedProcessingId {
                id: processing.chars().take(32).collect(),
            });
        }
        Ok(())
    }

    /// MSH-derived identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The separators from MSH-1/MSH-2.
    pub fn separators(&self) -> &Separators {
        &self.seps
    }

    /// The charset the message was decoded with.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Whether some bytes could not be decoded and became U+FFFD.
    pub fn had_decode_errors(&self) -> bool {
        self.decode_errors
    }

    /// Where the first byte invalid in the message's character set is, as
    /// the ERR-2 location of the segment and field holding it; `None`
    /// when every byte decoded.
    pub fn invalid_text(&self) -> Option<ErrorLocation> {
        let at = self.first_invalid?;
        // The segment holding it, or the one before when it sits in a
        // terminator or a skipped blank line.
        let index = self
            .spans
            .iter()
            .rposition(|&(start, _, _)| start <= at)
            .unwrap_or(0);
        let &(start, end, occurrence) = self.spans.get(index)?;
        let segment = self.text.get(start..end)?;
        let upto = segment.get(..at.saturating_sub(start).min(segment.len()))?;
        let separators = upto.matches(self.seps.field).count();
        let id: String = segment.chars().take(3).collect();
        // MSH-1 is the field separator itself: MSH's n-th separator
        // starts MSH-(n+1).
        let field = if id == "MSH" {
            separators + 1
        } else {
            separators
        };
        Some(ErrorLocation {
            segment_id: id,
            sequence: occurrence,
            field: (field > 0).then_some(field),
            segment_index: index,
        })
    }

    /// The decoded text, as received (original terminators included).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.spans.len()
    }

    /// All segments in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        (0..self.spans.len()).filter_map(move |i| self.segment_at(i))
    }

    /// The segment at 0-based `index`.
    pub fn segment_at(&self, index: usize) -> Option<Segment<'_>> {
        let &(start, end, occurrence) = self.spans.get(index)?;
        Some(Segment {
            text: self.text.get(start..end)?,
            seps: &self.seps,
            charset: self.charset,
            index,
            occurrence,
        })
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments().find(|s| s.id() == id)
    }

    /// Every segment with this id, in order.
    pub fn segments_by_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = Segment<'a>> + 'a {
        self.segments().filter(move |s| s.id() == id)
    }

    /// The MSH segment.
    pub fn msh(&self) -> Segment<'_> {
        // Parsing guarantees segment 0 exists and is MSH.
        self.segment_at(0).unwrap_or(Segment {
            text: "MSH",
            seps: &self.seps,
            charset: self.charset,
            index: 0,
            occurrence: 1,
        })
    }
}

/// `2.1` … `2.9`, optionally with one more numeric part (`2.5.1`).
pub(crate) fn is_v2_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let major = parts.next() == Some("2");
    let minor = parts
        .next()
        .is_some_and(|m| matches!(m, "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9"));
    let rest: Vec<&str> = parts.collect();
    let patch = rest.len() <= 1
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    major && minor && patch
}

/// The offset of the first byte of `bytes` that `charset` cannot decode.
fn first_invalid_byte(bytes: &[u8], charset: Charset, fallback: Charset) -> Option<usize> {
    match charset {
        Charset::Utf8 => std::str::from_utf8(bytes).err().map(|e| e.valid_up_to()),
        Charset::Ascii if fallback == Charset::Ascii => bytes.iter().position(|b| !b.is_ascii()),
        Charset::Ascii => first_invalid_byte(bytes, fallback, fallback),
        Charset::Latin1 | Charset::Latin9 | Charset::Windows1252 => None,
    }
}

pub(crate) fn trim_start(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let skip = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[skip..]
}

/// The raw fields of the MSH line, indexed by MSH position (index 0 is the
/// segment id, 1 the field separator, 2 the encoding characters).
pub(crate) fn raw_msh_fields<'a>(bytes: &'a [u8], seps: &Separators) -> Vec<&'a [u8]> {
    // MSH never holds a line break as data (see `split_segments`), so the
    // raw MSH line ends where the parsed one does.
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let mut out: Vec<&[u8]> = vec![b"MSH", b""];
    out.extend(line.split(|&b| b == seps.field as u8).skip(1));
    out
}

fn charset_from_raw_msh(
    bytes: &[u8],
    seps: &Separators,
    fallback: Charset,
) -> Result<Charset, ParseError> {
    let fields = raw_msh_fields(bytes, seps);
    let Some(raw) = fields.get(18) else {
        return Ok(fallback);
    };
    let first = raw
        .split(|&b| b == seps.repetition as u8)
        .next()
        .unwrap_or_default();
    let first = first
        .split(|&b| b == seps.component as u8)
        .next()
        .unwrap_or_default();
    let name = String::from_utf8_lossy(first);
    let name = name.trim();
    if name.is_empty() {
        return Ok(fallback);
    }
    Charset::from_hl7_name(name).ok_or_else(|| ParseError::UnsupportedCharset {
        name: name.chars().take(64).collect(),
    })
}

pub(crate) fn is_segment_start(line: &str, field_sep: char) -> bool {
    let mut chars = line.chars();
    let (Some(a), Some(b), Some(c)) = (chars.next(), chars.next(), chars.next()) else {
        return false;
    };
    a.is_ascii_uppercase()
        && (b.is_ascii_uppercase() || b.is_ascii_digit())
        && (c.is_ascii_uppercase() || c.is_ascii_digit())
        && line
            .get(3..)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(field_sep))
}

/// Split decoded text into segment spans (see the module note).
fn split_segments(text: &str, field_sep: char) -> Result<Vec<(usize, usize, usize)>, ParseError> {
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    for chunk in text.split('\r') {
        let chunk_start = pos;
        pos += chunk.len() + 1;
        // A '\n' right after '\r' belongs to the terminator.
        let (mut start, body) = match chunk.strip_prefix('\n') {
            Some(rest) => (chunk_start + 1, rest),
            None => (chunk_start, chunk),
        };
        let mut cur: Option<(usize, usize)> = None;
        for piece in body.split('\n') {
            let end = start + piece.len();
            // MSH fields never carry line breaks, and MSH-18 must be
            // readable from the raw bytes: a line break always ends MSH.
            let in_msh = cur.is_some_and(|(s, _)| text[s..].starts_with("MSH"));
            let new_segment = cur.is_none()
                || in_msh
                || piece.trim().is_empty()
                || is_segment_start(piece, field_sep);
            match cur {
                Some((s, _)) if !new_segment => cur = Some((s, end)),
                Some(done) => {
                    lines.push(done);
                    cur = Some((start, end));
                }
                None => cur = Some((start, end)),
            }
            start = end + 1;
        }
        if let Some(done) = cur {
            lines.push(done);
        }
    }
    let mut spans = Vec::with_capacity(lines.len());
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (start, end) in lines {
        let line = &text[start..end];
        if line.trim().is_empty() {
            continue;
        }
        if !is_segment_start(line, field_sep) {
            return Err(ParseError::InvalidSegment { index: spans.len() });
        }
        let id = &line[..3];
        let occurrence = match seen.iter_mut().find(|(s, _)| *s == id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((id, 1));
                1
            }
        };
        spans.push((start, end, occurrence));
    }
    match spans.first() {
        Some(&(s, _, _)) if text[s..].starts_with("MSH") => Ok(spans),
        _ => Err(ParseError::MissingMsh),
    }
}

/// One segment of a message.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    text: &'a str,
    seps: &'a Separators,
    charset: Charset,
    index: usize,
    occurrence: usize,
}

impl<'a> Segment<'a> {
    /// The segment id, e.g. `PID`.
    pub fn id(&self) -> &'a str {
        self.text.get(..3).unwrap_or(self.text)
    }

    /// 0-based position among all segments.
    pub fn index(&self) -> usize {
        self.index
    }

    /// 1-based occurrence of this id in the message (ERR-2.2).
    pub fn sequence(&self) -> usize {
        self.occurrence
    }

    /// The raw segment text, without terminator.
    pub fn raw(&self) -> &'a str {
        self.text
    }

    fn is_msh(&self) -> bool {
        self.id() == "MSH"
    }

    /// The highest field position present.
    pub fn field_count(&self) -> usize {
        let parts = self.text.split(self.seps.field).count() - 1;
        if self.is_msh() {
            parts + 1
        } else {
            parts
        }
    }

    /// Field `n` (1-based, MSH numbering as in the standard); `None` when
    /// the segment has fewer fields.
    pub fn field(&self, n: usize) -> Option<Value<'a>> {
        if n == 0 {
            return None;
        }
        let value = |raw: &'a str, depth| Value {
            raw,
            seps: self.seps,
            charset: self.charset,
            depth,
        };
        if self.is_msh() {
            match n {
                1 => return self.text.get(3..4).map(|raw| value(raw, Depth::Literal)),
                2 => {
                    return self
                        .text
                        .split(self.seps.field)
                        .nth(1)
                        .map(|raw| value(raw, Depth::Literal))
                }
                _ => {
                    return self
                        .text
                        .split(self.seps.field)
                        .nth(n - 1)
                        .map(|raw| value(raw, Depth::Field))
                }
            }
        }
        self.text
            .split(self.seps.field)
            .nth(n)
            .map(|raw| value(raw, Depth::Field))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// MSH-1 and MSH-2: never split, never unescaped.
    Literal,
    Field,
    Repetition,
    Component,
    Subcomponent,
}

/// A field, repetition, component or subcomponent.
///
/// Asking a field for a component means its first repetition's component;
/// asking a field or repetition for a subcomponent means the first
/// component's subcomponent. Positions are 1-based.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a str,
    seps: &'a Separators,
    charset: Charset,
    depth: Depth,
}

impl<'a> Value<'a> {
    /// The raw text, escape sequences and inner separators included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The text with escape sequences decoded. Separators inside a
    /// composite value are left as they are: walk the components to keep
    /// the structure.
    pub fn value(&self) -> Cow<'a, str> {
        if self.depth == Depth::Literal {
            return Cow::Borrowed(self.raw);
        }
        unescape(self.raw, self.seps, self.charset)
    }

    /// Whether the raw text is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the value is the HL7 explicit null `""`.
    pub fn is_null(&self) -> bool {
        self.raw == "\"\""
    }

    fn child(&self, raw: &'a str, depth: Depth) -> Value<'a> {
        Value {
            raw,
            depth,
            ..*self
        }
    }

    fn nth(&self, sep: char, n: usize, depth: Depth) -> Option<Value<'a>> {
        if n == 0 {
            return None;
        }
        self.raw
            .split(sep)
            .nth(n - 1)
            .map(|raw| self.child(raw, depth))
    }

    /// Repetition `n` of a field.
    pub fn repetition(&self, n: usize) -> Option<Value<'a>> {
        match self.depth {
            Depth::Field => self.nth(self.seps.repetition, n, Depth::Repetition),
            Depth::Literal if n == 1 => Some(*self),
            _ => None,
        }
    }

    /// All repetitions of a field.
    pub fn repetitions(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let this = *self;
        let split = this.depth == Depth::Field;
        let mut parts = this.raw.split(this.seps.repetition);
        let mut single = Some(this);
        std::iter::from_fn(move || {
            if split {
                parts.next().map(|raw| this.child(raw, Depth::Repetition))
            } else {
                single.take()
            }
        })
    }

    /// Component `n`.
    pub fn component(&self, n: usize) -> Option<Value<'a>> {
        match self.depth {
            Depth::Field => self.repetition(1)?.component(n),
            Depth::Repetition => self.nth(self.seps.component, n, Depth::Component),
            Depth::Literal if n == 1 => Some(*self),
            _ => None,
        }
    }

    /// Subcomponent `n`.
    pub fn subcomponent(&self, n: usize) -> Option<Value<'a>> {
        match self.depth {
            Depth::Field | Depth::Repetition => self.component(1)?.subcomponent(n),
            Depth::Component => self.nth(self.seps.subcomponent, n, Depth::Subcomponent),
            Depth::Literal if n == 1 => Some(*self),
            _ => None,
        }
    }
}
