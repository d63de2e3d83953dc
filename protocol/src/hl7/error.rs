//! What can be wrong with an HL7 v2 message, and where: each problem maps
//! to the ERR-2 location and the HL7 table 0357 code its negative
//! acknowledgement carries.

use std::fmt;

use thiserror::Error;

/// Where in a message a problem is: the ERR-2 location `SEG^seq^field`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// Segment id, e.g. `PID`; empty when the segment has no readable id.
    pub segment_id: String,
    /// 1-based occurrence of that segment id in the message.
    pub sequence: usize,
    /// 1-based field position, when the problem is in one field.
    pub field: Option<usize>,
    /// 0-based index of the segment among all segments (for logs).
    pub segment_index: usize,
}

impl ErrorLocation {
    pub(crate) fn msh_field(field: usize) -> Self {
        ErrorLocation {
            segment_id: "MSH".into(),
            sequence: 1,
            field: Some(field),
            segment_index: 0,
        }
    }
}

impl fmt::Display for ErrorLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = if self.segment_id.is_empty() {
            "segment"
        } else {
            &self.segment_id
        };
        match self.field {
            Some(field) => write!(f, "{id}-{field} (segment {})", self.segment_index + 1),
            None => write!(f, "{id} (segment {})", self.segment_index + 1),
        }
    }
}

/// HL7 table 0357 error condition codes, as sent in ERR-3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0
    MessageAccepted,
    /// 100
    SegmentSequenceError,
    /// 101
    RequiredFieldMissing,
    /// 102
    DataTypeError,
    /// 103
    TableValueNotFound,
    /// 200
    UnsupportedMessageType,
    /// 201
    UnsupportedEventCode,
    /// 202
    UnsupportedProcessingId,
    /// 203
    UnsupportedVersionId,
    /// 204
    UnknownKeyIdentifier,
    /// 205
    DuplicateKeyIdentifier,
    /// 206
    ApplicationRecordLocked,
    /// 207
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::MessageAccepted => 0,
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationRecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The table 0357 text.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::MessageAccepted => "Message accepted",
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("message is empty")]
    Empty,
    /// The first segment is not MSH.
    #[error("message does not start with an MSH segment")]
    MissingMsh,
    /// MSH-1/MSH-2 do not declare usable separators.
    #[error("bad separators in MSH-1/MSH-2: {reason}")]
    BadSeparators {
        /// What is wrong.
        reason: &'static str,
    },
    /// MSH-18 names a character set we cannot decode.
    #[error("unsupported character set {name:?} in MSH-18")]
    UnsupportedCharset {
        /// The MSH-18 value.
        name: String,
    },
    /// A line that does not start with a segment id.
    #[error("segment {} does not start with a valid segment id", index + 1)]
    InvalidSegment {
        /// 0-based segment index.
        index: usize,
    },
    /// A field the gateway needs is empty.
    #[error("required field {location} is missing")]
    MissingField {
        /// Where.
        location: ErrorLocation,
    },
    /// MSH-12 names a version that is not HL7 v2.
    #[error("unsupported version {version:?} in MSH-12")]
    UnsupportedVersion {
        /// The MSH-12 value.
        version: String,
    },
    /// MSH-11 names a processing id outside table 0103 (`P`, `D`, `T`).
    #[error("unsupported processing id {id:?} in MSH-11")]
    UnsupportedProcessingId {
        /// The MSH-11 value.
        id: String,
    },
    /// A batch whose trailer count does not match its content.
    #[error("batch declares {declared} messages but holds {found}")]
    BatchCountMismatch {
        /// BTS-1.
        declared: usize,
        /// Messages found.
        found: usize,
    },
}

impl ParseError {
    /// Where the problem is, for ERR-2.
    pub fn location(&self) -> Option<ErrorLocation> {
        match self {
            ParseError::Empty | ParseError::MissingMsh => None,
            ParseError::BadSeparators { .. } => Some(ErrorLocation::msh_field(2)),
            ParseError::UnsupportedCharset { .. } => Some(ErrorLocation::msh_field(18)),
            ParseError::UnsupportedVersion { .. } => Some(ErrorLocation::msh_field(12)),
            ParseError::UnsupportedProcessingId { .. } => Some(ErrorLocation::msh_field(11)),
            ParseError::InvalidSegment { index } => Some(ErrorLocation {
                segment_id: String::new(),
                sequence: 1,
                field: None,
                segment_index: *index,
            }),
            ParseError::MissingField { location } => Some(location.clone()),
            ParseError::BatchCountMismatch { .. } => Some(ErrorLocation {
                segment_id: "BTS".into(),
                sequence: 1,
                field: Some(1),
                segment_index: 0,
            }),
        }
    }

    /// The table 0357 code for ERR-3.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ParseError::Empty
            | ParseError::MissingMsh
            | ParseError::InvalidSegment { .. }
            | ParseError::BatchCountMismatch { .. } => ErrorCode::SegmentSequenceError,
            ParseError::BadSeparators { .. } => ErrorCode::DataTypeError,
            ParseError::UnsupportedCharset { .. } => ErrorCode::TableValueNotFound,
            ParseError::MissingField { .. } => ErrorCode::RequiredFieldMissing,
            ParseError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersionId,
            ParseError::UnsupportedProcessingId { .. } => ErrorCode::UnsupportedProcessingId,
        }
    }

    /// Whether the problem is in the message header (MSH, or no MSH at
    /// all): HL7 answers those `AR` (`CR`), a problem in the content `AE`
    /// (`CE`).
    pub fn is_header_problem(&self) -> bool {
        match self {
            ParseError::Empty
            | ParseError::MissingMsh
            | ParseError::BadSeparators { .. }
            | ParseError::UnsupportedCharset { .. }
            | ParseError::UnsupportedVersion { .. }
            | ParseError::UnsupportedProcessingId { .. } => true,
            ParseError::MissingField { location } => location.segment_id == "MSH",
            ParseError::InvalidSegment { .. } | ParseError::BatchCountMismatch { .. } => false,
        }
    }
}
