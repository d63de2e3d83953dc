//! The UIDs the gateway accepts: verification, the storage SOP classes in
//! common use, and the transfer syntaxes an object may arrive in.

pub const VERIFICATION: &str = "1.2.840.10008.1.1";
pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// The gateway's implementation class UID (PS3.7 D.3.3.2), under the
/// UUID-derived root `2.25`.
pub const IMPLEMENTATION_CLASS: &str = "2.25.93112843172790152633452871098122947417";
pub const IMPLEMENTATION_VERSION: &str = "ECKO_EDGE_01";

/// Storage SOP classes accepted by default (PS3.4 B.5), by modality family.
pub const STORAGE_SOP_CLASSES: &[(&str, &str)] = &[
    ("1.2.840.10008.5.1.4.1.1.1", "CR Image"),
    (
        "1.2.840.10008.5.1.4.1.1.1.1",
        "Digital X-Ray Image (presentation)",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1.1",
        "Digital X-Ray Image (processing)",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.2",
        "Digital Mammography (presentation)",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.2.1",
        "Digital Mammography (processing)",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.3",
        "Digital Intra-Oral X-Ray (presentation)",
    ),
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image"),
    ("1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT Image"),
    (
        "1.2.840.10008.5.1.4.1.1.3.1",
        "Ultrasound Multi-frame Image",
    ),
    ("1.2.840.10008.5.1.4.1.1.4", "MR Image"),
    ("1.2.840.10008.5.1.4.1.1.4.1", "Enhanced MR Image"),
    ("1.2.840.10008.5.1.4.1.1.6.1", "Ultrasound Image"),
    ("1.2.840.10008.5.1.4.1.1.7", "Secondary Capture Image"),
    (
        "1.2.840.10008.5.1.4.1.1.7.1",
        "Multi-frame Single Bit SC Image",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.2",
        "Multi-frame Grayscale Byte SC Image",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.3",
        "Multi-frame Grayscale Word SC Image",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.7.4",
        "Multi-frame True Color SC Image",
    ),
    ("1.2.840.10008.5.1.4.1.1.12.1", "X-Ray Angiographic Image"),
    (
        "1.2.840.10008.5.1.4.1.1.12.2",
        "X-Ray Radiofluoroscopic Image",
    ),
    ("1.2.840.10008.5.1.4.1.1.20", "Nuclear Medicine Image"),
    ("1.2.840.10008.5.1.4.1.1.77.1.4", "VL Photographic Image"),
    ("1.2.840.10008.5.1.4.1.1.88.11", "Basic Text SR"),
    ("1.2.840.10008.5.1.4.1.1.88.22", "Enhanced SR"),
    ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR"),
    ("1.2.840.10008.5.1.4.1.1.88.67", "X-Ray Radiation Dose SR"),
    ("1.2.840.10008.5.1.4.1.1.104.1", "Encapsulated PDF"),
    ("1.2.840.10008.5.1.4.1.1.128", "PET Image"),
    ("1.2.840.10008.5.1.4.1.1.481.1", "RT Image"),
    ("1.2.840.10008.5.1.4.1.1.481.2", "RT Dose"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "RT Structure Set"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "RT Plan"),
    (
        "1.2.840.10008.5.1.4.1.1.11.1",
        "Grayscale Softcopy Presentation State",
    ),
    ("1.2.840.10008.5.1.4.1.1.66", "Raw Data"),
];

/// Transfer syntaxes an object is accepted in and stored as received.
pub const TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    (EXPLICIT_VR_LE, "Explicit VR Little Endian"),
    (IMPLICIT_VR_LE, "Implicit VR Little Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile"),
    ("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264"),
];

/// Whether `uid` is one of [`STORAGE_SOP_CLASSES`].
pub fn is_storage_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// The name of a transfer syntax, for the viewer and the log.
pub fn transfer_syntax_name(uid: &str) -> Option<&'static str> {
    TRANSFER_SYNTAXES
        .iter()
        .find(|(u, _)| *u == uid)
        .map(|(_, n)| *n)
}

/// A UID is at most 64 characters of digits and dots (PS3.5 9.1), no
/// empty component, no leading zero in a component of more than one digit
/// — checked leniently on leading zeros, which senders get wrong.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// A received UID without the trailing NUL or space padding.
pub fn trim(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}
