//! Every data set read from the network (command sets, worklist queries,
//! MPPS steps, the head of a stored object) is walked here before
//! dicom-object parses it. dicom-parser allocates and zero-fills the length
//! an element declares before reading its value, so a 100-byte PDU
//! declaring a 3.5 GB value would take 3.5 GB of memory, and the process
//! with it; and it reads nested sequences by recursion, so nesting without
//! bound would overflow the stack. Here a value is read as its bytes
//! arrive (never allocated ahead), and what dicom-object is then given is
//! only what was walked: every defined length is known to be there.
//!
//! Sequences and items are entered, not skipped: their content is elements
//! like any other. In the implicit VR syntax, which element is a sequence
//! comes from the standard dictionary, as dicom-parser decides it; an
//! undefined length is always entered, since only a sequence (or
//! encapsulated data, made of items) may have one.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::io::Read;

const UNDEFINED: u32 = u32::MAX;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
/// Sequences and items open at once (a sequence and its item are two):
/// far beyond what structured reports nest, far below a stack overflow.
pub const MAX_NESTING: usize = 128;

/// How a data set is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ImplicitLittle,
    ExplicitLittle,
    ExplicitBig,
}

impl Encoding {
    fn explicit(self) -> bool {
        self != Encoding::ImplicitLittle
    }
    fn u16(self, b: &[u8]) -> u16 {
        match self {
            Encoding::ExplicitBig => u16::from_be_bytes([b[0], b[1]]),
            _ => u16::from_le_bytes([b[0], b[1]]),
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        match self {
            Encoding::ExplicitBig => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            _ => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// Why `bytes`, a whole data set in little endian with explicit VRs or
/// not, cannot be read as it is; `None` when every length fits.
pub fn refusal(bytes: &[u8], explicit_vr: bool) -> Option<String> {
    let encoding = if explicit_vr {
        Encoding::ExplicitLittle
    } else {
        Encoding::ImplicitLittle
    };
    read_head(&mut &bytes[..], encoding, None, usize::MAX).err()
}

/// The walked part of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Head {
    /// Whole elements, every length known to be there.
    pub bytes: Vec<u8>,
    /// The first 8 bytes of the element the walk stopped at (read from
    /// the stream, so given back); empty at the end of the data set.
    pub next: Vec<u8>,
}

/// Reads a data set from `from` up to its end, or up to the first element
/// at its top level whose tag is `stop_at` or later, checking every length
/// against the bytes that arrive. Gives what was read, or why it cannot
/// be; more than `cap` bytes is refused.
pub fn read_head(
    from: &mut impl Read,
    encoding: Encoding,
    stop_at: Option<Tag>,
    cap: usize,
) -> Result<Head, String> {
    let mut head = Vec::new();
    // The end of each open sequence or item: an offset, or None where the
    // length is undefined and a delimiter closes it.
    let mut open: Vec<Option<u64>> = Vec::new();
    loop {
        let at = head.len() as u64;
        while let Some(Some(end)) = open.last() {
            if at < *end {
                break;
            }
            open.pop();
        }
        let got = fill(from, &mut head, 8)?;
        if got == 0 {
            if let Some(Some(end)) = open.last() {
                return Err(format!(
                    "a sequence or item declares its end at byte {end} where the data set ends at byte {at}"
                ));
            }
            return Ok(Head {
                bytes: head,
                next: Vec::new(),
            });
        }
        if got < 8 {
            return Err(format!("a truncated element header at byte {at}"));
        }
        let start = at as usize;
        let h = &head[start..];
        let tag = Tag(encoding.u16(&h[0..2]), encoding.u16(&h[2..4]));
        if open.is_empty() && stop_at.is_some_and(|stop| tag >= stop) {
            let next = head.split_off(start);
            return Ok(Head { bytes: head, next });
        }
        let (len, container) = if tag.group() == 0xFFFE {
            // Items and delimiters: a tag and a 4-byte length, no VR in
            // either syntax; an item's content is elements.
            (encoding.u32(&h[4..8]), tag == ITEM)
        } else if encoding.explicit() {
            let vr = [h[4], h[5]];
            if long_length(vr) {
                if fill(from, &mut head, 4)? < 4 {
                    return Err(format!("a truncated element header at byte {at}"));
                }
                (encoding.u32(&head[start + 8..start + 12]), &vr == b"SQ")
            } else {
                (u32::from(encoding.u16(&h[6..8])), false)
            }
        } else {
            let sequence = StandardDataDictionary
                .by_tag(tag)
                .is_some_and(|e| e.vr().relaxed() == VR::SQ);
            (encoding.u32(&h[4..8]), sequence)
        };
        if tag == ITEM_END || tag == SEQUENCE_END {
            if open.last() == Some(&None) {
                open.pop();
            }
            continue;
        }
        let value_at = head.len() as u64;
        if container || len == UNDEFINED {
            if open.len() == MAX_NESTING {
                return Err(format!(
                    "sequences nested deeper than {MAX_NESTING} at byte {at}"
                ));
            }
            open.push((len != UNDEFINED).then(|| value_at + u64::from(len)));
            continue;
        }
        if head.len().saturating_add(len as usize) > cap {
            return Err(format!(
                "element {tag} at byte {at} takes the data set past {cap} bytes"
            ));
        }
        let arrived = fill(from, &mut head, len as usize)?;
        if arrived < len as usize {
            return Err(format!(
                "element {tag} at byte {at} declares {len} bytes where {arrived} follow"
            ));
        }
    }
}

/// Appends up to `n` bytes of `from` to `to`, as they arrive; how many came.
/// Read through a small buffer, so `to` grows with what arrived: std's
/// `read_to_end` on a `Take` reserves the whole limit ahead when the
/// reader gives no size hint, which is the declared length again.
fn fill(from: &mut impl Read, to: &mut Vec<u8>, n: usize) -> Result<usize, String> {
    let mut buf = [0u8; 8192];
    let mut got = 0;
    while got < n {
        let want = (n - got).min(buf.len());
        match from.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(k) => {
                to.extend_from_slice(&buf[..k]);
                got += k;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the data set: {e}")),
        }
    }
    Ok(got)
}

/// Whether an explicit VR's length takes 4 bytes after 2 reserved ones.
/// As in dicom-encoding's decoders: only the VRs PS3.5 table 7.1-2 names
/// have a 2-byte length; every other VR, and two bytes that are no VR at
/// all (read as UN), have the long form.
fn long_length(vr: [u8; 2]) -> bool {
    !matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn implicit(tag: (u16, u16), value: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tag.0.to_le_bytes());
        b.extend_from_slice(&tag.1.to_le_bytes());
        b.extend_from_slice(&(value.len() as u32).to_le_bytes());
        b.extend_from_slice(value);
        b
    }

    #[test]
    fn a_data_set_whose_lengths_fit_is_not_refused_in_either_syntax() {
        let mut set = implicit((0x0008, 0x0050), b"ACC-1 ");
        set.extend(implicit((0x0010, 0x0010), b"Doe^Jane"));
        assert_eq!(refusal(&set, false), None);
        // Explicit: a short-length string and a long-length OB.
        let mut ex = vec![0x08, 0x00, 0x50, 0x00, b'S', b'H', 6, 0];
        ex.extend_from_slice(b"ACC-1 ");
        ex.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0, 2, 0, 0, 0, 1, 2]);
        assert_eq!(refusal(&ex, true), None);
        assert_eq!(refusal(&[], true), None);
    }

