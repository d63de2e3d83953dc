//! Signed firmware bundles for Ecko Edge (`format`: the byte layout,
//! `manifest`: what a bundle declares). The A/B install and boot control of
//! issue 17 build on these.

pub mod format;
pub mod keys;
pub mod manifest;
pub mod slots;
pub mod verify;
