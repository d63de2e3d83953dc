//! The DICOM file header (PS3.10 7.1) an object received over the network
//! is stored under: 128-byte preamble, `DICM`, and the file meta group
//! built from the C-STORE request and its presentation context. The data
//! set follows byte for byte as it arrived.

use super::uids;
use dicom_object::meta::FileMetaTableBuilder;

/// Where the data set starts in a file written with [`file_header`] is the
/// header's length; the preamble is what a reader skips.
pub const PREAMBLE_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the file meta group: {0}")]
pub struct HeaderError(String);

/// The preamble, magic and file meta group of one object.
pub fn file_header(
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    source_ae: &str,
) -> Result<Vec<u8>, HeaderError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(uids::IMPLEMENTATION_CLASS)
        .implementation_version_name(uids::IMPLEMENTATION_VERSION)
        .source_application_entity_title(source_ae.trim())
        .build()
        .map_err(|e| HeaderError(e.to_string()))?;
    let mut out = vec![0u8; PREAMBLE_LEN];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| HeaderError(e.to_string()))?;
    Ok(out)
}