    #[test]
    fn a_value_declaring_more_than_the_bytes_hold_is_refused_with_where() {
        let mut set = implicit((0x0008, 0x0050), b"ACC-1 ");
        set.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        set.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
        set.extend_from_slice(b"tiny");
        let explicit = [
            &[0x08, 0x00, 0x50, 0x00, b'S', b'H', 6, 0][..],
            b"ACC-1 ",
            &set[14..],
        ]
        .concat();
        let why = refusal(&explicit, true).expect("refused");
        assert!(
            why.contains("(0009,1010)") && why.contains("3519021056"),
            "{why}"
        );
        assert!(why.contains("where 4 follow"), "{why}");
        // A short length past the end, and a header cut off.
        let short = [0x08, 0x00, 0x50, 0x00, b'S', b'H', 0xFF, 0xFF, b'A'];
        assert!(refusal(&short, true).unwrap().contains("declares 65535"));
        assert!(refusal(&[0x08, 0x00, 0x50], false)
            .unwrap()
            .contains("truncated"));
    }

    #[test]
    fn the_content_of_a_sequence_is_walked_not_skipped() {
        // Implicit VR: Scheduled Procedure Step Sequence (0040,0100), known
        // to the dictionary as SQ, holding an item whose element lies.
        let mut inner = Vec::new();
        inner.extend_from_slice(&[0x40, 0x00, 0x01, 0x00]);
        inner.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
        inner.extend_from_slice(b"AE");
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&UNDEFINED.to_le_bytes());
        item.extend(inner);
        let mut set = vec![0x40, 0x00, 0x00, 0x01];
        set.extend_from_slice(&(item.len() as u32).to_le_bytes());
        set.extend(item);
        let why = refusal(&set, false).expect("refused");
        assert!(why.contains("(0040,0001)"), "{why}");
    }

    #[test]
    fn two_bytes_that_are_no_vr_take_the_long_length_as_the_parser_reads_them() {
        // Found by fuzzing: "4\0" is no VR, so dicom-parser reads it as UN,
        // whose length is the 4 bytes after 2 reserved ones: here the
        // bytes of an item tag, 0xE000FFFE.
        let set = [
            0x53, 0x51, 0x00, 0x00, b'4', 0x00, 0x00, 0x00, 0xFE, 0xFF, 0x00, 0xE0, 1, 2,
        ];
        let why = refusal(&set, true).expect("refused");
        assert!(why.contains("declares 3758161918 bytes"), "{why}");
    }

    #[test]
    fn a_lying_length_read_from_a_stream_without_a_size_hint_takes_only_what_arrived() {
        // Found by fuzzing: through `read_to_end` a reader without a size
        // hint had the declared 4 GB reserved ahead.
        struct NoHint<'a>(&'a [u8]);
        impl Read for NoHint<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(buf)
            }
        }
        let mut set = implicit((0x0008, 0x0050), b"ACC-1 ");
        set.extend_from_slice(&[0x09, 0x00, 0x10, 0x10]);
        set.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        set.extend_from_slice(&[0xFF; 100]);
        let why = read_head(
            &mut NoHint(&set),
            Encoding::ImplicitLittle,
            None,
            usize::MAX,
        )
        .unwrap_err();
        assert!(why.contains("where 100 follow"), "{why}");
    }

    #[test]
    fn sequences_nested_without_bound_are_refused_before_the_parser_recurses() {
        // (0040,0100) SQ of an item holding (0040,0100) ... all undefined.
        let level = [
            &[0x40, 0x00, 0x00, 0x01][..],
            &UNDEFINED.to_le_bytes(),
            &[0xFE, 0xFF, 0x00, 0xE0],
            &UNDEFINED.to_le_bytes(),
        ]
        .concat();
        let deep = level.repeat(MAX_NESTING);
        let why = refusal(&deep, false).expect("refused");
        assert!(why.contains("nested deeper than 128"), "{why}");
        // As deep as structured reports go is read.
        let mut fine = level.repeat(20);
        for _ in 0..20 {
            fine.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            fine.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        assert_eq!(refusal(&fine, false), None);
    }

    #[test]
    fn a_walk_stops_at_the_first_top_level_element_of_the_stop_group_and_gives_its_header_back() {
        let mut set = implicit((0x0008, 0x0050), b"ACC-1 ");
        set.extend(implicit((0x0028, 0x0010), &[0, 2]));
        set.extend(implicit((0x7FE0, 0x0010), &[0; 64]));
        let head = read_head(
            &mut &set[..],
            Encoding::ImplicitLittle,
            Some(Tag(0x0028, 0)),
            1 << 20,
        )
        .unwrap();
        assert_eq!(head.bytes, set[..14]);
        assert_eq!(head.next, set[14..22]);
        // Past the cap is refused, with where.
        let capped = read_head(&mut &set[..], Encoding::ImplicitLittle, None, 40).unwrap_err();
        assert!(capped.contains("(7FE0,0010)"), "{capped}");
    }

    #[test]
    fn every_reader_of_a_data_set_from_the_network_refuses_a_lying_length_before_parsing() {
        use crate::dicom::{command::Command, mpps::Step, uids, worklist::Query};
        // (0008,0050) then (0009,1010) declaring 3.5 GB in a few bytes.
        let mut implicit_set = implicit((0x0008, 0x0050), b"ACC-1 ");
        implicit_set.extend_from_slice(&[0x09, 0x00, 0x10, 0x10]);
        implicit_set.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
        implicit_set.extend_from_slice(b"tiny");
        let mut explicit_set = vec![0x08, 0x00, 0x50, 0x00, b'S', b'H', 6, 0];
        explicit_set.extend_from_slice(b"ACC-1 ");
        explicit_set.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        explicit_set.extend_from_slice(&0xD1C0_0000u32.to_le_bytes());
        explicit_set.extend_from_slice(b"tiny");
        let refused = |e: String| assert!(e.contains("declares 3519021056 bytes"), "{e}");
        refused(Command::read(&implicit_set).unwrap_err().to_string());
        refused(
            Step::read(&implicit_set, uids::IMPLICIT_VR_LE)
                .unwrap_err()
                .to_string(),
        );
        refused(
            Step::read(&explicit_set, uids::EXPLICIT_VR_LE)
                .unwrap_err()
                .to_string(),
        );
        refused(
            Query::read(&implicit_set, uids::IMPLICIT_VR_LE)
                .unwrap_err()
                .to_string(),
        );
        refused(
            Query::read(&explicit_set, uids::EXPLICIT_VR_LE)
                .unwrap_err()
                .to_string(),
        );
    }
}
