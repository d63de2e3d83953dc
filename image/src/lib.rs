//! Signed firmware bundles for Ecko Edge (`format`: the byte layout,
//! `manifest`: what a bundle declares), the A/B boot state (`slots`) with
//! its U-Boot (`uboot`) and RAUC (`rauc`) boot control, each slot's image a
//! file or a partition (`layout`, `device`, `mountinfo`), and the install to
//! the inactive slot (`install`), a bundle taken from outside under a size
//! cap (`receive`) or fetched from a URL (`download`).

pub mod backend;
pub mod command;
pub mod device;
pub mod download;
pub mod format;
pub mod install;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod mountinfo;
pub mod rauc;
pub mod receive;
pub mod slots;
pub mod uboot;
pub mod verify;
