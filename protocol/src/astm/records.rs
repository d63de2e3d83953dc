//! E1394 / LIS02-A2 records: one line such as `R|1|^^^GLU|5.4|mmol/L`.
//!
//! A record is split into fields by the field delimiter; a field may hold
//! repeats, a repeat may hold components. The four delimiters are not fixed:
//! the `H` record declares them in its first characters (`H|\^&` → field
//! `|`, repeat `\`, component `^`, escape `&`) and they hold for the whole
//! message. Inside a field, `&F& &S& &R& &E&` stand for the field,
//! component, repeat and escape characters; other escape sequences (`&H&`
//! highlighting, `&Xhh&` hex, …) are left as they are so the text stays
//! readable rather than guessed at.
//!
//! Fields are numbered as the standard does: field 1 is the record type,
//! field 2 the sequence number (for `H`, the delimiter definition), so
//! `R-4` (the value) is `record.field(4)`.
//!
//! Text is decoded as UTF-8 when it is valid UTF-8, else byte-for-byte as
//! ISO 8859-1, the encoding of most analyzers that are not UTF-8: nothing is
//! lost and nothing fails.

use thiserror::Error;

/// The four delimiters a message declares in its `H` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub repeat: char,
    pub component: char,
    pub escape: char,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: '|',
            repeat: '\\',
            component: '^',
            escape: '&',
        }
    }
}

/// Why one record line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("header record too short to declare its delimiters")]
    ShortHeader,
    #[error("header delimiters {0:?} are not four distinct punctuation characters")]
    BadDelimiters(String),
}

impl Delimiters {
    /// Reads the delimiters from an `H` record line (`H|\^&...`).
    pub fn from_header(line: &str) -> Result<Self, RecordError> {
        let mut chars = line.chars();
        if chars.next() != Some('H') {
            return Err(RecordError::ShortHeader);
        }
        let d: Vec<char> = chars.take(4).collect();
        let [field, repeat, component, escape] = d[..] else {
            return Err(RecordError::ShortHeader);
        };
        let all = [field, repeat, component, escape];
        let distinct = all
            .iter()
            .enumerate()
            .all(|(i, a)| all.iter().skip(i + 1).all(|b| a != b));
        if !distinct || all.iter().any(|c| c.is_alphanumeric() || c.is_control()) {
            return Err(RecordError::BadDelimiters(all.iter().collect()));
        }
        Ok(Delimiters {
            field,
            repeat,
            component,
            escape,
        })
    }

    /// The `H-2` text declaring these delimiters (`\^&`).
    pub fn header_text(&self) -> String {
        [self.repeat, self.component, self.escape].iter().collect()
    }

    /// Replaces delimiter characters in `value` by escape sequences, for
    /// building records.
    pub fn escape(&self, value: &str) -> String {
        let e = self.escape;
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            let code = if c == self.field {
                'F'
            } else if c == self.component {
                'S'
            } else if c == self.repeat {
                'R'
            } else if c == e {
                'E'
            } else {
                out.push(c);
                continue;
            };
            out.push(e);
            out.push(code);
            out.push(e);
        }
        out
    }

    /// Resolves `&F& &S& &R& &E&`; leaves any other sequence as received.
    pub fn unescape(&self, raw: &str) -> String {
        let e = self.escape;
        if !raw.contains(e) {
            return raw.to_string();
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find(e) {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + e.len_utf8()..];
            let mut it = after.chars();
            let replaced = match (it.next(), it.next()) {
                (Some(code), Some(close)) if close == e => match code {
                    'F' => Some(self.field),
                    'S' => Some(self.component),
                    'R' => Some(self.repeat),
                    'E' => Some(self.escape),
                    _ => None,
                },
                _ => None,
            };
            match replaced {
                Some(c) => {
                    out.push(c);
                    // code and closing escape: both single chars.
                    let skip = after.char_indices().nth(2).map_or(after.len(), |(i, _)| i);
                    rest = &after[skip..];
                }
                None => {
                    out.push(e);
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Bytes of a record line → text: UTF-8 if valid, else ISO 8859-1.
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Record types of LIS02-A2; anything else is kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    Header,
    Patient,
    Order,
    Result,
    Comment,
    Query,
    Manufacturer,
    Scientific,
    Terminator,
    Unknown(char),
}

impl RecordType {
    pub fn from_char(c: char) -> Self {
        match c.to_ascii_uppercase() {
            'H' => RecordType::Header,
            'P' => RecordType::Patient,
            'O' => RecordType::Order,
            'R' => RecordType::Result,
            'C' => RecordType::Comment,
            'Q' => RecordType::Query,
            'M' => RecordType::Manufacturer,
            'S' => RecordType::Scientific,
            'L' => RecordType::Terminator,
            _ => RecordType::Unknown(c),
        }
    }

    pub fn letter(&self) -> char {
        match self {
            RecordType::Header => 'H',
            RecordType::Patient => 'P',
            RecordType::Order => 'O',
            RecordType::Result => 'R',
            RecordType::Comment => 'C',
            RecordType::Query => 'Q',
            RecordType::Manufacturer => 'M',
            RecordType::Scientific => 'S',
            RecordType::Terminator => 'L',
            RecordType::Unknown(c) => *c,
        }
    }
}

/// One record, split into raw (still escaped) fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    kind: RecordType,
    delimiters: Delimiters,
    text: String,
    fields: Vec<String>,
}

impl Record {
    /// Reads one record line (without CR). For an `H` record the
    /// delimiters come from the line itself and `delimiters` is ignored.
    pub fn parse(line: &[u8], delimiters: &Delimiters) -> Result<Record, RecordError> {
        let text = decode_text(line);
        let first = text.chars().next().ok_or(RecordError::Empty)?;
        let kind = RecordType::from_char(first);
        let delimiters = if kind == RecordType::Header {
            Delimiters::from_header(&text)?
        } else {
            *delimiters
        };
        let fields = if kind == RecordType::Header {
            // H-2 holds the other delimiters and must not be split by them.
            let mut fields = vec!["H".to_string(), delimiters.header_text()];
            let skip = text.chars().take(5).map(char::len_utf8).sum::<usize>();
            let rest = text.get(skip..).unwrap_or("");
            if let Some(rest) = rest.strip_prefix(delimiters.field) {
                fields.extend(rest.split(delimiters.field).map(str::to_string));
            } else if !rest.is_empty() {
                fields.push(rest.to_string());
            }
            fields
        } else {
            text.split(delimiters.field).map(str::to_string).collect()
        };
        Ok(Record {
            kind,
            delimiters,
            text,
            fields,
        })
    }

    pub fn kind(&self) -> RecordType {
        self.kind
    }

    /// The record line as received (decoded, still escaped).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// Number of fields present, counting the record type.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Field `n` in the standard's numbering (1 = record type); an absent
    /// field reads as empty.
    pub fn field(&self, n: usize) -> Field<'_> {
        let raw = n
            .checked_sub(1)
            .and_then(|i| self.fields.get(i))
            .map_or("", String::as_str);
        Field {
            raw,
            delimiters: self.delimiters,
        }
    }
}

/// A view on one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a str,
    delimiters: Delimiters,
}

