//! DICOM: the parts of the upper layer and DIMSE the gateway speaks, without
//! I/O.
//!
//! The PDU codec is dicom-ul's (`dicom_ul::pdu`); datasets are read and
//! written by dicom-object. What is ours is the policy on top: which
//! associations are accepted and with which presentation contexts
//! ([`negotiate`]), the DIMSE command sets of C-ECHO and C-STORE
//! ([`command`]), the Part 10 header a received object is stored under
//! ([`part10`]), the summary the journal indexes it by ([`summary`]) and
//! the FHIR ImagingStudy an idle study is announced with ([`study`]);
//! the Modality Performed Procedure Step data sets ([`mpps`]).
//!
//! Objects are kept as received: the transfer syntax the sender chose is
//! the one accepted (the first of its proposals we know), so a compressed
//! image is stored compressed and never transcoded.

pub mod command;
pub mod lengths;
pub mod mpps;
pub mod negotiate;
pub mod part10;
pub mod record;
pub mod study;
pub mod summary;
pub mod uids;
pub mod wire;
pub mod worklist;

pub use command::{Command, CommandError, CommandField, Status};
pub use negotiate::{AcceptPolicy, AcceptedContext, Negotiated, Refusal};
pub use record::{InstanceRecord, RecordError};
pub use summary::{InstanceSummary, SummaryError};
