//! E1381 (LIS01-A2) frames: `<STX> FN text <ETB|ETX> C1 C2 <CR><LF>`.
//!
//! This module only knows how one frame looks on the wire: how to build it,
//! how to split a record over several frames, and how to judge a received
//! frame body. Which frame number is expected and what to answer is the link
//! state machine's business (`link.rs`).

use thiserror::Error;

/// Start of text: opens every frame.
pub const STX: u8 = 0x02;
/// End of text: closes the last frame of a record.
pub const ETX: u8 = 0x03;
/// End of transmission: ends a session (or, as an answer, interrupts it).
pub const EOT: u8 = 0x04;
/// Enquiry: asks for the line.
pub const ENQ: u8 = 0x05;
/// Positive answer.
pub const ACK: u8 = 0x06;
/// Line feed: last byte of a frame.
pub const LF: u8 = 0x0A;
/// Carriage return: record terminator inside the text, and frame trailer.
pub const CR: u8 = 0x0D;
/// Negative answer.
pub const NAK: u8 = 0x15;
/// End of transmission block: closes an intermediate frame of a record.
pub const ETB: u8 = 0x17;

/// Maximum text per frame required by LIS01-A2 (247 bytes with overhead).
pub const DEFAULT_MAX_TEXT: usize = 240;

/// Characters LIS01-A2 forbids inside frame text. CR is allowed: it ends a
/// record.
pub fn is_restricted(b: u8) -> bool {
    matches!(
        b,
        0x01 // SOH
            | STX
            | ETX
            | EOT
            | ENQ
            | ACK
            | 0x10 // DLE
            | NAK
            | 0x16 // SYN
            | ETB
            | LF
            | 0x11..=0x14 // DC1..DC4
    )
}

/// Sum of all bytes mod 256; the caller passes FN through ETB/ETX inclusive.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn hex_digit(n: u8) -> u8 {
    b"0123456789ABCDEF"[usize::from(n & 0x0F)]
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Frame number after `n` (1..7, 0, 1, ...).
pub fn next_frame_number(n: u8) -> u8 {
    (n + 1) % 8
}

/// Builds one complete frame. `number` is taken mod 8; `last` chooses ETX
/// (end of record) over ETB (record continues in the next frame).
pub fn encode_frame(number: u8, text: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 7);
    out.push(STX);
    out.push(b'0' + (number % 8));
    out.extend_from_slice(text);
    out.push(if last { ETX } else { ETB });
    let sum = checksum(&out[1..]);
    out.push(hex_digit(sum >> 4));
    out.push(hex_digit(sum));
    out.push(CR);
    out.push(LF);
    out
}

/// Turns records (without their CR) into frames numbered from 1. Each record
/// starts a new frame and ends with CR + ETX; a record whose text (CR
/// included) exceeds `max_text` is split into ETB frames first.
pub fn encode_records(records: &[Vec<u8>], max_text: usize) -> Vec<Vec<u8>> {
    let max_text = max_text.max(1);
    let mut frames = Vec::new();
    let mut number = 1u8;
    for record in records {
        let mut text = record.clone();
        text.push(CR);
        let chunks: Vec<&[u8]> = text.chunks(max_text).collect();
        let count = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            frames.push(encode_frame(number, chunk, i + 1 == count));
            number = next_frame_number(number);
        }
    }
    frames
}

/// A frame whose body and trailer were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame number 0..=7.
    pub number: u8,
    /// Text between FN and ETB/ETX.
    pub text: Vec<u8>,
    /// True for ETX (record ends here), false for ETB.
    pub last: bool,
}

/// Why a received frame was refused (answered with NAK).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame too short")]
    TooShort,
    #[error("frame number {0:#04x} is not a digit 0..7")]
    BadFrameNumber(u8),
    #[error("frame ends without ETX or ETB")]
    MissingEnd,
    #[error("restricted character {0:#04x} inside frame text")]
    CharacterError(u8),
    #[error("checksum {found:?} does not match computed {expected:02X}")]
    BadChecksum { expected: u8, found: String },
    #[error("frame trailer is not C1 C2 CR LF")]
    BadTrailer,
    #[error("frame number {found} where {expected} was expected")]
    WrongFrameNumber { expected: u8, found: u8 },
    #[error("frame text exceeds the size limit")]
    TooLong,
}

