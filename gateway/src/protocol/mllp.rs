//! MLLP framing.
