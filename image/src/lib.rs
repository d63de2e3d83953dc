//! Signed firmware bundles for Ecko Edge (`format`: the byte layout,
//! `manifest`: what a bundle declares), the A/B boot state (`slots`) and the
//! install to the inactive slot (`install`).

pub mod format;
pub mod install;
pub mod keys;
pub mod manifest;
pub mod slots;
pub mod verify;