/// Checks a received frame. `body` is FN..=ETB/ETX (STX removed); `trailer`
/// is everything after ETB/ETX up to and including LF. With
/// `checksum_required == false` a missing or wrong checksum is tolerated
/// (some analyzers send garbage there) but the body rules still apply.
pub fn decode_frame(
    body: &[u8],
    trailer: &[u8],
    checksum_required: bool,
) -> Result<Frame, FrameError> {
    let (&end, rest) = body.split_last().ok_or(FrameError::TooShort)?;
    let (&fn_byte, text) = rest.split_first().ok_or(FrameError::TooShort)?;
    if end != ETX && end != ETB {
        return Err(FrameError::MissingEnd);
    }
    if !(b'0'..=b'7').contains(&fn_byte) {
        return Err(FrameError::BadFrameNumber(fn_byte));
    }
    if let Some(&bad) = text.iter().find(|&&b| is_restricted(b)) {
        return Err(FrameError::CharacterError(bad));
    }
    let trailer_ok = match trailer {
        [c1, c2, CR, LF] => {
            let expected = checksum(body);
            match (hex_value(*c1), hex_value(*c2)) {
                (Some(h), Some(l)) if (h << 4 | l) == expected => Ok(()),
                _ => Err(FrameError::BadChecksum {
                    expected,
                    found: String::from_utf8_lossy(&[*c1, *c2]).into_owned(),
                }),
            }
        }
        _ => Err(FrameError::BadTrailer),
    };
    if checksum_required {
        trailer_ok?;
    } else if trailer.last() != Some(&LF) || trailer.len() > 4 {
        return Err(FrameError::BadTrailer);
    }
    Ok(Frame {
        number: fn_byte - b'0',
        text: text.to_vec(),
        last: end == ETX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_covers_frame_number_through_etx() {
        // "1H|\^&<CR><ETX>" from a common analyzer trace.
        let frame = encode_frame(1, b"H|\\^&\r", true);
        let sum = checksum(&frame[1..frame.len() - 4]);
        let text = format!("{:02X}", sum);
        assert_eq!(&frame[frame.len() - 4..frame.len() - 2], text.as_bytes());
    }

    #[test]
    fn a_well_formed_frame_decodes() {
        let frame = encode_frame(3, b"R|1|^^^GLU|5.4\r", true);
        let end = frame.iter().position(|&b| b == ETX).unwrap();
        let decoded = decode_frame(&frame[1..=end], &frame[end + 1..], true).unwrap();
        assert_eq!(decoded.number, 3);
        assert!(decoded.last);
        assert_eq!(decoded.text, b"R|1|^^^GLU|5.4\r");
    }

    #[test]
    fn a_lowercase_checksum_is_accepted() {
        let mut frame = encode_frame(1, b"L|1|N\r", true);
        let n = frame.len();
        frame[n - 4] = frame[n - 4].to_ascii_lowercase();
        frame[n - 3] = frame[n - 3].to_ascii_lowercase();
        let end = frame.iter().position(|&b| b == ETX).unwrap();
        assert!(decode_frame(&frame[1..=end], &frame[end + 1..], true).is_ok());
    }

    #[test]
    fn a_record_longer_than_the_limit_is_split_with_etb() {
        let record = vec![b'R'; 500];
        let frames = encode_records(&[record], 240);
        // 501 bytes with CR: 240 + 240 + 21.
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0][frames[0].len() - 5], ETB);
        assert_eq!(frames[1][frames[1].len() - 5], ETB);
        assert_eq!(frames[2][frames[2].len() - 5], ETX);
        assert_eq!(frames[0].len(), 240 + 7);
    }

    #[test]
    fn frame_numbers_wrap_from_seven_to_zero() {
        let records: Vec<Vec<u8>> = (0..10).map(|i| format!("C|{i}").into_bytes()).collect();
        let numbers: Vec<u8> = encode_records(&records, 240).iter().map(|f| f[1]).collect();
        assert_eq!(numbers, b"1234567012".to_vec());
    }
}
