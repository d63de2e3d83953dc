//! Line traffic made readable: `<ENQ> <STX>1H|\^&... <ETX>A7<CR><LF>`.
//!
//! Used by `ecko-gateway trace ENDPOINT` and the debug log. Control
//! characters get their names so a field engineer can see which side broke
//! the handshake; printable ASCII stays as is; anything else is `<0xNN>`
//! rather than a guess at an encoding.

use std::fmt::Write;

fn name(b: u8) -> Option<&'static str> {
    Some(match b {
        0x00 => "NUL",
        0x01 => "SOH",
        0x02 => "STX",
        0x03 => "ETX",
        0x04 => "EOT",
        0x05 => "ENQ",
        0x06 => "ACK",
        0x0A => "LF",
        0x0D => "CR",
        0x10 => "DLE",
        0x11 => "DC1",
        0x12 => "DC2",
        0x13 => "DC3",
        0x14 => "DC4",
        0x15 => "NAK",
        0x16 => "SYN",
        0x17 => "ETB",
        _ => return None,
    })
}

/// Formats bytes for a trace line. Handshake characters that stand alone
/// (ENQ, ACK, NAK, EOT) are followed by a space so a burst of them stays
/// readable; frame content is not spaced out.
pub fn format(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    for (i, &b) in bytes.iter().enumerate() {
        match name(b) {
            Some(n) => {
                out.push('<');
                out.push_str(n);
                out.push('>');
                let standalone = matches!(b, 0x04 | 0x05 | 0x06 | 0x15);
                let next_is_frame = bytes.get(i + 1).is_some();
                if standalone && next_is_frame {
                    out.push(' ');
                }
            }
            None if (0x20..0x7F).contains(&b) => out.push(char::from(b)),
            None => {
                let _ = write!(out, "<0x{b:02X}>");
            }
        }
    }
    out
}

/// Which side a traced chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the peer to us.
    In,
    /// From us to the peer.
    Out,
}

/// One trace line: `<time> <- <bytes>` for input, `->` for output. The
/// timestamp is the caller's, already formatted, since this module reads no
/// clock.
pub fn line(timestamp: &str, direction: Direction, bytes: &[u8]) -> String {
    let arrow = match direction {
        Direction::In => "<-",
        Direction::Out => "->",
    };
    format!("{timestamp} {arrow} {}", format(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astm::frame::encode_frame;

    #[test]
    fn control_characters_are_shown_by_name() {
        let mut bytes = vec![0x05];
        bytes.extend(encode_frame(1, b"H|\\^&\r", true));
        let text = format(&bytes);
        assert!(text.starts_with("<ENQ> <STX>1H|\\^&<CR><ETX>"), "{text}");
        assert!(text.ends_with("<CR><LF>"), "{text}");
    }

    #[test]
    fn other_bytes_are_shown_as_hex() {
        assert_eq!(format(&[0x07, b'a', 0xE9]), "<0x07>a<0xE9>");
    }

    #[test]
    fn a_trace_line_carries_time_and_direction() {
        assert_eq!(
            line("12:00:00.000", Direction::Out, &[0x06]),
            "12:00:00.000 -> <ACK>"
        );
    }
}
