//! The one message vocabulary every room shares.
//!
//! A source builds an [`Envelope`] from what arrived (the bytes exactly as
//! received, what routes filter on, what identifies a resend) and hands it to
//! the journal; the journal commits it and later returns it as a
//! [`StoredMessage`], with the id and time of receipt it gave it; transforms
//! read that. Nothing in between copies the fields into a shape of its own.
//!
//! The [`DecodeHints`] are part of the envelope because a message is decoded
//! twice: once by the source, to answer the sender, and again at delivery
//! time by a transform, possibly days later and after the configuration
//! changed. Whatever the source had to assume to read the bytes (the
//! endpoint's fallback character set, the site's time zone) is recorded here
//! so the second reading never guesses differently from the first.

use std::ops::Deref;

/// What a source received, before the journal has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The inbound endpoint's name.
    pub source: String,
    /// What identifies a resend from the same source (MSH-10, an ASTM content
    /// hash); `None` disables duplicate detection for this message.
    pub dedup_key: Option<String>,
    /// `ORU^R01`, `ASTM`, `file`, ...: what routes filter on.
    pub message_type: String,
    pub content_type: String,
    pub control_id: Option<String>,
    pub patient_id: Option<String>,
    /// The bytes exactly as received.
    pub payload: Vec<u8>,
    /// The positive acknowledgement the source will send once this commits,
    /// kept for the message viewer.
    pub ack: Option<Vec<u8>>,
    pub hints: DecodeHints,
}

/// What the source assumed to read the payload, where the payload itself
/// does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeHints {
    /// The character set the source read bytes in where the message names
    /// none (HL7 MSH-18 empty, or bytes beyond ASCII under `ASCII`), by its
    /// HL7 name (`8859/1`, `UNICODE UTF-8`, ...). `None`: not recorded
    /// (messages journalled before hints existed); readers use their default.
    pub charset: Option<String>,
    /// The site's IANA time zone when the message arrived, for times that
    /// carry no offset. `None`: not recorded; readers use the current site
    /// zone.
    pub time_zone: Option<String>,
}

/// A message as the journal holds it: the envelope, its id and the time the
/// journal committed it.
///
/// It dereferences to its [`Envelope`], since a stored message is what
/// arrived plus where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub received_at: i64,
    pub envelope: Envelope,
}

impl Deref for StoredMessage {
    type Target = Envelope;

    fn deref(&self) -> &Envelope {
        &self.envelope
    }
}
