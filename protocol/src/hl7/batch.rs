//! Batches: `[FHS] BHS { MSH ... } BTS [FTS]`, split into messages.
//!
//! Splitting works on raw bytes, before any charset decoding, because each
//! message names its own charset in its MSH-18. That is safe: CR and LF never
//! occur inside a multi-byte character in the charsets we support. Each
//! message slice runs from its MSH to the next MSH or batch segment, so it
//! parses (and is journalled) exactly as if it had arrived on its own.
//!
//! BTS-1, when valued, must equal the number of messages found; a mismatch
//! means a truncated or padded batch and is an error rather than a partial
//! success. With several batches in one file, the counts are summed.

use super::parse::{trim_start, Separators};
use super::ParseError;

/// A split batch. Slices borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The FHS segment line, when present.
    pub file_header: Option<&'a [u8]>,
    /// The first BHS segment line, when present.
    pub batch_header: Option<&'a [u8]>,
    /// Each message, from its MSH to the byte before the next one.
    pub messages: Vec<&'a [u8]>,
    /// The sum of BTS-1 values, when any was valued.
    pub declared_count: Option<usize>,
}

/// Whether the bytes start with a batch or file header.
pub fn is_batch(bytes: &[u8]) -> bool {
    let b = trim_start(bytes);
    b.starts_with(b"FHS") || b.starts_with(b"BHS")
}

/// Split a batch into its messages. A plain message (starting with MSH)
/// comes back as a batch of one.
pub fn split_batch(bytes: &[u8]) -> Result<Batch<'_>, ParseError> {
    let bytes = trim_start(bytes);
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    let header_seps = if bytes.starts_with(b"FHS") || bytes.starts_with(b"BHS") {
        Some(Separators::from_msh_bytes(bytes)?)
    } else if bytes.starts_with(b"MSH") {
        None
    } else {
        return Err(ParseError::MissingMsh);
    };
    let field_sep = header_seps.map_or(b'|', |s| s.field as u8);

    let mut batch = Batch {
        file_header: None,
        batch_header: None,
        messages: Vec::new(),
        declared_count: None,
    };
    let mut current: Option<usize> = None;
    let mut pos = 0;
    let mut index = 0;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(bytes.len(), |i| pos + i);
        let line = &bytes[pos..end];
        let line_start = pos;
        pos = end + 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let id = line.get(..3).unwrap_or(line);
        match id {
            b"MSH" | b"FHS" | b"BHS" | b"BTS" | b"FTS" => {
                if let Some(start) = current.take() {
                    batch.messages.push(&bytes[start..line_start]);
                }
            }
            _ => {}
        }
        match id {
            b"MSH" => current = Some(line_start),
            b"FHS" => {
                batch.file_header.get_or_insert(line);
            }
            b"BHS" => {
                batch.batch_header.get_or_insert(line);
            }
            b"BTS" => {
                let count = line
                    .split(|&b| b == field_sep)
                    .nth(1)
                    .and_then(|f| std::str::from_utf8(f).ok())
                    .and_then(|f| f.trim().parse::<usize>().ok());
                if let Some(n) = count {
                    batch.declared_count = Some(batch.declared_count.unwrap_or(0) + n);
                }
            }
            b"FTS" => {}
            _ if current.is_none() => return Err(ParseError::InvalidSegment { index }),
            _ => {}
        }
        index += 1;
    }
    if let Some(start) = current {
        batch.messages.push(&bytes[start..]);
    }
    if let Some(declared) = batch.declared_count {
        if declared != batch.messages.len() {
            return Err(ParseError::BatchCountMismatch {
                declared,
                found: batch.messages.len(),
            });
        }
    }
    Ok(batch)
}
