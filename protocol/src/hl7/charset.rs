//! Character sets named by MSH-18 (HL7 table 0211), and the per-endpoint
//! fallback.
//!
//! Decoding happens on the whole message before it is split, so a multi-byte
//! character can never be cut by a separator and non-ASCII bytes never reach
//! the splitter.
//!
//! - Empty MSH-18: the endpoint's fallback charset (default windows-1252,
//!   which decodes every byte and is a superset of ASCII and, for printable
//!   characters, of ISO-8859-1).
//! - `ASCII` with bytes above 0x7F (a common sloppiness): those bytes are
//!   decoded with the fallback instead of being rejected.
//! - ISO-8859-1 is decoded byte for byte (U+0000..U+00FF). encoding_rs treats
//!   the label "iso-8859-1" as windows-1252, which differs in 0x80..0x9F.
//! - Invalid UTF-8 is decoded with U+FFFD and flagged (`had_errors`), never
//!   rejected: the journal keeps the original bytes either way.

use std::borrow::Cow;

use encoding_rs::{Encoding, ISO_8859_15, UTF_8, WINDOWS_1252};

/// A character set the gateway can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// `ASCII` (also `ISO IR6`).
    Ascii,
    /// `8859/1` (also `ISO IR100`).
    Latin1,
    /// `8859/15`.
    Latin9,
    /// `UNICODE UTF-8`.
    Utf8,
    /// windows-1252; not in table 0211 but sent by some Windows-based
    /// systems, and the default endpoint fallback.
    #[default]
    Windows1252,
}

impl Charset {
    /// Map an MSH-18 value to a charset; `None` when unsupported.
    /// Matching ignores case and surrounding spaces.
    pub fn from_hl7_name(name: &str) -> Option<Charset> {
        let n = name.trim().to_ascii_uppercase();
        Some(match n.as_str() {
            "ASCII" | "ISO IR6" | "ISO_IR 6" | "US-ASCII" => Charset::Ascii,
            "8859/1" | "ISO IR100" | "ISO_IR 100" | "ISO-8859-1" | "LATIN1" => Charset::Latin1,
            "8859/15" | "ISO-8859-15" => Charset::Latin9,
            "UNICODE UTF-8" | "UTF-8" | "UTF8" | "ISO_IR 192" => Charset::Utf8,
            "WINDOWS-1252" | "CP1252" | "WINDOWS1252" => Charset::Windows1252,
            _ => return None,
        })
    }

    /// The table 0211 name written into MSH-18 for this charset.
    pub fn hl7_name(self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Latin9 => "8859/15",
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Windows1252 => "WINDOWS-1252",
        }
    }

    /// Decode `bytes`; `fallback` serves bytes that ASCII cannot hold.
    /// Returns the text and whether any byte could not be decoded.
    pub fn decode<'a>(self, bytes: &'a [u8], fallback: Charset) -> (Cow<'a, str>, bool) {
        match self {
            Charset::Ascii => {
                if bytes.is_ascii() {
                    // ASCII is valid UTF-8.
                    decode_with(UTF_8, bytes)
                } else if fallback == Charset::Ascii {
                    // Nothing better to try: keep what we can read.
                    let text: String = bytes
                        .iter()
                        .map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' })
                        .collect();
                    (Cow::Owned(text), true)
                } else {
                    fallback.decode(bytes, fallback)
                }
            }
            Charset::Latin1 => {
                if bytes.is_ascii() {
                    decode_with(UTF_8, bytes)
                } else {
                    (
                        Cow::Owned(bytes.iter().map(|&b| b as char).collect()),
                        false,
                    )
                }
            }
            Charset::Latin9 => decode_with(ISO_8859_15, bytes),
            Charset::Utf8 => decode_with(UTF_8, bytes),
            Charset::Windows1252 => decode_with(WINDOWS_1252, bytes),
        }
    }

    /// Encode `text`; characters the charset cannot hold become `?`.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            Charset::Latin9 => encode_with(ISO_8859_15, text),
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Windows1252 => encode_with(WINDOWS_1252, text),
        }
    }
}

fn decode_with<'a>(enc: &'static Encoding, bytes: &'a [u8]) -> (Cow<'a, str>, bool) {
    let (text, had_errors) = enc.decode_without_bom_handling(bytes);
    (text, had_errors)
}

fn encode_with(enc: &'static Encoding, text: &str) -> Vec<u8> {
    // encoding_rs writes unmappable characters as HTML numeric references;
    // an HL7 peer would take those literally, so substitute '?' instead.
    let mut out = Vec::with_capacity(text.len());
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let s: &str = c.encode_utf8(&mut buf);
        let (bytes, _, unmappable) = enc.encode(s);
        if unmappable {
            out.push(b'?');
        } else {
            out.extend_from_slice(&bytes);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_0211_names_map_to_supported_charsets() {
        assert_eq!(Charset::from_hl7_name("ASCII"), Some(Charset::Ascii));
        assert_eq!(Charset::from_hl7_name("8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_hl7_name(" 8859/15 "), Some(Charset::Latin9));
        assert_eq!(Charset::from_hl7_name("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_hl7_name("unicode utf-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_hl7_name("CP1252"), Some(Charset::Windows1252));
        assert_eq!(Charset::from_hl7_name("UNICODE UTF-16"), None);
        assert_eq!(Charset::from_hl7_name("ISO IR87"), None);
    }

    #[test]
    fn every_charset_round_trips_its_own_repertoire() {
        for (cs, text) in [
            (Charset::Ascii, "Muller, Hans"),
            (Charset::Latin1, "Müller ÄÖÜß é ±"),
            (Charset::Latin9, "Müller €"),
            (Charset::Utf8, "Müller € 患者 😀"),
            (Charset::Windows1252, "Müller € „quoted“"),
        ] {
            let bytes = cs.encode(text);
            let (back, errors) = cs.decode(&bytes, Charset::Windows1252);
            assert_eq!(back, text, "{cs:?}");
            assert!(!errors);
        }
    }

    #[test]
    fn latin1_decodes_c1_bytes_as_controls_not_as_windows_1252() {
        let (text, _) = Charset::Latin1.decode(&[0x80, 0xFC], Charset::Utf8);
        assert_eq!(text, "\u{80}ü");
        let (text, _) = Charset::Windows1252.decode(&[0x80, 0xFC], Charset::Utf8);
        assert_eq!(text, "€ü");
    }

    #[test]
    fn ascii_with_high_bytes_falls_back_to_the_endpoint_charset() {
        let (text, errors) = Charset::Ascii.decode(b"M\xfcller", Charset::Latin1);
        assert_eq!(text, "Müller");
        assert!(!errors);
        let (text, errors) = Charset::Ascii.decode(b"M\xfcller", Charset::Ascii);
        assert_eq!(text, "M\u{FFFD}ller");
        assert!(errors);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_flagged() {
        let (text, errors) = Charset::Utf8.decode(b"M\xfcller", Charset::Latin1);
        assert_eq!(text, "M\u{FFFD}ller");
        assert!(errors);
    }

    #[test]
    fn unencodable_characters_become_question_marks() {
        assert_eq!(Charset::Ascii.encode("Mü€"), b"M??");
        assert_eq!(Charset::Latin1.encode("Mü€"), b"M\xfc?");
        assert_eq!(Charset::Windows1252.encode("M患"), b"M?");
    }
}
