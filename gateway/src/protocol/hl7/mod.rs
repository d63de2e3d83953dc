//! HL7 v2 messages: parsing, escapes, character sets, acknowledgements.