impl<'a> Field<'a> {
    /// As received, escapes and delimiters included.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The whole field unescaped (repeat and component delimiters kept).
    pub fn text(&self) -> String {
        self.delimiters.unescape(self.raw)
    }

    /// The field's repeats (one, possibly empty, when there is no repeat
    /// delimiter).
    pub fn repeats(&self) -> Vec<Field<'a>> {
        self.raw
            .split(self.delimiters.repeat)
            .map(|raw| Field {
                raw,
                delimiters: self.delimiters,
            })
            .collect()
    }

    /// Components of the first repeat, unescaped.
    pub fn components(&self) -> Vec<String> {
        let first = self.raw.split(self.delimiters.repeat).next().unwrap_or("");
        first
            .split(self.delimiters.component)
            .map(|c| self.delimiters.unescape(c))
            .collect()
    }

    /// Component `n` (1-based) of the first repeat, unescaped; empty if
    /// absent.
    pub fn component(&self, n: usize) -> String {
        let first = self.raw.split(self.delimiters.repeat).next().unwrap_or("");
        n.checked_sub(1)
            .and_then(|i| first.split(self.delimiters.component).nth(i))
            .map(|c| self.delimiters.unescape(c))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_declares_the_delimiters() {
        let d = Delimiters::from_header("H|\\^&|||cobas^1").unwrap();
        assert_eq!(d, Delimiters::default());
        let d = Delimiters::from_header("H!~@$").unwrap();
        assert_eq!(
            (d.field, d.repeat, d.component, d.escape),
            ('!', '~', '@', '$')
        );
    }

    #[test]
    fn a_header_with_repeated_delimiters_is_refused() {
        assert!(matches!(
            Delimiters::from_header("H||^&"),
            Err(RecordError::BadDelimiters(_))
        ));
        assert_eq!(Delimiters::from_header("H|"), Err(RecordError::ShortHeader));
    }

    #[test]
    fn header_field_two_is_not_split_by_its_own_delimiters() {
        let r = Record::parse(b"H|\\^&|||Analyzer^2.1^SN42", &Delimiters::default()).unwrap();
        assert_eq!(r.field(2).raw(), "\\^&");
        assert_eq!(r.field(5).component(1), "Analyzer");
        assert_eq!(r.field(5).component(3), "SN42");
    }

    #[test]
    fn the_four_escapes_are_resolved_and_others_kept() {
        let d = Delimiters::default();
        assert_eq!(d.unescape("a&F&b&S&c&R&d&E&e"), "a|b^c\\d&e");
        assert_eq!(d.unescape("x&H&y&X0D&"), "x&H&y&X0D&");
        assert_eq!(d.unescape("tail&"), "tail&");
        assert_eq!(d.unescape("&F"), "&F");
    }

    #[test]
    fn escaping_and_unescaping_round_trip() {
        let d = Delimiters::default();
        let value = "a|b^c\\d&e &F& plain";
        assert_eq!(d.unescape(&d.escape(value)), value);
    }

    #[test]
    fn components_and_repeats_are_read_after_splitting() {
        let r = Record::parse(b"O|1|SID1||^^^GLU\\^^^NA&S&K", &Delimiters::default()).unwrap();
        let tests = r.field(5).repeats();
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[1].component(4), "NA^K");
        assert_eq!(r.field(99).raw(), "");
        assert_eq!(r.field(0).raw(), "");
    }

    #[test]
    fn latin1_text_is_decoded_without_loss() {
        let r = Record::parse(b"P|1||||M\xfcller^Hans", &Delimiters::default()).unwrap();
        assert_eq!(r.field(6).component(1), "Müller");
    }

    #[test]
    fn unknown_record_types_are_kept() {
        let r = Record::parse(b"X|1|vendor stuff", &Delimiters::default()).unwrap();
        assert_eq!(r.kind(), RecordType::Unknown('X'));
        assert_eq!(r.field(3).text(), "vendor stuff");
    }
}
