//! PDUs off and onto the wire, as bytes: dicom-ul's codec behind a buffer
//! that the caller fills from its socket.
//!
//! Reading is strict about size: a PDU announcing more than the maximum we
//! gave is an error as soon as its 6-byte header is in, so a peer cannot
//! make us buffer more than one PDU of the size we asked for.

use dicom_ul::pdu::{read_pdu, write_pdu, Pdu, MAXIMUM_PDU_SIZE, MINIMUM_PDU_SIZE};
use std::io::Cursor;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(String);

/// The next whole PDU at the start of `buf`, removed from it; `None` until
/// enough bytes are in.
pub fn next_pdu(buf: &mut Vec<u8>, max_pdu: u32) -> Result<Option<Pdu>, WireError> {
    let mut cursor = Cursor::new(&buf[..]);
    let max = max_pdu.clamp(MINIMUM_PDU_SIZE, MAXIMUM_PDU_SIZE);
    match read_pdu(&mut cursor, max, true) {
        Ok(Some(pdu)) => {
            let used = usize::try_from(cursor.position()).unwrap_or(buf.len());
            buf.drain(..used.min(buf.len()));
            Ok(Some(pdu))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(WireError(e.to_string())),
    }
}

/// The bytes of `pdu`.
pub fn encode(pdu: &Pdu) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    write_pdu(&mut out, pdu).map_err(|e| WireError(e.to_string()))?;
    Ok(out)
}

/// How many bytes of data one P-DATA value may carry to a peer whose
/// maximum PDU length is `peer_max_pdu`: the PDU's length counts the
/// 4-byte item length, the context id and the control header of each
/// value.
pub fn pdv_capacity(peer_max_pdu: u32) -> usize {
    usize::try_from(peer_max_pdu.saturating_sub(6).max(1024)).unwrap_or(16 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::{PDataValue, PDataValueType};

    #[test]
    fn a_pdu_split_across_reads_comes_out_whole_and_the_rest_stays() {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: 1,
                value_type: PDataValueType::Data,
                is_last: true,
                data: vec![7; 3000],
            }],
        };
        let bytes = encode(&pdu).unwrap();
        let mut buf = Vec::new();
        buf.extend_from_slice(&bytes[..100]);
        assert_eq!(next_pdu(&mut buf, 16384).unwrap(), None);
        buf.extend_from_slice(&bytes[100..]);
        buf.extend_from_slice(&encode(&Pdu::ReleaseRQ).unwrap());
        assert_eq!(next_pdu(&mut buf, 16384).unwrap(), Some(pdu));
        assert_eq!(next_pdu(&mut buf, 16384).unwrap(), Some(Pdu::ReleaseRQ));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_pdu_longer_than_our_maximum_is_refused_from_its_header() {
        // P-DATA-TF announcing 4 GB: refused with six bytes in hand.
        let mut buf = vec![0x04, 0x00, 0xff, 0xff, 0xff, 0xf0];
        assert!(next_pdu(&mut buf, 16384).is_err());
    }
}
