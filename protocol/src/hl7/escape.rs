//! Escape sequences inside field values.
//!
//! Decoded: `\F\ \S\ \T\ \R\ \E\` (the separators), `\P\` (the v2.7
//! truncation character), `\Xhh..\` (bytes in the message's character set)
//! and `\.br\` (a line break, decoded as `\n`).
//!
//! Kept verbatim, so the reader still sees them and nothing is lost:
//! highlighting (`\H\ \N\`), other formatting commands (`\.sp\`, `\.in\`, ...),
//! character-set switches (`\C..\ \M..\`), locally defined `\Z..\`, a `\X..\`
//! with an odd number of or non-hex digits, an empty `\\`, and an escape
//! character without its closing partner.

use std::borrow::Cow;

use super::{Charset, Separators};

/// Decode the escape sequences of a raw value.
pub fn unescape<'a>(raw: &'a str, seps: &Separators, charset: Charset) -> Cow<'a, str> {
    let esc = seps.escape;
    if !raw.contains(esc) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(len) = after.find(esc) else {
            // No closing escape character: keep the tail as it is.
            out.push_str(&rest[start..]);
            return Cow::Owned(out);
        };
        let body = &after[..len];
        let whole = &rest[start..start + esc.len_utf8() * 2 + len];
        match decode_sequence(body, seps, charset) {
            Some(decoded) => out.push_str(&decoded),
            None => out.push_str(whole),
        }
        rest = &rest[start + whole.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn decode_sequence(body: &str, seps: &Separators, charset: Charset) -> Option<Cow<'static, str>> {
    let one = |c: char| Some(Cow::Owned(c.to_string()));
    match body {
        "F" => one(seps.field),
        "S" => one(seps.component),
        "T" => one(seps.subcomponent),
        "R" => one(seps.repetition),
        "E" => one(seps.escape),
        "P" => seps.truncation.and_then(one),
        ".br" => Some(Cow::Borrowed("\n")),
        _ => {
            let hex = body.strip_prefix('X')?;
            if hex.is_empty() || hex.len() % 2 != 0 {
                return None;
            }
            let bytes = hex::decode(hex).ok()?;
            let (text, _) = charset.decode(&bytes, Charset::Windows1252);
            Some(Cow::Owned(text.into_owned()))
        }
    }
}

/// Escape a text so it can be written as a field value: separators become
/// their escape sequences, CR and LF become `\X0D\` and `\X0A\`.
pub fn escape<'a>(text: &'a str, seps: &Separators) -> Cow<'a, str> {
    let special = |c: char| {
        c == seps.field
            || c == seps.component
            || c == seps.subcomponent
            || c == seps.repetition
            || c == seps.escape
            || Some(c) == seps.truncation
            || c == '\r'
            || c == '\n'
    };
    if !text.chars().any(special) {
        return Cow::Borrowed(text);
    }
    let e = seps.escape;
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = if c == seps.field {
            "F"
        } else if c == seps.component {
            "S"
        } else if c == seps.subcomponent {
            "T"
        } else if c == seps.repetition {
            "R"
        } else if c == seps.escape {
            "E"
        } else if Some(c) == seps.truncation {
            "P"
        } else if c == '\r' {
            "X0D"
        } else if c == '\n' {
            "X0A"
        } else {
            out.push(c);
            continue;
        };
        out.push(e);
        out.push_str(code);
        out.push(e);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seps() -> Separators {
        Separators::default()
    }

    fn v27() -> Separators {
        Separators {
            truncation: Some('#'),
            ..Separators::default()
        }
    }

    #[test]
    fn separator_escapes_decode_to_the_message_separators() {
        let s = seps();
        let cases = [
            (r"a\F\b", "a|b"),
            (r"a\S\b", "a^b"),
            (r"a\T\b", "a&b"),
            (r"a\R\b", "a~b"),
            (r"a\E\b", r"a\b"),
        ];
        for (raw, want) in cases {
            assert_eq!(unescape(raw, &s, Charset::Ascii), want, "{raw}");
        }
    }

    #[test]
    fn escapes_follow_custom_separators() {
        let s = Separators {
            field: '#',
            component: '$',
            repetition: '*',
            escape: '/',
            subcomponent: '%',
            truncation: None,
        };
        assert_eq!(unescape("1/F/2/S/3/E/", &s, Charset::Ascii), "1#2$3/");
        assert_eq!(escape("1#2$3/", &s), "1/F/2/S/3/E/");
    }

    #[test]
    fn truncation_escape_decodes_only_when_msh2_declares_it() {
        assert_eq!(unescape(r"5\P\", &v27(), Charset::Ascii), "5#");
        assert_eq!(unescape(r"5\P\", &seps(), Charset::Ascii), r"5\P\");
    }

    #[test]
    fn escaped_hex_bytes_decode_in_the_message_charset() {
        let s = seps();
        assert_eq!(unescape(r"M\XFC\ller", &s, Charset::Latin1), "Müller");
        assert_eq!(unescape(r"M\XC3BC\ller", &s, Charset::Utf8), "Müller");
        assert_eq!(unescape(r"\X80\", &s, Charset::Windows1252), "€");
        assert_eq!(unescape(r"a\X0D0A\b", &s, Charset::Ascii), "a\r\nb");
    }

    #[test]
    fn malformed_hex_escapes_stay_verbatim() {
        let s = seps();
        assert_eq!(unescape(r"\XF\", &s, Charset::Utf8), r"\XF\");
        assert_eq!(unescape(r"\XZZ\", &s, Charset::Utf8), r"\XZZ\");
        assert_eq!(unescape(r"\X\", &s, Charset::Utf8), r"\X\");
    }

    #[test]
    fn line_break_escape_becomes_a_newline() {
        assert_eq!(
            unescape(r"line 1\.br\line 2", &seps(), Charset::Ascii),
            "line 1\nline 2"
        );
    }

    #[test]
    fn unknown_escapes_stay_readable() {
        let s = seps();
        assert_eq!(unescape(r"\H\bold\N\", &s, Charset::Ascii), r"\H\bold\N\");
        assert_eq!(unescape(r"a\.sp2\b", &s, Charset::Ascii), r"a\.sp2\b");
        assert_eq!(unescape(r"\Zlocal\", &s, Charset::Ascii), r"\Zlocal\");
        assert_eq!(unescape(r"a\\b", &s, Charset::Ascii), r"a\\b");
    }

    #[test]
    fn an_unterminated_escape_keeps_the_rest_of_the_value() {
        assert_eq!(unescape(r"a\F\b\Fc", &seps(), Charset::Ascii), r"a|b\Fc");
        assert_eq!(unescape(r"C:\", &seps(), Charset::Ascii), r"C:\");
    }

    #[test]
    fn non_ascii_around_escapes_is_preserved() {
        assert_eq!(unescape(r"Ü\F\ß\E\é", &seps(), Charset::Utf8), r"Ü|ß\é");
    }

    #[test]
    fn escape_then_unescape_round_trips() {
        let s = v27();
        let text = "a|b^c~d\\e&f#g\r\nh ü";
        let escaped = escape(text, &s);
        assert_eq!(escaped, r"a\F\b\S\c\R\d\E\e\T\f\P\g\X0D\\X0A\h ü");
        assert_eq!(unescape(&escaped, &s, Charset::Utf8), text);
    }
}
